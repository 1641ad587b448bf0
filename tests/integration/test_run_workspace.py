"""Isolated runs: a run's tasks on two machines (two folders) hand data over through S3
alone, a run keeps the params of its start, and two runs never see each other's files."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import TEST_BUCKET, make_project

pytestmark = pytest.mark.integration

TINY = {
    # Few photos: each is one object to push and pull on the local S3 server.
    "sample": {"products": 60, "seed": 5, "batch_pairs": 40, "delivery_listings": 10},
    "data": {"catalog": "data/sample"},
}


@pytest.fixture
def runs(local_s3, tmp_path):
    """A tiny project, its settings and registry on the local S3 server (a prefix of its own)."""
    from pmatch.config import load_settings
    from pmatch.storage import open_registry

    project = make_project(tmp_path / "project", TINY)
    settings = load_settings(
        {
            "PMATCH_PROJECT_DIR": str(project),
            "PMATCH_S3_ENDPOINT_URL": local_s3,
            "PMATCH_S3_BUCKET": TEST_BUCKET,
            "PMATCH_S3_PREFIX": f"isolation-{tmp_path.name}",
        }
    )
    return project, settings, open_registry(settings)


def test_tasks_on_two_machines_hand_over_through_s3_and_runs_stay_apart(runs, tmp_path, capsys):
    from pmatch.run_workspace import open_workspace, run_stage, snapshot

    project, settings, registry = runs
    first = snapshot(project, "manual__run/1", registry)
    # The project changes after the first run started; the run must not see it.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["validate"]["min_title_chars"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    second = snapshot(project, "manual__run:1", registry)
    assert first["folder"] != second["folder"]
    assert first["git_commit"] == second["git_commit"]
    assert second["changed_since_commit"] == ["params.yaml"]
    # A retried first task keeps the run's snapshot.
    assert snapshot(project, "manual__run/1", registry) == first

    # Machine A runs sample + validate for the first run and hands over.
    on_a = open_workspace("manual__run/1", registry, settings, tmp_path / "machine-a")
    assert (
        yaml.safe_load((on_a / "params.yaml").read_text())["validate"]["min_title_chars"]
        == params["validate"]["min_title_chars"] - 1
    )
    assert (
        run_stage("validate", "manual__run/1", registry, settings, tmp_path / "machine-a") == on_a
    )
    capsys.readouterr()

    # Machine B, with no folder in common, gets validate's outputs from S3 without running it.
    on_b = open_workspace("manual__run/1", registry, settings, tmp_path / "machine-b")
    assert not (on_b / "reports").exists()
    run_stage("validate", "manual__run/1", registry, settings, tmp_path / "machine-b")
    said = capsys.readouterr().out
    assert "Running stage" not in said, said
    summary = json.loads((on_b / "reports/validate/summary.json").read_text())
    assert summary == json.loads((on_a / "reports/validate/summary.json").read_text())

    # The second run, on machine A too, has the new params and none of the first run's files.
    other = open_workspace("manual__run:1", registry, settings, tmp_path / "machine-a")
    assert other != on_a
    assert not (other / "reports").exists() and not (other / "data").exists()
    assert yaml.safe_load((other / "params.yaml").read_text()) == params
