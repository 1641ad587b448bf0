"""A DAG run's id and date from an Airflow task's context, with or without a logical date."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime


def run_date(context: Mapping) -> datetime:
    """The run's date: its logical date, else the time it was due, dag_run.run_after.

    A run triggered over the REST API without a logical date (the API's default) has none,
    and then its context has no `ds` either.

    context: the task's Airflow context (`**context` of a @task function).
    """
    logical_date = context.get("logical_date")
    if logical_date is not None:
        return logical_date
    dag_run = context.get("dag_run")
    if dag_run is None or getattr(dag_run, "run_after", None) is None:
        raise ValueError(
            "The task context has neither a logical_date nor dag_run.run_after; "
            "pass the context of an Airflow task (`def task(**context)`)."
        )
    return dag_run.run_after


def run_day(context: Mapping) -> str:
    """The run's date as YYYY-MM-DD (what `ds` holds when the run has a logical date).

    context: the task's Airflow context.
    """
    return run_date(context).strftime("%Y-%m-%d")


def run_id_and_date(context: Mapping) -> tuple[str, datetime]:
    """The run's id and date (see run_date).

    context: the task's Airflow context.
    """
    return context["run_id"], run_date(context)
