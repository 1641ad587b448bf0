"""Both DAGs' tasks read the run's date from a context with or without a logical date."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from airflow.sdk import Asset

from pmatch.dag_context import run_date, run_day, run_id_and_date
from tests.conftest import ROOT

RUN_AFTER = datetime(2026, 11, 4, 9, 30, tzinfo=UTC)
LOGICAL_DATE = datetime(2026, 11, 3, tzinfo=UTC)


def api_triggered_context(**extra) -> dict:
    """What a task gets in a run triggered over the REST API with `"logical_date": null`:
    no logical_date and no ds, only dag_run.run_after."""
    return {
        "run_id": "manual__2026-11-04T09:30:00+00:00",
        "dag_run": SimpleNamespace(run_after=RUN_AFTER, logical_date=None),
        **extra,
    }


def test_run_date_falls_back_to_run_after_without_a_logical_date():
    context = api_triggered_context()
    assert run_date(context) == RUN_AFTER
    assert run_day(context) == "2026-11-04"
    assert run_id_and_date(context) == ("manual__2026-11-04T09:30:00+00:00", RUN_AFTER)
    # Airflow may also pass the key with None.
    assert run_date(api_triggered_context(logical_date=None)) == RUN_AFTER


def test_run_date_is_the_logical_date_when_there_is_one():
    context = api_triggered_context(logical_date=LOGICAL_DATE)
    assert run_date(context) == LOGICAL_DATE
    assert run_day(context) == "2026-11-03"


def test_a_context_without_any_date_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="logical_date nor dag_run.run_after"):
        run_date({"run_id": "x"})


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_monitor_task_runs_without_a_logical_date(dag_bag, monkeypatch):
    """The monitor task dates its verdict by run_after; `ds` is not needed."""
    import pmatch.run_tasks

    calls = {}

    def monitor(delivery, run_id, run_date):
        calls["monitor"] = (delivery, run_id, run_date)
        return {"delivery": "2026-11-04", "drift": False, "retrain": False}

    monkeypatch.setattr(pmatch.run_tasks, "monitor", monitor)
    task = dag_bag.dags["pmatch_monitor"].get_task("monitor")
    result = task.python_callable("data/inbox/2026-11-04", **api_triggered_context())
    assert calls["monitor"] == (
        "data/inbox/2026-11-04",
        "manual__2026-11-04T09:30:00+00:00",
        "2026-11-04T09:30:00+00:00",
    )
    assert result["retrain"] is False


def test_monitor_finds_the_delivery_in_the_param_or_the_triggering_asset_event(dag_bag):
    from airflow.sdk.exceptions import AirflowSkipException

    find = dag_bag.dags["pmatch_monitor"].get_task("find_delivery").python_callable
    event = SimpleNamespace(extra={"delivery": "data/inbox/2026-11-04", "data_version": "v"})
    events = {Asset(name="pmatch_catalog"): [event]}
    assert find(params={"delivery": ""}, triggering_asset_events=events) == (
        "data/inbox/2026-11-04"
    )
    assert find(params={"delivery": "here"}, triggering_asset_events=events) == "here"
    # A scheduled run with no delivery is skipped, not failed.
    with pytest.raises(AirflowSkipException, match="no delivery"):
        find(params={"delivery": ""}, triggering_asset_events={})


@pytest.mark.parametrize("task_id", ["gate", "deploy"])
def test_retrain_gate_and_deploy_run_without_a_logical_date(dag_bag, monkeypatch, task_id):
    import pmatch.run_tasks

    calls = []
    monkeypatch.setattr(
        pmatch.run_tasks,
        "gate",
        lambda run_id, run_date: calls.append((run_id, run_date)) or {"deploy": True},
    )
    monkeypatch.setattr(
        pmatch.run_tasks,
        "deploy",
        lambda run_id, run_date, reason: (
            calls.append((run_id, run_date, reason)) or {"version": "v1"}
        ),
    )
    outlet_events = {Asset(name="pmatch_model"): SimpleNamespace(extra={})}
    task = dag_bag.dags["pmatch_retrain"].get_task(task_id)
    task.python_callable(
        **api_triggered_context(
            params={"reason": "drift in run x", "force": False}, outlet_events=outlet_events
        )
    )
    expected = ("manual__2026-11-04T09:30:00+00:00", RUN_AFTER)
    assert calls == [expected if task_id == "gate" else (*expected, "drift in run x")]
    if task_id == "deploy":
        # The model asset's event names the version deployed.
        assert outlet_events[Asset(name="pmatch_model")].extra == {"version": "v1"}
