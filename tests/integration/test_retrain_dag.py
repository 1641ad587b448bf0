"""pmatch_retrain end to end: real DVC stages, a real Airflow DB, a real S3 API over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERSION_FILES = {
    "model.keras",
    "vocab.json",
    "minilm_vocab.txt",
    "preprocessing.json",
    "metrics.json",
    "reference_scores.csv",
    "reference_listings.csv",
    "reference_embeddings.npz",
    "params.yaml",
    "gate.json",
    "canary.csv",
    "evaluation.json",
    "manifest.json",
    "evaluation.png",
    "errors.html",
    "errors.csv",
}


def test_every_task_succeeds(retrained):
    _, run, _ = retrained
    assert run["state"] == "success", run
    assert list(run["tasks"]) == [
        "snapshot",
        "check",
        "validate",
        "preprocess",
        "train",
        "evaluate",
        "gate",
        "deploy",
    ]
    assert all(task["state"] == "success" for task in run["tasks"].values()), run["tasks"]


def test_model_is_deployed_and_production_points_at_it(retrained):
    from pmatch.registry import version_id

    project, _, registry = retrained
    pointer = registry.production()
    assert pointer is not None
    version = pointer["version"]
    manifest = registry.manifest(version)
    # The version id comes from the content (model and data), not the clock.
    assert version == version_id(manifest["model_sha256"], manifest["data_version"])
    assert manifest["created_at"] == "2026-11-02T03:00:00+00:00"
    prefix = f"retrain-test/models/{version}/"
    listing = registry.client.list_objects_v2(Bucket="pmatch-test", Prefix=prefix)
    names = {item["Key"][len(prefix) :] for item in listing["Contents"]}
    canary_photos = {name for name in names if name.startswith("canary/")}
    assert names - canary_photos == VERSION_FILES
    assert canary_photos
    local_metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert manifest["f1"] == local_metrics["f1"]
    assert manifest["threshold"] == local_metrics["threshold"]
    assert pointer["uri"] == f"s3://pmatch-test/retrain-test/models/{version}"


def test_model_learned_and_gate_explains_itself(retrained):
    from pmatch.run_workspace import run_folder_name

    project, run, registry = retrained
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    # Chance on this protocol (1 match : 2 non-matches) is F1 0.5 and ROC-AUC 0.5.
    assert metrics["roc_auc"] > 0.75, metrics
    assert metrics["f1"] > 0.6, metrics
    # The run worked in its own workspace; its gate handed the decision over through S3.
    decision = json.loads((Path(run["workspace"]) / "reports/gate/decision.json").read_text())
    assert json.loads(registry.read_file("runs", run_folder_name(run["run_id"]), "gate.json")) == (
        decision
    )
    assert not (project / "reports/gate/decision.json").exists()
    assert decision["deploy"] is True
    assert any("no production model yet" in reason for reason in decision["reasons"])
    assert decision["decided_at"] == "2026-11-02T03:00:00+00:00"
    assert decision["run_id"] and decision["data_version"] and decision["candidate_model_sha256"]
    for plot in (
        "pr_curve.csv",
        "score_histogram.csv",
        "evaluation.png",
        "reference_scores.csv",
        "errors.csv",
        "errors.html",
    ):
        assert (project / "reports/evaluate" / plot).stat().st_size > 0


def test_versions_are_immutable(retrained):
    from pmatch.registry import RegistryError

    project, _, registry = retrained
    version = registry.production()["version"]
    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(version, {"model.keras": project / "params.yaml"}, {})


def test_second_run_gates_against_production_and_ships_nothing_new(retrained):
    """A rerun with nothing changed compares the candidate with production on the same
    test pairs (the same model: no difference) and deploys nothing new."""
    from datetime import UTC, datetime

    from pmatch.pipeline import deploy, gate

    project, _, registry = retrained
    production = registry.production()["version"]
    decision = gate(project, run_id="rerun", run_date=datetime(2026, 11, 9, 3, 0, tzinfo=UTC))
    assert decision["production_version"] == production
    assert any(production in reason for reason in decision["reasons"]), decision
    assert decision["deploy"] is True
    assert decision["difference"] == pytest.approx(0, abs=0.01)

    shipped = deploy("rerun", datetime(2026, 11, 9, 3, 0, tzinfo=UTC), project)
    assert shipped["already_in_production"] is True
    assert len(registry.versions()) == 1


def test_an_unchanged_rerun_of_the_dag_says_already_in_production_and_does_nothing(
    retrained, capsys
):
    """Data version, params and code equal production's manifest: check short-circuits the
    run, no stage runs and no registry version is added; force would retrain."""
    from datetime import UTC, datetime

    from pmatch.catalog.version import catalog_version
    from pmatch.main_job import run_dag
    from pmatch.pipeline import retrain_check

    project, _, registry = retrained
    manifest = registry.manifest(registry.production()["version"])
    assert manifest["data_version"] == catalog_version(project / "data" / "sample")
    assert len(manifest["code_sha256"]) == 64

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMATCH_PROJECT_DIR", str(project))
        rerun = run_dag(
            "pmatch_retrain", datetime(2026, 11, 16, 3, 0, tzinfo=UTC), {"reason": "unchanged"}
        )
        check = retrain_check(project)
        forced = retrain_check(project, force=True, reason="test")
    assert rerun["state"] == "success", rerun
    assert rerun["tasks"]["snapshot"]["state"] == rerun["tasks"]["check"]["state"] == "success"
    skipped = {"snapshot", "check"}
    assert {task["state"] for name, task in rerun["tasks"].items() if name not in skipped} == {
        "skipped"
    }
    assert check["retrain"] is False
    assert check["message"].startswith(
        f"the model for data version {manifest['data_version']} is already in production"
    )
    assert forced["retrain"] is True
    assert len(registry.versions()) == 1
