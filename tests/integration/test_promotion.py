"""Safe promotion against the real local S3 server: the gate, deploy, smoke test and rollback
on one small trained project, with the faults of issue #24 injected one at a time."""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import SMALL_PROJECT, free_port, make_project, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "pmatch-promotion"
RUN_DATE = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def project(tmp_path_factory, local_s3):
    """A 600-product sample project trained and evaluated once (`dvc repro evaluate`),
    shared by the module's tests; the registry's bucket exists on the local server."""
    from pmatch.s3server import s3_client

    folder = make_project(tmp_path_factory.mktemp("promotion"), SMALL_PROJECT)
    run([sys.executable, "-m", "dvc", "repro", "evaluate"], folder)
    client = s3_client(local_s3, "us-east-1")
    with contextlib.suppress(Exception):
        client.create_bucket(Bucket=BUCKET)
    return folder


@pytest.fixture
def registry(project, local_s3, monkeypatch, request):
    """The project's registry under a prefix of its own for this test; the environment
    points the pipeline at it. The gate decision of an earlier test is removed."""
    from pmatch.config import load_settings
    from pmatch.storage import open_registry

    monkeypatch.setenv("PMATCH_PROJECT_DIR", str(project))
    monkeypatch.setenv("PMATCH_S3_ENDPOINT_URL", local_s3)
    monkeypatch.setenv("PMATCH_S3_BUCKET", BUCKET)
    monkeypatch.setenv("PMATCH_S3_PREFIX", request.node.name[:60])
    (project / "reports/gate/decision.json").unlink(missing_ok=True)
    shutil.rmtree(project / ".pmatch", ignore_errors=True)
    return open_registry(load_settings())


@contextlib.contextmanager
def changed(path: Path, text: str):
    """path holds text inside the block, its original bytes again after it."""
    original = path.read_bytes()
    path.write_text(text)
    try:
        yield path
    finally:
        path.write_bytes(original)


def publish_previous(project: Path, registry, version: str, metrics: dict | None = None) -> None:
    """Puts the project's model in production under another version id, as an earlier
    run would have (with metrics, default the project's own)."""
    from pmatch.gate import model_files

    files = model_files(project / "models/candidate")
    metrics_file = project / "reports" / f"metrics-{version}.json"
    if metrics is None:
        shutil.copy(project / "reports/evaluate/metrics.json", metrics_file)
    else:
        metrics_file.write_text(json.dumps(metrics))
    files["metrics.json"] = metrics_file
    registry.publish(version, files, {"created_at": "2026-10-26T03:00:00+00:00"})
    registry.promote(
        version, reason="an earlier run", when="2026-10-26T03:00:00+00:00", expected_current=None
    )


def test_first_deploy_then_deploying_again_says_already_in_production(project, registry, capsys):
    from pmatch.pipeline import deploy, gate

    decision = gate(project, run_id="run-1", run_date=RUN_DATE)
    assert decision["deploy"] is True, decision
    assert any("no production model yet" in reason for reason in decision["reasons"])

    shipped = deploy("run-1", RUN_DATE, project)

    version = shipped["version"]
    assert registry.production()["version"] == version
    manifest = registry.manifest(version)
    recorded = json.loads((project / "reports/gate/decision.json").read_text())
    assert manifest["model_sha256"] == recorded["candidate_model_sha256"]
    assert manifest["data_version"] == recorded["data_version"]
    assert version.startswith(recorded["candidate_model_sha256"][:16])
    assert manifest["created_at"] == RUN_DATE.isoformat()
    assert manifest["git_commit"]
    assert {"canary.csv", "evaluation.json", "gate.json"} <= set(manifest["files"])
    assert any(name.startswith("canary/") for name in manifest["files"])
    assert "smoke test passed" in capsys.readouterr().out

    again = deploy("run-1", RUN_DATE, project)

    assert again["already_in_production"] is True
    assert "already in production" in capsys.readouterr().out
    assert [entry["version"] for entry in registry.versions()] == [version]
    assert len(registry.promotion_log()) == 1


