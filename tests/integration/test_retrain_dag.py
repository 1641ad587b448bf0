"""pmatch_retrain end to end: real DVC stages, a real Airflow DB, a real S3 API over HTTP."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERSION_FILES = {
    "model.keras",
    "vocab.json",
    "minilm_vocab.txt",
    "preprocessing.json",
    "metrics.json",
    "reference_scores.csv",
    "params.yaml",
    "gate.json",
    "manifest.json",
    "evaluation.png",
    "errors.html",
    "errors.csv",
}


def test_every_task_succeeds(retrained):
    _, run, _ = retrained
    assert run["state"] == "success", run
    assert list(run["tasks"]) == ["validate", "preprocess", "train", "evaluate", "gate", "deploy"]
    assert all(task["state"] == "success" for task in run["tasks"].values()), run["tasks"]


def test_model_is_deployed_and_production_points_at_it(retrained):
    project, _, registry = retrained
    pointer = registry.production()
    assert pointer is not None
    version = pointer["version"]
    # The version id carries the run's logical date, not the clock.
    assert version.startswith("20261102T030000Z-")
    listing = registry.client.list_objects_v2(
        Bucket="pmatch-test", Prefix=f"retrain-test/models/{version}/"
    )
    names = {item["Key"].rsplit("/", 1)[-1] for item in listing["Contents"]}
    assert names == VERSION_FILES
    manifest = registry.manifest(version)
    local_metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert manifest["f1"] == local_metrics["f1"]
    assert manifest["threshold"] == local_metrics["threshold"]
    assert pointer["uri"] == f"s3://pmatch-test/retrain-test/models/{version}"


def test_model_learned_and_gate_explains_itself(retrained):
    project, _, _ = retrained
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    # Chance on this protocol (1 match : 2 non-matches) is F1 0.5 and ROC-AUC 0.5.
    assert metrics["roc_auc"] > 0.75, metrics
    assert metrics["f1"] > 0.6, metrics
    decision = json.loads((project / "reports/gate/decision.json").read_text())
    assert decision["deploy"] is True
    assert any("no production model yet" in reason for reason in decision["reasons"])
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
    with pytest.raises(RegistryError, match="already exists"):
        registry.publish(version, {"model.keras": project / "models/candidate/model.keras"}, {})


def test_second_run_gates_against_production(retrained):
    """A rerun with nothing changed skips every DVC stage and compares with production."""
    from pmatch.pipeline import gate

    project, _, registry = retrained
    decision = gate(project)
    production = registry.production()["version"]
    assert any(production in reason for reason in decision["reasons"]), decision
    assert decision["deploy"] is True  # equal F1 is within max_regression
