"""`make airflow`'s machinery under a real scheduler: a monitor run triggered over the REST
API without a logical date succeeds, and stopping leaves no process and no port behind."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.conftest import ROOT, free_port
from tests.integration.airflow_api import AirflowApi

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RUN_TIMEOUT_SECONDS = 240


@pytest.fixture
def deployment(retrained, monkeypatch):
    """`make airflow` (pmatch.airflow_local.start) for the retrained project on free ports,
    using the tests' S3 server; yields (project, API client); stops everything after."""
    import psutil

    from pmatch.airflow_local import airflow_home, start, stop

    project, _, _ = retrained
    for folder in ("dags", "plugins"):
        shutil.copytree(ROOT / folder, project / folder, dirs_exist_ok=True)
    from pmatch.sample.shifts import write_delivery

    write_delivery(project / "data/inbox/rest", shift="none", listings=60, seed=5)
    port = free_port()
    monkeypatch.setenv("AIRFLOW_PORT", str(port))
    monkeypatch.setenv("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", str(free_port()))
    monkeypatch.setenv("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))
    home = airflow_home(project)
    try:
        start(project)
        leader = psutil.Process(int((home / "airflow.pid").read_text().split()[0]))
        password_file = home / "simple_auth_manager_passwords.json.generated"
        api = AirflowApi(f"http://localhost:{port}", json.loads(password_file.read_text())["admin"])
        yield project, api, leader
    finally:
        stop(project)


def test_a_run_triggered_without_a_logical_date_succeeds_and_stop_cleans_up(deployment):
    import psutil

    from pmatch.airflow_local import stop

    project, api, leader = deployment
    deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
    while True:
        try:
            api.call("GET", "/api/v2/dags/pmatch_monitor")
            break
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline, "pmatch_monitor was never parsed"
            time.sleep(2)
    # The REST API's default: no logical date, so the tasks' context has no `ds`.
    run = api.call(
        "POST",
        "/api/v2/dags/pmatch_monitor/dagRuns",
        {"logical_date": None, "conf": {"delivery": "data/inbox/rest"}},
    )
    assert run["logical_date"] is None
    api.call("PATCH", "/api/v2/dags/pmatch_monitor", {"is_paused": False})
    run_path = f"/api/v2/dags/pmatch_monitor/dagRuns/{urllib.parse.quote(run['dag_run_id'])}"
    while (state := api.call("GET", run_path)["state"]) not in ("success", "failed"):
        assert time.monotonic() < deadline, f"run still {state} after {RUN_TIMEOUT_SECONDS} s"
        time.sleep(3)
    instances = api.call("GET", run_path + "/taskInstances")["task_instances"]
    states = {each["task_id"]: each["state"] for each in instances}
    assert state == "success", states
    assert states["monitor"] == "success"
    # Dated by run_after: the run has no logical date.
    # In the run's own workspace (pmatch.run_tasks), not in the project folder.
    from pmatch.run_workspace import run_folder_name

    workspace = project / ".pmatch/runs" / run_folder_name(run["dag_run_id"])
    verdicts = list((workspace / "reports/monitor/rest").glob("*/verdict.json"))
    assert not (project / "reports/monitor/rest").exists()
    verdict = json.loads(verdicts[0].read_text())
    assert verdict["run_id"] == run["dag_run_id"]
    assert verdict["run_date"].startswith(run["run_after"][:10]), verdict["run_date"]

    members = [leader, *leader.children(recursive=True)]
    assert len(members) > 3  # standalone, scheduler, dag-processor, API server, workers...
    stop(project)
    assert not [
        each for each in members if each.is_running() and each.status() != psutil.STATUS_ZOMBIE
    ]
    assert not (project / ".airflow" / "airflow.pid").exists()
    # Gone, or a zombie waiting for init to reap it.
    assert not leader.is_running() or leader.status() == psutil.STATUS_ZOMBIE
