"""The DAGs under a real scheduler, as an operator runs them: runs triggered over the REST
API with and without a logical date run to the end and reach S3 through the Airflow
connection, two runs go at once without colliding, and a failed task fires the notifier."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# A retrain run whose DVC stages are up to date, and a monitoring run, take a minute or two
# each on a busy 2-core machine; a task that fails retries after 2 minutes, which this outlasts.
RUNS_TIMEOUT_SECONDS = 300
# The logical date the dated runs get, and the day of the incoming batch they score.
LOGICAL_DATE = "2026-12-01T06:00:00Z"


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def first_runs(scheduler):
    """At once: a pmatch_retrain run triggered without a logical date (the REST API's
    default) into an empty registry, and a pmatch_check run told to fail; followed to the end."""
    api = scheduler["api"]
    for dag_id in ("pmatch_retrain", "pmatch_monitor", "pmatch_check"):
        api.wait_for_dag(dag_id, timeout=120)
    retrain = api.trigger("pmatch_retrain", conf={"reason": "scheduler test"})
    check = api.trigger("pmatch_check", LOGICAL_DATE, conf={"fail": True})
    deadline = time.monotonic() + RUNS_TIMEOUT_SECONDS
    check_state, check_tasks = api.wait_for_run("pmatch_check", check["dag_run_id"], deadline)
    retrain_state, retrain_tasks = api.wait_for_run(
        "pmatch_retrain", retrain["dag_run_id"], deadline
    )
    return {
        "retrain": (retrain, retrain_state, retrain_tasks),
        "check": (check, check_state, check_tasks),
    }


@pytest.fixture(scope="module")
def concurrent_runs(scheduler, first_runs):
    """At once, once production exists: a pmatch_monitor run and a pmatch_retrain run, both
    with a logical date, both using S3; followed to the end."""
    from pmatch.sample.shifts import write_delivery

    project, api = scheduler["project"], scheduler["api"]
    delivery = write_delivery(
        project / "data/inbox" / LOGICAL_DATE[:10], shift="none", listings=200, seed=21
    )
    monitor = api.trigger(
        "pmatch_monitor", LOGICAL_DATE, conf={"delivery": str(delivery.relative_to(project))}
    )
    # Nothing changed since the first run: its snapshot and check (both on S3) run while
    # the monitoring run scores, and check finds the model already in production.
    retrain = api.trigger("pmatch_retrain", LOGICAL_DATE, conf={"reason": "second run"})
    deadline = time.monotonic() + RUNS_TIMEOUT_SECONDS
    return {
        "monitor": (monitor, *api.wait_for_run("pmatch_monitor", monitor["dag_run_id"], deadline)),
        "retrain": (retrain, *api.wait_for_run("pmatch_retrain", retrain["dag_run_id"], deadline)),
    }


def test_a_retrain_triggered_without_a_logical_date_deploys_through_the_connection(
    scheduler, first_runs
):
    run, state, tasks = first_runs["retrain"]
    assert run["logical_date"] is None
    assert state == "success", {task: each["state"] for task, each in tasks.items()}
    states = {task: each["state"] for task, each in tasks.items()}
    assert set(states) >= {"validate", "preprocess", "train", "evaluate", "gate", "deploy"}
    assert set(states.values()) == {"success"}, states
    registry = scheduler["registry"]
    production = registry.production()
    assert production is not None, "deploy succeeded but no production pointer in S3"
    manifest = registry.manifest(production["version"])
    assert manifest["run_id"] == run["dag_run_id"]
    assert "scheduler test" in manifest["reason"]
    # The plugin's listener made the reason the run's note when the scheduler started it.
    api = scheduler["api"]
    details = api.call("GET", api.run_path("pmatch_retrain", run["dag_run_id"]))
    assert details["note"] == "reason: scheduler test"
    # Dated by run_after, the time the run was due, as it has no logical date.
    assert manifest["created_at"][:10] == run["run_after"][:10]
    # The run worked in a workspace of its own and handed the gate's decision to deploy
    # through S3; the project folder got none of its files.
    from pmatch.run_workspace import run_folder_name

    folder = run_folder_name(run["dag_run_id"])
    decision = json.loads(registry.read_file("runs", folder, "gate.json"))
    assert decision["run_id"] == run["dag_run_id"]
    workspace = scheduler["project"] / ".pmatch/runs" / folder
    assert json.loads((workspace / "reports/gate/decision.json").read_text()) == decision
    # (The project may hold a decision of an earlier test's gate at the command line.)
    in_project = scheduler["project"] / "reports/gate/decision.json"
    assert not in_project.is_file() or (
        json.loads(in_project.read_text())["run_id"] != run["dag_run_id"]
    )
    # No task started an S3 server of its own: the connection's endpoint served them all.
    assert not scheduler["local_s3_dir"].exists()


def test_a_failed_task_fires_the_failure_notifier(scheduler, first_runs):
    run, state, tasks = first_runs["check"]
    assert state == "failed"
    assert tasks["fail_on_request"]["state"] == "failed"
    log = scheduler["home"] / "pmatch_failures.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    ours = [record for record in records if record["run_id"] == run["dag_run_id"]]
    task_record = next(record for record in ours if record["scope"] == "task")
    assert task_record["task_id"] == "fail_on_request"
    assert "failed on request" in task_record["exception"]
    assert [record["scope"] for record in ours].count("run") == 1


def test_two_runs_at_once_both_reach_s3(scheduler, concurrent_runs):
    monitor, monitor_state, monitor_tasks = concurrent_runs["monitor"]
    retrain, retrain_state, retrain_tasks = concurrent_runs["retrain"]
    assert monitor_state == "success", {task: each["state"] for task, each in monitor_tasks.items()}
    assert retrain_state == "success", {task: each["state"] for task, each in retrain_tasks.items()}

    # Both ran at the same time: the two runs' spans (first task start to last task end)
    # overlap. (Which tasks overlap depends on the executor's two slots.)
    def span(tasks: dict) -> tuple[float, float]:
        dated = [each for each in tasks.values() if each["start_date"] and each["end_date"]]
        return (
            min(_seconds(each["start_date"]) for each in dated),
            max(_seconds(each["end_date"]) for each in dated),
        )

    (monitor_start, monitor_end), (retrain_start, retrain_end) = (
        span(monitor_tasks),
        span(retrain_tasks),
    )
    assert monitor_start < retrain_end and retrain_start < monitor_end, (
        "the monitoring run and the retrain run did not run at the same time"
    )
    # The monitoring run scored the batch of its logical date and wrote its verdict to S3.
    registry = scheduler["registry"]
    verdicts = [
        each for each in registry.monitoring_verdicts() if each["run_id"] == monitor["dag_run_id"]
    ]
    assert len(verdicts) == 1 and verdicts[0]["drift"] is False, verdicts
    assert verdicts[0]["delivery"] == LOGICAL_DATE[:10] and verdicts[0]["listings"] >= 190
    assert monitor_tasks["trigger_retrain"]["state"] == "skipped"
    # The second retrain snapshotted itself to S3, and its check found the model for this
    # data version already in production: no stage ran, still one version.
    from pmatch.run_workspace import run_folder_name

    assert registry.read_file("runs", run_folder_name(retrain["dag_run_id"]), "snapshot.json")
    assert retrain_tasks["check"]["state"] == "success"
    assert {retrain_tasks[stage]["state"] for stage in ("validate", "train", "deploy")} == {
        "skipped"
    }
    assert [each["version"] for each in registry.versions()] == [registry.production()["version"]]
    assert not scheduler["local_s3_dir"].exists()
