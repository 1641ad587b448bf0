"""`make airflow`'s settings: the port, Airflow's environment, refusals that name the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmatch.airflow_local import airflow_environment, airflow_port, main


def test_port_defaults_to_8080_and_reads_airflow_port():
    assert airflow_port({}) == 8080
    assert airflow_port({"AIRFLOW_PORT": " 8081 "}) == 8081


@pytest.mark.parametrize("text", ["http", "0", "70000", "-1"])
def test_a_bad_port_is_refused_naming_the_variable(text):
    with pytest.raises(ValueError, match=r"AIRFLOW_PORT=.*make airflow AIRFLOW_PORT=8081"):
        airflow_port({"AIRFLOW_PORT": text})


def test_environment_points_airflow_at_the_project_and_its_port(tmp_path: Path):
    environment = airflow_environment(tmp_path, 8099, "http://127.0.0.1:4999", environ={})
    assert environment["AIRFLOW_HOME"] == str(tmp_path / ".airflow")
    assert environment["AIRFLOW__CORE__DAGS_FOLDER"] == str(tmp_path / "dags")
    assert environment["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert environment["AIRFLOW__API__PORT"] == "8099"
    # Tasks report to the execution API on the same port, or every task fails.
    assert (
        environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://localhost:8099/execution/"
    )
    assert environment["PMATCH_PROJECT_DIR"] == str(tmp_path)
    assert environment["PMATCH_S3_ENDPOINT_URL"] == "http://127.0.0.1:4999"
    assert environment["AWS_ACCESS_KEY_ID"] == "S3RVER"
    # Bounded for a small machine, unless the user says otherwise.
    assert environment["AIRFLOW__CORE__PARALLELISM"] == "2"
    mine = airflow_environment(
        tmp_path, 8099, "http://s3", environ={"AIRFLOW__CORE__PARALLELISM": "8"}
    )
    assert mine["AIRFLOW__CORE__PARALLELISM"] == "8"


def test_an_external_endpoint_keeps_its_own_credentials(tmp_path: Path):
    environ = {"PMATCH_S3_ENDPOINT_URL": "http://minio:9000", "AWS_ACCESS_KEY_ID": "app"}
    environment = airflow_environment(tmp_path, 8080, "http://minio:9000", environ=environ)
    assert environment["AWS_ACCESS_KEY_ID"] == "app"


def test_stop_when_nothing_runs_is_harmless(tmp_path: Path, capsys):
    assert main(["stop", "--project", str(tmp_path)]) == 0
    assert main(["stop", "--project", str(tmp_path)]) == 0
    assert "nothing to stop" in capsys.readouterr().out


def test_stop_finds_a_process_that_retitled_itself_and_spares_a_reused_pid(tmp_path: Path):
    """Airflow's API server renames itself (`airflow api_server -- ...`); stop goes by the
    pid file's start time, not the command line, so it still stops it, and it leaves alone
    a process that got the pid of one that is gone."""
    import sys

    from pmatch.airflow_local import _leader, _spawn_detached, _stop_tree

    pid_file = tmp_path / "api-server.pid"
    process = _spawn_detached(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        tmp_path,
        tmp_path / "api-server.log",
        pid_file,
    )
    try:
        assert _leader(pid_file, "airflow api-server").pid == process.pid
        pid, start_time = pid_file.read_text().split()
        (tmp_path / "reused.pid").write_text(f"{pid} {float(start_time) - 100:.2f}\n")
        assert _leader(tmp_path / "reused.pid", "airflow api-server") is None
        count, _ = _stop_tree(pid_file, "airflow api-server")
        assert count == 1
        assert process.wait(timeout=10) is not None
    finally:
        if process.poll() is None:
            process.kill()
