"""
### pmatch_ingest

Brings one delivery of listings into the training catalogue as a new data version.

A delivery is a folder in the catalogue format (`catalog.csv` and its photos) in the inbox
(`PMATCH_INBOX`: a local folder, default `data/inbox`, or an `s3://bucket/prefix`), one
subfolder per delivery named by its date (`2026-01-08`). `pending` finds the delivery: the
`delivery` param, or else the oldest delivery in the inbox that the catalogue does not hold
yet; with none pending the run is skipped, not failed. `ingest` (`pmatch.pipeline.ingest`)
checks every row against the data contract, quarantines the rows that fail (report in
`reports/ingest/<delivery>/`, photos in S3 under `quarantine/<delivery>/`), refuses a
delivery broken as a whole, merges the rest (key product_id + variant), validates the merged
catalogue, swaps it in atomically under a file lock, records it with `dvc add data/catalog`,
`dvc push`es it to the remote `pmatch` (`s3://<bucket>/dvc`) and writes
`deliveries/<delivery>/ingest.json` to S3. Ingesting the same delivery again changes nothing.

**Assets**: `ingest` emits `pmatch_catalog` (extra: delivery, data_version), which schedules
`pmatch_retrain` (and the monitoring DAG).

**Operations**: a refused delivery fails the task without retries (it fails the same way
again: fix it at its source) and is listed in `data/.catalog.refused.csv`, so later runs go
on with the next delivery (a fixed one comes under a new name, or through the `delivery`
param); `ingest` retries with exponential backoff, since its S3 and DVC
push can fail for a moment (a retry finds the delivery ingested and only publishes).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, Param, chain, dag, task

# From plugins/, which Airflow puts on sys.path when it is imported (above).
from pmatch_notifiers import FailureLogNotifier

CATALOG = Asset(name="pmatch_catalog")
# S3 and DVC push can fail for a moment; these retries wait 1, 2, 4 minutes (at most 10).
TRANSIENT_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    # A multiplier in Airflow 3.3 (True would mean 1: a constant delay).
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


@task.short_circuit(retries=0, execution_timeout=timedelta(minutes=5))
def pending(**context) -> str | None:
    from pmatch.dag_context import use_airflow_s3_connection
    from pmatch.pipeline import next_delivery

    use_airflow_s3_connection()
    return next_delivery(context["params"].get("delivery") or None)


@task(outlets=[CATALOG], execution_timeout=timedelta(minutes=60), **TRANSIENT_RETRIES)
def ingest(delivery: str, **context) -> dict:
    from airflow.sdk.exceptions import AirflowFailException

    from pmatch.dag_context import use_airflow_s3_connection
    from pmatch.ingest import DeliveryRefused
    from pmatch.pipeline import ingest as ingest_one

    use_airflow_s3_connection()
    try:
        result = ingest_one(delivery)
    except DeliveryRefused as refused:
        # The same delivery fails the same way again: no retry, fix it at its source.
        raise AirflowFailException(str(refused)) from refused
    context["outlet_events"][CATALOG].extra = {
        "delivery": result["delivery"],
        "data_version": result["data_version"],
    }
    return result


@dag(
    dag_id="pmatch_ingest",
    schedule="@daily",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args={"retries": 0, "on_failure_callback": FailureLogNotifier()},
    on_failure_callback=FailureLogNotifier(),
    params={
        "delivery": Param(
            "",
            type="string",
            description="A delivery folder or s3:// URI; empty: the oldest pending delivery "
            "in the inbox (PMATCH_INBOX).",
        ),
    },
    tags=["pmatch"],
    doc_md=__doc__,
)
def pmatch_ingest():
    found = pending.override(
        doc_md="The delivery to ingest: the `delivery` param, else the oldest pending one in "
        "the inbox (`pmatch.pipeline.next_delivery`); none pending skips the run."
    )()
    ingested = ingest.override(
        doc_md="Contract per row, quarantine, merge, a new DVC data version pushed to S3, the "
        "delivery's record in S3 (`pmatch.pipeline.ingest`); emits `pmatch_catalog`."
    )(found)
    chain(found, ingested)


pmatch_ingest()
