"""A task that fails in a real pmatch_retrain run fires the failure notifier: its lines."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.integration


def test_a_failed_stage_appends_its_line_to_the_failure_log(airflow_db, tmp_path, monkeypatch):
    """snapshot, the first task, fails at once in a folder with no project (no
    params.yaml): a deterministic failure, so it is not retried."""
    from datetime import UTC, datetime

    from pmatch.main_job import run_dag

    log = tmp_path / "failures.jsonl"
    monkeypatch.setenv("PMATCH_FAILURE_LOG", str(log))
    monkeypatch.setenv("PMATCH_PROJECT_DIR", str(tmp_path / "not-a-project"))
    (tmp_path / "not-a-project").mkdir()

    run = run_dag("pmatch_retrain", datetime(2026, 11, 2, 3, 0, tzinfo=UTC))

    assert run["state"] == "failed", run
    assert run["tasks"]["snapshot"]["state"] == "failed", run
    records = [json.loads(line) for line in log.read_text().splitlines()]
    (record,) = [record for record in records if record["scope"] == "task"]
    assert record["task_id"] == "snapshot"
    assert record["dag_id"] == "pmatch_retrain"
    assert record["run_id"] == run["run_id"]
    assert record["try_number"] == 1
    assert record["exception"].startswith("AirflowFailException: ConfigError")
    assert "params.yaml" in record["exception"]
    assert "/dags/pmatch_retrain/runs/" in record["log_url"]
    assert "/tasks/snapshot?try_number=1" in record["log_url"]
    # The run's own failure (the DAG's callback) is recorded too, with Airflow's reason.
    (run_record,) = [record for record in records if record["scope"] == "run"]
    assert run_record["dag_id"] == "pmatch_retrain"
    assert run_record["run_id"] == run["run_id"]
    assert run_record["reason"]
