"""Tests for the deployment gate: when a candidate ships, and the decision file it leaves."""

from __future__ import annotations

import json

import pytest

from pmatch.config import GateParams
from pmatch.gate import GateDecision, decide, read_metrics, run_gate

PARAMS = GateParams(min_f1=0.70, max_regression=0.02)


class FakeRegistry:
    """Stands in for the S3 registry: only the production model's version and metrics."""

    def __init__(self, version: str | None = None, metrics: dict | None = None):
        self.version = version
        self.metrics = metrics
        self.calls = 0

    def production_metrics(self) -> tuple[str | None, dict | None]:
        self.calls += 1
        return self.version, self.metrics


def test_deploys_the_first_model_when_it_meets_min_f1():
    decision = decide({"f1": 0.75}, None, None, PARAMS)

    assert decision.deploy
    assert decision.candidate_f1 == 0.75
    assert decision.production_version is None
    assert "no production model yet" in decision.reasons


def test_min_f1_itself_is_good_enough():
    assert decide({"f1": 0.70}, None, None, PARAMS).deploy


def test_refuses_a_candidate_below_min_f1():
    decision = decide({"f1": 0.65}, None, None, PARAMS)

    assert not decision.deploy
    assert any("0.6500 < gate.min_f1 0.7000" in reason for reason in decision.reasons)


def test_refuses_a_candidate_below_min_f1_even_if_it_beats_production():
    decision = decide({"f1": 0.65}, {"f1": 0.60}, "v3", PARAMS)

    assert not decision.deploy


def test_refuses_a_candidate_worse_than_production_by_more_than_max_regression():
    decision = decide({"f1": 0.85}, {"f1": 0.90}, "v7", PARAMS)

    assert not decision.deploy
    assert decision.production_f1 == 0.90
    assert decision.production_version == "v7"
    assert any(
        "worse than production v7" in reason and "max_regression" in reason
        for reason in decision.reasons
    )


def test_allows_a_candidate_within_max_regression_of_production():
    decision = decide({"f1": 0.85}, {"f1": 0.86}, "v7", PARAMS)

    assert decision.deploy
    assert any(">= production v7" in reason for reason in decision.reasons)


@pytest.mark.parametrize(
    "metrics",
    [None, {}, {"precision": 0.9}, {"f1": float("nan")}, {"f1": "0.9"}, {"f1": None}, {"f1": True}],
    ids=["none", "empty", "no-f1", "nan", "string", "null", "boolean"],
)
def test_unusable_candidate_metrics_never_deploy(metrics):
    decision = decide(metrics, {"f1": 0.5}, "v1", PARAMS)

    assert not decision.deploy
    assert decision.candidate_f1 is None
    assert decision.reasons == [
        "candidate metrics are missing or F1 is not a number in [0, 1]: not deploying"
    ]


def test_production_without_readable_f1_is_reported_and_judged_on_min_f1():
    decision = decide({"f1": 0.8}, {"f1": float("nan")}, "v2", PARAMS)

    assert decision.deploy
    assert decision.production_f1 is None
    assert any("production v2 has no readable F1" in reason for reason in decision.reasons)


def test_run_gate_writes_the_decision_file(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"f1": 0.8, "threshold": 0.4}))
    registry = FakeRegistry("v4", {"f1": 0.9})
    out_path = tmp_path / "gate" / "decision.json"

    decision = run_gate(metrics, registry, PARAMS, out_path)

    assert registry.calls == 1
    assert not decision.deploy
    written = json.loads(out_path.read_text())
    assert written["deploy"] is False
    assert written["candidate_f1"] == 0.8
    assert written["production_version"] == "v4"
    assert written["reasons"] == decision.reasons
    assert GateDecision.load(out_path) == decision


def test_run_gate_deploys_when_there_is_no_production_model(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"f1": 0.8}))

    decision = run_gate(metrics, FakeRegistry(), PARAMS, tmp_path / "decision.json")

    assert decision.deploy
    assert json.loads((tmp_path / "decision.json").read_text())["deploy"] is True


@pytest.mark.parametrize("content", [None, "{not json", ""], ids=["missing", "corrupt", "empty"])
def test_run_gate_without_readable_metrics_writes_a_refusal(tmp_path, content):
    metrics = tmp_path / "metrics.json"
    if content is not None:
        metrics.write_text(content)

    decision = run_gate(metrics, FakeRegistry(), PARAMS, tmp_path / "decision.json")

    assert not decision.deploy
    written = json.loads((tmp_path / "decision.json").read_text())
    assert written["deploy"] is False
    assert "missing" in written["reasons"][0]


def test_run_gate_with_metrics_that_are_not_a_mapping_writes_a_refusal(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text("[0.9]")

    decision = run_gate(metrics, FakeRegistry(), PARAMS, tmp_path / "decision.json")

    assert not decision.deploy
    assert (tmp_path / "decision.json").is_file()


def test_read_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"f1": 0.5}))

    assert read_metrics(path) == {"f1": 0.5}
    assert read_metrics(tmp_path / "absent.json") is None
