"""
### pmatch_retrain

Retrains the product image-text matching model and ships it only if it is better.

**Isolated runs**: `snapshot` packs the project as it is when the run starts (code, params,
pipeline, and the catalogue's `.dvc` file as the last ingest left it in S3) under
`runs/<run>/` in S3. Every task then works in the run's own workspace
(`$PMATCH_RUNS_DIR/<run>/` on the machine that runs it, unpacked from the snapshot) and
hands its outputs over through S3: the DVC stages pull what they need from the DVC remote
and push what they made, and the gate's decision goes to `runs/<run>/gate.json`. Tasks may
land on different workers with no shared folder, and two runs never see each other's files
(docs/airflow.md, "Isolated runs").

`check` compares the catalogue's data version (DVC's hash of `data/catalog`), the params'
and the code's sha256 with the production version's manifest: when all three are unchanged
(and `force` is off) it logs "the model for data version X is already in production" and
skips the rest, adding no registry version. Otherwise
validate -> preprocess -> train -> evaluate run the project's DVC stages (`dvc repro
--pull <stage>`); the machine's workspaces share the project's DVC cache and run cache, so
a stage whose inputs did not change is restored, not run. `gate` scores the
production model on the candidate's test pairs and decides on the paired F1 difference and
its bootstrap interval over test products (`gate` in `params.yaml`); a production model that
cannot be read means no deploy. Its decision, bound to the candidate's content, goes to
`reports/gate/decision.json` in the workspace and to S3; when it says no, `deploy` is skipped. `deploy` checks the
decision against what it ships, publishes a content-addressed version to the S3 registry
(a retry completes it), promotes it, smoke-tests it in a fresh process on its canary pairs,
and rolls production back (and fails) when the smoke test fails.

**Schedule**: weekly, and whenever the `pmatch_catalog` asset is updated (`pmatch_ingest`
emits it when a delivery makes a new data version); `deploy` emits the `pmatch_model` asset
(its extra names the version) for whatever consumes the production model.

**Params** (trigger form, or the run's conf, which overrides them): `reason` is the run's
note (written when the scheduler starts the run, `plugins/pmatch_run_notes.py`), logged by
every task and recorded in the deployed version's manifest and promotion; `force` retrains
even when nothing changed (`check` goes on, and the DVC stages run with `dvc repro --force`).

**Operations**: each task has an execution timeout and the run one of 6 hours. A DVC
stage that fails is not retried (it fails the same way again); S3 faults (`snapshot`,
`check`, a stage's push of its outputs, `gate`, `deploy`) retry with exponential backoff. A failed task or run appends a line to the failure
log (`$PMATCH_FAILURE_LOG`, default `$AIRFLOW_HOME/pmatch_failures.jsonl`).

Tunables live in `params.yaml`. S3 comes from the Airflow connection `pmatch_s3` (or the
one `PMATCH_AIRFLOW_CONN_ID` names; Amazon provider, `endpoint_url` and `region_name` in its
extra) when it is defined, else from the `PMATCH_S3_*` and `AWS_*` environment variables.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, chain, dag, task

# From plugins/, which Airflow puts on sys.path when it is imported (above).
from pmatch_notifiers import FailureLogNotifier

from pmatch.run_notes import DEFAULT_REASON

CATALOG = Asset(name="pmatch_catalog")
MODEL = Asset(name="pmatch_model")

# Minutes each DVC stage may run; a hung stage fails instead of holding the only run slot.
STAGE_TIMEOUTS = {"validate": 15, "preprocess": 60, "train": 120, "evaluate": 30}
STAGE_DOCS = {
    "validate": "Checks the catalogue against the Great Expectations contract (`dvc repro validate`).",
    "preprocess": "Builds the pairs and the encoders' features (`dvc repro preprocess`).",
    "train": "Trains the matching model on the frozen encoders (`dvc repro train`).",
    "evaluate": "Scores the test pairs, picks the threshold, writes canary pairs (`dvc repro evaluate`).",
}
# S3 can fail for a moment; these retries wait 2, 4, 8 minutes (at most 15).
TRANSIENT_RETRIES = {
    "retries": 3,
    "retry_delay": timedelta(minutes=2),
    # A multiplier in Airflow 3.3 (True would mean 1: a constant delay).
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=15),
}


@task(execution_timeout=timedelta(minutes=10), **TRANSIENT_RETRIES)
def snapshot(**context) -> str:
    from airflow.sdk.exceptions import AirflowFailException

    from pmatch.dag_context import log_run_params, use_airflow_s3_connection
    from pmatch.run_tasks import start
    from pmatch.run_workspace import RunWorkspaceError

    log_run_params(context)
    use_airflow_s3_connection()
    try:
        return start(context["run_id"])["uri"]
    except (ValueError, FileNotFoundError, RunWorkspaceError) as error:
        # No project, a wrong params.yaml, no S3 endpoint: the same again on a retry.
        raise AirflowFailException(f"{type(error).__name__}: {error}") from error


@task.short_circuit(execution_timeout=timedelta(minutes=10), **TRANSIENT_RETRIES)
def check(**context) -> bool:
    from airflow.sdk.exceptions import AirflowFailException

    from pmatch.dag_context import log_run_params, use_airflow_s3_connection
    from pmatch.run_tasks import check as retrain_check

    run_params = log_run_params(context)
    use_airflow_s3_connection()
    try:
        return retrain_check(
            context["run_id"], force=run_params["force"], reason=run_params["reason"]
        )["retrain"]
    except (ValueError, FileNotFoundError) as error:
        # A missing or wrong params.yaml or catalogue fails the same way again: no retry.
        # (S3 faults are RegistryErrors, which are retried.)
        raise AirflowFailException(f"{type(error).__name__}: {error}") from error


@task(**TRANSIENT_RETRIES)
def dvc_stage(stage: str, **context) -> str:
    from airflow.sdk.exceptions import AirflowFailException

    from pmatch.dag_context import log_run_params, use_airflow_s3_connection
    from pmatch.pipeline import StageFailed
    from pmatch.run_tasks import stage as run_stage

    force = log_run_params(context)["force"]
    use_airflow_s3_connection()
    try:
        return run_stage(stage, context["run_id"], force=force)
    except StageFailed as error:
        # The stage itself failed (bad data, a bug): it fails the same way again, no retry.
        # Its hand-over (dvc push, the lock's upload to S3) is what the retries are for.
        raise AirflowFailException(str(error)) from error


@task.short_circuit(execution_timeout=timedelta(minutes=30), **TRANSIENT_RETRIES)
def gate(**context) -> bool:
    from pmatch.dag_context import log_run_params, run_id_and_date, use_airflow_s3_connection
    from pmatch.run_tasks import gate as decide

    log_run_params(context)
    use_airflow_s3_connection()
    # A run triggered over the REST API has no logical date; its date is run_after then.
    return decide(*run_id_and_date(context))["deploy"]


@task(outlets=[MODEL], execution_timeout=timedelta(minutes=30), **TRANSIENT_RETRIES)
def deploy(**context) -> dict:
    from pmatch.dag_context import log_run_params, run_id_and_date, use_airflow_s3_connection
    from pmatch.run_tasks import deploy as publish

    reason = log_run_params(context)["reason"]
    use_airflow_s3_connection()
    shipped = publish(*run_id_and_date(context), reason=reason)
    context["outlet_events"][MODEL].extra = {"version": shipped["version"]}
    return shipped


@dag(
    dag_id="pmatch_retrain",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@weekly", timezone="UTC"), assets=CATALOG
    ),
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=6),
    default_args={"retries": 0, "on_failure_callback": FailureLogNotifier()},
    on_failure_callback=FailureLogNotifier(),
    params={
        "reason": Param(
            DEFAULT_REASON,
            type="string",
            description="Why this run: the run's note, logged, and recorded in the deployed "
            "version's manifest.",
        ),
        "force": Param(
            False,
            type="boolean",
            description="Retrain even if the data version, params and code equal production's "
            "(check goes on; the DVC stages run with `dvc repro --force`).",
        ),
    },
    tags=["pmatch"],
    doc_md=__doc__,
)
def pmatch_retrain():
    started = snapshot.override(
        doc_md="Snapshots the project for this run (code, params, pipeline, and the "
        "catalogue's data version as S3 names it) under `runs/<run>/` in S3: every later task "
        "works in a workspace made from it, on whatever machine (`pmatch.run_tasks.start`)."
    )()
    needed = check.override(
        doc_md="Compares the data version, params and code with production's manifest "
        "(`pmatch.pipeline.retrain_check`); unchanged and not `force`: the rest is skipped."
    )()
    stages = [
        dvc_stage.override(
            task_id=stage,
            execution_timeout=timedelta(minutes=STAGE_TIMEOUTS[stage]),
            doc_md=STAGE_DOCS[stage],
        )(stage)
        for stage in STAGE_TIMEOUTS
    ]
    decision = gate.override(
        doc_md="Compares the candidate with production on its test pairs (`pmatch.pipeline.gate`); "
        "writes `reports/gate/decision.json`. No means `deploy` is skipped."
    )()
    shipped = deploy.override(
        doc_md="Publishes the approved candidate to the S3 registry, promotes it, smoke-tests it "
        "and rolls back on failure (`pmatch.pipeline.deploy`); emits the `pmatch_model` asset."
    )()
    chain(started, needed, *stages, decision, shipped)


pmatch_retrain()
