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