def test_a_stale_decision_is_refused(project, registry):
    from pmatch.gate import GateRefused
    from pmatch.pipeline import deploy, gate

    assert gate(project, run_id="run-2", run_date=RUN_DATE)["deploy"] is True
    preprocessing = project / "models/candidate/preprocessing.json"
    # Another candidate: the same settings, written differently, are other bytes.
    with changed(preprocessing, json.dumps(json.loads(preprocessing.read_text()))):
        with pytest.raises(GateRefused, match="candidate_model_sha256"):
            deploy("run-2", RUN_DATE, project)
    assert registry.production() is None
    assert registry.versions() == []


def test_a_pointer_to_a_missing_version_means_no_deploy(project, registry):
    from pmatch.gate import GateRefused
    from pmatch.pipeline import deploy, gate

    registry.client.put_object(
        Bucket=BUCKET,
        Key=registry.key("production.json"),
        Body=json.dumps(
            {
                "version": "ghost-00000000",
                "uri": registry.uri("models", "ghost-00000000"),
                "promoted_at": "2026-10-26T03:00:00+00:00",
                "previous_version": None,
                "reason": "edited by hand",
            }
        ).encode(),
    )

    decision = gate(project, run_id="run-3", run_date=RUN_DATE)

    assert decision["deploy"] is False
    assert decision["production_version"] == "ghost-00000000"
    assert any(
        "production ghost-00000000 cannot be compared" in reason for reason in decision["reasons"]
    ), decision["reasons"]
    with pytest.raises(GateRefused, match="the gate refused"):
        deploy("run-3", RUN_DATE, project)


def test_unreadable_production_metrics_mean_no_deploy(project, registry):
    from pmatch.pipeline import gate

    publish_previous(project, registry, "previous-metrics", {"f1": "0.99", "threshold": "high"})

    decision = gate(project, run_id="run-4", run_date=RUN_DATE)

    assert decision["deploy"] is False
    assert any("has no threshold" in reason for reason in decision["reasons"]), decision
    written = json.loads((project / "reports/gate/decision.json").read_text())
    assert written["deploy"] is False
    assert written["allow_unreadable_production_used"] is False


def test_s3_down_during_the_gate_leaves_no_decision(project, registry, monkeypatch):
    from pmatch.gate import GateRefused
    from pmatch.pipeline import deploy, gate
    from pmatch.registry import RegistryError

    assert gate(project, run_id="run-5", run_date=RUN_DATE)["deploy"] is True
    monkeypatch.setenv("PMATCH_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")

    with pytest.raises(RegistryError):
        gate(project, run_id="run-5", run_date=RUN_DATE)

    assert not (project / "reports/gate/decision.json").exists()
    with pytest.raises(GateRefused, match="no gate decision"):
        deploy("run-5", RUN_DATE, project)


def test_the_gate_compares_with_production_on_the_same_pairs(project, registry):
    from pmatch.pipeline import gate

    publish_previous(project, registry, "previous-same")

    decision = gate(project, run_id="run-6", run_date=RUN_DATE)

    # Production is the same model: scored from the raw photos, it decides like the
    # candidate did from the dataset's features.
    assert decision["deploy"] is True, decision
    assert decision["production_version"] == "previous-same"
    assert decision["difference"] == pytest.approx(0, abs=0.01)
    low, high = decision["interval"]
    assert low <= decision["difference"] <= high


def test_a_smoke_test_mismatch_rolls_back_and_fails(project, registry):
    import pandas as pd

    from pmatch.pipeline import SmokeTestFailed, deploy, gate

    publish_previous(project, registry, "previous-good")
    assert gate(project, run_id="run-7", run_date=RUN_DATE)["deploy"] is True
    canary_file = project / "reports/evaluate/canary.csv"
    canary = pd.read_csv(canary_file, keep_default_na=False)
    canary.loc[0, "expected_score"] = (canary.loc[0, "expected_score"] + 0.5) % 1
    # The canary is not bound to the decision: a wrong expected score reaches S3, as a
    # model that no longer reproduces its evaluation would.
    with changed(canary_file, canary.to_csv(index=False)):
        with pytest.raises(SmokeTestFailed, match="rolled back to previous-good") as failure:
            deploy("run-7", RUN_DATE, project)

    assert "canary pair 1" in str(failure.value)
    assert registry.production()["version"] == "previous-good"
    actions = [entry["action"] for entry in registry.promotion_log()]
    assert actions == ["promote", "promote", "rollback"]
