"""A small project retrained once through the real pmatch_retrain DAG, shared by the tests."""

from __future__ import annotations

import pytest

from tests.conftest import SMALL_PROJECT, make_project


@pytest.fixture(scope="session")
def retrained(tmp_path_factory, local_s3, airflow_db):
    """Runs pmatch_retrain with dag.test() on a 600-product sample project against the
    local S3 server; yields (project folder, run description, registry)."""
    from datetime import UTC, datetime

    from pmatch.config import load_settings
    from pmatch.main_job import run_dag
    from pmatch.storage import open_registry

    project = make_project(tmp_path_factory.mktemp("project"), SMALL_PROJECT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMATCH_PROJECT_DIR", str(project))
        patch.setenv("PMATCH_S3_ENDPOINT_URL", local_s3)
        patch.setenv("PMATCH_S3_BUCKET", "pmatch-test")
        patch.setenv("PMATCH_S3_PREFIX", "retrain-test")
        run = run_dag("pmatch_retrain", datetime(2026, 11, 2, 3, 0, tzinfo=UTC))
        registry = open_registry(load_settings())
        yield project, run, registry
