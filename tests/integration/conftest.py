"""A small project retrained once through the real pmatch_retrain DAG, shared by the tests."""

from __future__ import annotations

import pytest

from tests.conftest import SMALL_PROJECT, make_project


@pytest.fixture(scope="session")
def retrained(tmp_path_factory, local_s3, airflow_db):
    """Runs pmatch_retrain with dag.test() on a 600-product sample project against the
    local S3 server, then `dvc repro evaluate` in the project, which restores the run's
    outputs from the run cache the run's workspace shares with the project; yields (project
    folder, run description, registry)."""
    from datetime import UTC, datetime

    from pmatch.config import load_settings
    from pmatch.main_job import run_dag
    from pmatch.pipeline import repro
    from pmatch.storage import open_registry

    project = make_project(tmp_path_factory.mktemp("project"), SMALL_PROJECT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMATCH_PROJECT_DIR", str(project))
        patch.setenv("PMATCH_S3_ENDPOINT_URL", local_s3)
        patch.setenv("PMATCH_S3_BUCKET", "pmatch-test")
        patch.setenv("PMATCH_S3_PREFIX", "retrain-test")
        run = run_dag("pmatch_retrain", datetime(2026, 11, 2, 3, 0, tzinfo=UTC))
        repro("evaluate", project)
        registry = open_registry(load_settings())
        yield project, run, registry


# The bucket prefix of the scheduler's registry: its own, so its deploys and monitoring runs
# never show up in the other tests' registries.
SCHEDULER_PREFIX = "scheduler-test"
SCHEDULER_COMPONENTS = ("scheduler", "dag-processor", "api-server")


@pytest.fixture(scope="session")
def scheduler(retrained, local_s3, tmp_path_factory):
    """A real Airflow deployment: `airflow scheduler`, `dag-processor` and `api-server`
    (LocalExecutor, a SQLite metadata DB in the project's .airflow/, free ports, the matching
    execution API URL, no example DAGs, no scheduled runs) over a copy of the retrained
    project, with the project's DAGs, plugins and the test-only DAG pmatch_check, and S3 (the
    local_s3 server, prefix SCHEDULER_PREFIX) from the Airflow connection pmatch_s3 only.

    Yields a dict: project, home (AIRFLOW_HOME), api (an AirflowApi as admin), registry,
    local_s3_dir (where a task that started its own S3 server would have written). Stops
    every component, with its process group and descendants, at the end.
    """
    import json
    import os
    import shutil

    from pmatch.airflow_local import airflow_environment, start_components, stop_components
    from pmatch.config import load_settings
    from pmatch.s3server import LOCAL_CREDENTIALS
    from pmatch.storage import open_registry
    from tests.conftest import ROOT, TEST_BUCKET, free_port
    from tests.integration.airflow_api import AirflowApi

    source, _, _ = retrained
    project = tmp_path_factory.mktemp("scheduler") / "project"
    shutil.copytree(source, project, ignore=shutil.ignore_patterns(".airflow", "dags", "plugins"))
    dags = project / "dags"
    dags.mkdir()
    for dag_file in [
        *(ROOT / "dags").glob("*.py"),
        *(ROOT / "tests/integration/scheduler_dags").glob("*.py"),
    ]:
        shutil.copy2(dag_file, dags / dag_file.name)
    shutil.copytree(
        ROOT / "plugins", project / "plugins", ignore=shutil.ignore_patterns("__pycache__")
    )

    port = free_port()
    environment = airflow_environment(project, port, local_s3, environ=dict(os.environ))
    # S3 comes from the Airflow connection alone: were it ignored, a task would start an
    # embedded server of its own over local_s3_dir, and the registry checks would fail.
    # The failure log goes to its default, AIRFLOW_HOME/pmatch_failures.jsonl.
    for variable in ("PMATCH_S3_ENDPOINT_URL", *LOCAL_CREDENTIALS, "PMATCH_FAILURE_LOG"):
        environment.pop(variable, None)
    local_s3_dir = project / "own-s3-server"
    connection = {
        "conn_type": "aws",
        "login": LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "password": LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": local_s3, "region_name": "us-east-1"},
    }
    environment.update(
        {
            "AIRFLOW_CONN_PMATCH_S3": json.dumps(connection),
            "PMATCH_S3_BUCKET": TEST_BUCKET,
            "PMATCH_S3_PREFIX": SCHEDULER_PREFIX,
            "PMATCH_LOCAL_S3_DIR": str(local_s3_dir),
            "PMATCH_LOCAL_S3_PORT": str(free_port()),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Only the runs a test triggers: no scheduled (weekly, daily) run competes with
            # them for the DAGs' single run slot.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        }
    )
    home = project / ".airflow"
    try:
        url = start_components(environment, SCHEDULER_COMPONENTS)
        password = json.loads((home / "simple_auth_manager_passwords.json.generated").read_text())
        api = AirflowApi(url, password["admin"])
        settings = load_settings(
            {
                "PMATCH_PROJECT_DIR": str(project),
                "PMATCH_S3_ENDPOINT_URL": local_s3,
                "PMATCH_S3_BUCKET": TEST_BUCKET,
                "PMATCH_S3_PREFIX": SCHEDULER_PREFIX,
            }
        )
        yield {
            "project": project,
            "home": home,
            "api": api,
            "registry": open_registry(settings),
            "local_s3_dir": local_s3_dir,
        }
    finally:
        started = _components_and_descendants(home)
        stop_components(home, SCHEDULER_COMPONENTS)
        left = [each for each in started if _alive(each)]
        assert not left, f"still running after stop_components: {left}"


def _components_and_descendants(home) -> list:
    import psutil

    processes = []
    for component in SCHEDULER_COMPONENTS:
        try:
            leader = psutil.Process(int((home / f"{component}.pid").read_text().split()[0]))
            processes += [leader, *leader.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            continue
    return processes


def _alive(process) -> bool:
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
