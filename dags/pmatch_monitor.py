"""
### pmatch_monitor

Watches the live match-score distribution for drift.

`monitor` scores the run's incoming batch (the `batch` param, or
`$PMATCH_INCOMING_DIR/<run date>`; the run date is the logical date, or for a run triggered
without one, the time it was due) with the production model and compares the scores with
that model's reference scores in an Evidently report (HTML and JSON, under
`reports/monitor/` and in S3 under `monitoring/`), and updates the drift history of every
run (`monitoring/history.html`: drift score and mean score per run, each linking its
report). When the report says the distribution drifted, `trigger_retrain` starts a
`pmatch_retrain` run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, chain, dag, task

# From plugins/, which Airflow puts on sys.path when it is imported (above).
from pmatch_notifiers import FailureLogNotifier


@task(
    execution_timeout=timedelta(minutes=30),
    retries=3,
    retry_delay=timedelta(minutes=2),
    # A multiplier in Airflow 3.3 (True would mean 1: a constant delay): 2, 4, 8 minutes.
    retry_exponential_backoff=2.0,
    max_retry_delay=timedelta(minutes=15),
    doc_md="Scores the run's batch with the production model and writes the Evidently drift "
    "report and the drift history, locally and to S3 (`pmatch.pipeline.monitor`).",
)
def monitor(**context) -> dict:
    from pmatch.dag_context import run_day, use_airflow_s3_connection
    from pmatch.pipeline import incoming_batch
    from pmatch.pipeline import monitor as check

    use_airflow_s3_connection()
    # A run triggered over the REST API has no logical date, hence no `ds`.
    day = run_day(context)
    batch = incoming_batch(context["params"]["batch"], day)
    return check(batch, context["run_id"], run_date=day)


@task.short_circuit(
    execution_timeout=timedelta(minutes=1),
    doc_md="Lets `trigger_retrain` run only when the report says the scores drifted.",
)
def drift_detected(verdict: dict) -> bool:
    return bool(verdict["drift"])


@dag(
    dag_id="pmatch_monitor",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args={"retries": 0, "on_failure_callback": FailureLogNotifier()},
    on_failure_callback=FailureLogNotifier(),
    params={
        "batch": Param(
            "",
            type="string",
            description="Batch folder (with pairs.csv) to score; empty means $PMATCH_INCOMING_DIR/<run date>.",
        )
    },
    tags=["pmatch"],
    doc_md=__doc__,
)
def pmatch_monitor():
    trigger = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="pmatch_retrain",
        conf={"reason": "score drift detected by pmatch_monitor run {{ run_id }}"},
        wait_for_completion=False,
        execution_timeout=timedelta(minutes=5),
        retries=2,
        retry_delay=timedelta(minutes=1),
        doc_md="Starts a `pmatch_retrain` run; its conf's `reason` names this monitoring run.",
    )
    chain(drift_detected(monitor()), trigger)


pmatch_monitor()
