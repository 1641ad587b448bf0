"""Tasks take S3 from the Airflow connection when it is defined, else from the environment."""

from __future__ import annotations

import json
import logging

from pmatch.dag_context import use_airflow_s3_connection

SECRET = "minio-secret-key-42"


def connection_json(**extra) -> str:
    """An Amazon-provider connection as the AIRFLOW_CONN_<ID> variable holds it (JSON form)."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": "pmatch-app",
            "password": SECRET,
            "extra": {"endpoint_url": "http://minio:9000", "region_name": "eu-west-3", **extra},
        }
    )


def test_a_defined_connection_sets_the_endpoint_credentials_and_region(monkeypatch, caplog):
    monkeypatch.setenv("AIRFLOW_CONN_PMATCH_S3", connection_json())
    environ = {
        "PMATCH_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "from-the-environment",
        "AWS_SESSION_TOKEN": "a token of other keys",
        "PMATCH_S3_BUCKET": "models",
    }
    with caplog.at_level(logging.INFO):
        assert use_airflow_s3_connection(environ) == "pmatch_s3"
    assert environ == {
        "PMATCH_S3_ENDPOINT_URL": "http://minio:9000",
        "AWS_ACCESS_KEY_ID": "pmatch-app",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "eu-west-3",
        "PMATCH_S3_BUCKET": "models",
    }
    assert "pmatch_s3" in caplog.text and "http://minio:9000" in caplog.text
    assert SECRET not in caplog.text


def test_the_setting_names_another_connection(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PMATCH_S3_STAGING", connection_json(region_name="us-east-1"))
    environ = {"PMATCH_AIRFLOW_CONN_ID": "pmatch_s3_staging"}
    assert use_airflow_s3_connection(environ) == "pmatch_s3_staging"
    assert environ["AWS_REGION"] == "us-east-1"


def test_without_the_connection_nothing_changes(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PMATCH_S3_ABSENT", raising=False)
    environ = {
        "PMATCH_AIRFLOW_CONN_ID": "pmatch_s3_absent",
        "PMATCH_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "from-the-environment",
    }
    before = dict(environ)
    assert use_airflow_s3_connection(environ) is None
    assert environ == before
