"""
### pmatch_monitor

Watches what production sees: each new delivery of listings.

Runs when ingest updates the `pmatch_catalog` asset (its event's extra names the delivery
folder) or by hand with the `delivery` param. `find_delivery` skips the run (not a
failure) when neither names a delivery. `monitor` scores the delivery's listings (each
photo with its own title) with the production model and compares them with the model's
reference (its test split's listings): score distribution, share under the match
threshold, photo and title statistics, image and text embeddings, and labelled F1 when
the delivery carries labels (`pmatch.pipeline.monitor`). The delivery is a folder of the
project or an `s3://` prefix (downloaded). The run works in a workspace of its own, made from
a snapshot of the project at its start (`pmatch.run_tasks`): the Evidently report and the
verdict go to its `reports/monitor/<delivery>/<run>/` and to S3 under `monitoring/`, and the
report to the machine's Evidently UI workspace (`make monitor-ui`). The
verdict's `retrain` is true only when drift persisted (k of the last n runs) outside the
cooldown after the last retrain or promotion; then `trigger_retrain` starts a
`pmatch_retrain` run whose `reason` names the signals that fired, and whose `force` is this
run's `force_retrain` param (off by default: a retrain on unchanged data, params and code is
skipped, as the model for them is in production).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Asset, Param, chain, dag, task

# From plugins/, which Airflow puts on sys.path when it is imported (above).
from pmatch_notifiers import FailureLogNotifier

CATALOG = Asset(name="pmatch_catalog")


@task(
    execution_timeout=timedelta(minutes=1),
    doc_md="The delivery to watch: the `delivery` param, else the triggering `pmatch_catalog` "
    "event's extra `delivery`; neither skips the run.",
)
def find_delivery(**context) -> str:
    from airflow.sdk.exceptions import AirflowSkipException

    from pmatch.pipeline import delivery_for_run

    events = context.get("triggering_asset_events") or {}
    extras = [event.extra or {} for found in events.values() for event in found]
    delivery = delivery_for_run(context["params"].get("delivery"), extras)
    if delivery is None:
        raise AirflowSkipException(
            "no delivery: no `delivery` param and no pmatch_catalog event naming one"
        )
    return delivery


@task(
    execution_timeout=timedelta(minutes=30),
    retries=3,
    retry_delay=timedelta(minutes=2),
    # A multiplier in Airflow 3.3 (True would mean 1: a constant delay): 2, 4, 8 minutes.
    retry_exponential_backoff=2.0,
    max_retry_delay=timedelta(minutes=15),
    doc_md="Scores the delivery with the production model, computes the drift signals, "
    "decides, and writes the Evidently report and the verdict to S3, in the run's own "
    "workspace (`pmatch.run_tasks.monitor`).",
)
def monitor(delivery: str, **context) -> dict:
    from pmatch.dag_context import run_date, use_airflow_s3_connection
    from pmatch.run_tasks import monitor as watch

    use_airflow_s3_connection()
    # A run triggered over the REST API has no logical date: run_date reads run_after then.
    verdict = watch(delivery, context["run_id"], run_date(context).isoformat())
    return {key: verdict.get(key) for key in ("delivery", "drift", "retrain", "retrain_reason")}


@task.short_circuit(
    execution_timeout=timedelta(minutes=1),
    doc_md="Lets `trigger_retrain` run only when the verdict says retrain (drift that "
    "persisted, outside the cooldown).",
)
def retrain_decided(verdict: dict) -> bool:
    return bool(verdict["retrain"])


@task(
    execution_timeout=timedelta(minutes=1),
    doc_md="The conf of the `pmatch_retrain` run the verdict starts: `reason` (the signals "
    "that fired, the persistence, the delivery) and `force` (this run's `force_retrain`).",
)
def retrain_conf(verdict: dict, **context) -> dict:
    # Built here, not templated: a rendered template would hand the retrain the string
    # "False", which its boolean `force` param refuses.
    return {
        "reason": verdict["retrain_reason"],
        "force": bool(context["params"].get("force_retrain", False)),
    }


@dag(
    dag_id="pmatch_monitor",
    schedule=[CATALOG],
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
            description="Delivery folder (catalog.csv and its photos) to watch; empty means "
            "the one the triggering pmatch_catalog event names.",
        ),
        "force_retrain": Param(
            False,
            type="boolean",
            description="When the verdict starts a pmatch_retrain run, start it with force: "
            "retrain even if the data version, params and code equal production's.",
        ),
    },
    tags=["pmatch"],
    doc_md=__doc__,
)
def pmatch_monitor():
    verdict = monitor(find_delivery())
    conf = retrain_conf(verdict)
    trigger = TriggerDagRunOperator(
        task_id="trigger_retrain",
        trigger_dag_id="pmatch_retrain",
        conf=conf,
        wait_for_completion=False,
        execution_timeout=timedelta(minutes=5),
        retries=2,
        retry_delay=timedelta(minutes=1),
        doc_md="Starts a `pmatch_retrain` run with `retrain_conf`'s reason and force.",
    )
    chain(retrain_decided(verdict), conf, trigger)


pmatch_monitor()
