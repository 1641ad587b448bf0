"""
### pmatch_retrain

Retrains the product image-text matching model and ships it only if it is better.

validate -> preprocess -> train -> evaluate run the project's DVC stages (`dvc repro
<stage>`), so a DAG run and `dvc repro` at a terminal share one pipeline, one cache and
one lock file; a stage whose inputs did not change is skipped. `gate` compares test F1
with `gate.min_f1` and the production model's F1 and writes its reasons to
`reports/gate/decision.json`; when it says no, `deploy` is skipped. `deploy` uploads the
model, metrics, threshold, params and reference scores to a new immutable version in the
S3 registry and points `production` at it.

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
def gate() -> bool:
    from pmatch.pipeline import gate as decide

    return decide()["deploy"]


@task
def deploy(**context) -> dict:
    from pmatch.pipeline import deploy as publish

    return publish(context["run_id"], context["logical_date"] or context["dag_run"].run_after)


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
