"""
### pmatch_retrain

Retrains the product image-text matching model and ships it only if it is better.

validate -> preprocess -> train -> evaluate run the project's DVC stages (`dvc repro
<stage>`), so a DAG run and `dvc repro` at a terminal share one pipeline, one cache and
one lock file; a stage whose inputs did not change is skipped. `gate` scores the
production model on the candidate's test pairs and decides on the paired F1 difference and
its bootstrap interval over test products (`gate` in `params.yaml`); a production model that
cannot be read means no deploy. Its decision, bound to the candidate's content, goes to
`reports/gate/decision.json`; when it says no, `deploy` is skipped. `deploy` checks the
decision against what it ships, publishes a content-addressed version to the S3 registry
(a retry completes it), promotes it, smoke-tests it in a fresh process on its canary pairs,
and rolls production back (and fails) when the smoke test fails.

Tunables live in `params.yaml`; S3 settings come from `PMATCH_S3_*` environment variables.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.sdk import chain, dag, task


@task(retries=0)
def dvc_stage(stage: str) -> str:
    from pmatch.pipeline import repro

    return repro(stage)


@task.short_circuit
def gate(**context) -> bool:
    from pmatch.dag_context import run_id_and_date
    from pmatch.pipeline import gate as decide

    # A run triggered over the REST API has no logical date; its date is run_after then.
    run_id, run_date = run_id_and_date(context)
    return decide(run_id=run_id, run_date=run_date)["deploy"]


@task
def deploy(**context) -> dict:
    from pmatch.dag_context import run_id_and_date
    from pmatch.pipeline import deploy as publish

    return publish(*run_id_and_date(context))


@dag(
    dag_id="pmatch_retrain",
    schedule="@weekly",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["pmatch"],
    doc_md=__doc__,
)
def pmatch_retrain():
    stages = [
        dvc_stage.override(task_id=stage)(stage)
        for stage in ("validate", "preprocess", "train", "evaluate")
    ]
    chain(*stages, gate(), deploy())


pmatch_retrain()
