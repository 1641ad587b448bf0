"""
### pmatch_check

Test-only DAG for tests/integration/test_scheduler.py: its one task fails when the `fail`
param is true, so the failure notifier can be seen firing under a real scheduler.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import Param, dag, task

# From plugins/, as in the project's own DAGs.
from pmatch_notifiers import FailureLogNotifier


@task(doc_md="Fails when the run's `fail` param is true.")
def fail_on_request(**context) -> str:
    if context["params"]["fail"]:
        raise RuntimeError("failed on request: pmatch_check ran with fail=true")
    return "passed"


@dag(
    dag_id="pmatch_check",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args={"retries": 0, "on_failure_callback": FailureLogNotifier()},
    on_failure_callback=FailureLogNotifier(),
    params={"fail": Param(False, type="boolean")},
    doc_md=__doc__,
)
def pmatch_check():
    fail_on_request()


pmatch_check()
