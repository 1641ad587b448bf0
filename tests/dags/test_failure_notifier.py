"""The failure notifier appends one JSON line per failure and names where to look."""

from __future__ import annotations

import json
from types import SimpleNamespace

# Importing Airflow puts plugins/ (AIRFLOW__CORE__PLUGINS_FOLDER, set by tests/conftest.py)
# on sys.path, as in the scheduler and the workers.
import airflow.sdk  # noqa: F401
from pmatch_notifiers import FailureLogNotifier, failure_log_path


def test_the_failure_log_is_the_setting_else_in_airflow_home(monkeypatch, tmp_path):
    monkeypatch.delenv("PMATCH_FAILURE_LOG", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert failure_log_path() == tmp_path / "pmatch_failures.jsonl"
    monkeypatch.setenv("PMATCH_FAILURE_LOG", str(tmp_path / "alerts" / "failures.jsonl"))
    assert failure_log_path() == tmp_path / "alerts" / "failures.jsonl"


def test_a_task_failure_and_a_run_failure_each_append_a_line(monkeypatch, tmp_path):
    log = tmp_path / "alerts" / "failures.jsonl"
    monkeypatch.setenv("PMATCH_FAILURE_LOG", str(log))
    task_instance = SimpleNamespace(
        dag_id="pmatch_retrain",
        task_id="deploy",
        try_number=2,
        log_url="http://localhost:8080/dags/pmatch_retrain/runs/r1/tasks/deploy?try_number=2",
    )
    FailureLogNotifier()(
        {"ti": task_instance, "run_id": "r1", "exception": RuntimeError("S3 said 503")}
    )
    FailureLogNotifier()(
        {
            "dag_run": SimpleNamespace(dag_id="pmatch_retrain", run_id="r2"),
            "reason": "timed_out",
        }
    )
    task_line, run_line = (json.loads(line) for line in log.read_text().splitlines())
    assert task_line["scope"] == "task" and run_line["scope"] == "run"
    assert task_line["dag_id"] == "pmatch_retrain" and task_line["task_id"] == "deploy"
    assert task_line["run_id"] == "r1" and task_line["try_number"] == 2
    assert task_line["exception"] == "RuntimeError: S3 said 503"
    assert task_line["log_url"].endswith("tasks/deploy?try_number=2")
    assert run_line["run_id"] == "r2" and run_line["task_id"] is None
    assert run_line["reason"] == "timed_out"
