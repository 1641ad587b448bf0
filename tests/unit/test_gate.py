"""The deployment gate's rule, its bootstrap, and the binding deploy checks it against."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from pmatch.gate import (
    BOUND_FIELDS,
    Comparison,
    GateDecision,
    GateRefused,
    check_decision,
    decide,
    f1_at,
    paired_bootstrap,
)

METRICS = {"f1": 0.8, "threshold": 0.5}


@pytest.fixture
def gate_params(params):
    return dataclasses.replace(
        params.gate, min_f1=0.6, max_regression=0.02, bootstrap_resamples=500
    )


def scored_pairs(products: int = 40, seed: int = 0):
    """Three pairs per product (a match and two non-matches) and scores that separate them
    with some mistakes, as a trained model's do."""
    rng = np.random.default_rng(seed)
    labels = np.tile([1, 0, 0], products)
    scores = np.clip(labels * 0.6 + rng.normal(0.2, 0.15, len(labels)), 0, 1)
    product_ids = np.repeat([f"p{index}" for index in range(products)], 3)
    return labels, scores, product_ids


def comparison(candidate_scores, production_scores, labels, product_ids):
    return Comparison(
        labels=labels,
        products=product_ids,
        candidate_scores=candidate_scores,
        candidate_threshold=0.5,
        production_scores=production_scores,
        production_threshold=None if production_scores is None else 0.5,
    )


def test_identical_scores_give_zero_difference_and_deploy(gate_params):
    labels, scores, product_ids = scored_pairs()

    decision = decide(
        METRICS, comparison(scores, scores.copy(), labels, product_ids), "v1", gate_params
    )

    assert decision.deploy, decision.reasons
    assert decision.difference == 0
    low, high = decision.interval
    assert low <= 0 <= high
    assert decision.candidate_f1 == decision.production_f1
    assert decision.production_version == "v1"
    assert decision.test_pairs == 120 and decision.products == 40


def test_a_clearly_worse_candidate_is_refused(gate_params):
    labels, scores, product_ids = scored_pairs()
    # The candidate misses half the matches production finds.
    worse = scores.copy()
    matches = np.flatnonzero(labels == 1)
    worse[matches[::2]] = 0.1

    decision = decide(METRICS, comparison(worse, scores, labels, product_ids), "v1", gate_params)

    assert not decision.deploy
    assert decision.difference < -gate_params.max_regression
    assert decision.interval[1] < 0
    assert any("worse than production" in reason for reason in decision.reasons)
    assert decision.production_f1 > decision.candidate_f1


def test_a_wide_interval_below_the_floor_refuses_even_a_small_point_loss(gate_params):
    labels, scores, product_ids = scored_pairs()
    worse = scores.copy()
    worse[np.flatnonzero(labels == 1)[:10]] = 0.1
    lenient = dataclasses.replace(gate_params, max_regression=1.0)

    assert decide(METRICS, comparison(worse, scores, labels, product_ids), "v1", lenient).deploy
    strict = decide(METRICS, comparison(worse, scores, labels, product_ids), "v1", gate_params)
    assert not strict.deploy


def test_the_bootstrap_resamples_products_and_is_seeded():
    labels, scores, product_ids = scored_pairs()
    worse = np.where(labels == 1, scores - 0.2, scores)
    first = paired_bootstrap(labels, worse >= 0.5, scores >= 0.5, product_ids, 300, 0.9, 7)
    again = paired_bootstrap(labels, worse >= 0.5, scores >= 0.5, product_ids, 300, 0.9, 7)

    assert first == again
    difference, low, high = first
    assert difference == pytest.approx(f1_at(labels, worse, 0.5) - f1_at(labels, scores, 0.5))
    assert low <= difference <= high


def test_the_first_deploy_is_judged_on_min_f1_and_says_so(gate_params):
    labels, scores, product_ids = scored_pairs()

    decision = decide(METRICS, comparison(scores, None, labels, product_ids), None, gate_params)

    assert decision.deploy
    assert decision.production_version is None
    assert any("no production model yet" in reason for reason in decision.reasons)


def test_a_candidate_below_min_f1_is_refused(gate_params):
    labels, scores, product_ids = scored_pairs()
    strict = dataclasses.replace(gate_params, min_f1=0.99)

    decision = decide(METRICS, comparison(scores, None, labels, product_ids), None, strict)

    assert not decision.deploy
    assert any("< gate.min_f1 0.9900" in reason for reason in decision.reasons)


@pytest.mark.parametrize(
    "metrics",
    [None, {}, {"f1": float("nan")}, {"f1": "0.9"}, {"f1": None}, {"f1": True}, {"f1": 1.5}],
    ids=["none", "empty", "nan", "string", "null", "boolean", "out-of-range"],
)
def test_unusable_candidate_metrics_never_deploy(metrics, gate_params):
    labels, scores, product_ids = scored_pairs()

    decision = decide(metrics, comparison(scores, scores, labels, product_ids), "v1", gate_params)

    assert not decision.deploy
    assert "candidate metrics are missing" in decision.reasons[0]


def test_unreadable_production_means_no_deploy(gate_params):
    labels, scores, product_ids = scored_pairs()

    decision = decide(
        METRICS,
        comparison(scores, None, labels, product_ids),
        "v9",
        gate_params,
        production_error="downloading production v9 failed: no such complete version",
    )

    assert not decision.deploy
    assert decision.production_version == "v9"
    assert not decision.allow_unreadable_production_used
    assert any(
        "production v9 cannot be compared" in reason and "no such complete version" in reason
        for reason in decision.reasons
    )


def test_unreadable_production_with_the_opt_in_is_judged_on_min_f1_and_recorded(gate_params):
    labels, scores, product_ids = scored_pairs()
    allowing = dataclasses.replace(gate_params, allow_unreadable_production=True)

    decision = decide(
        METRICS,
        comparison(scores, None, labels, product_ids),
        "v9",
        allowing,
        production_error="loading production v9 failed: corrupt",
    )

    assert decision.deploy
    assert decision.allow_unreadable_production_used
    assert any("allow_unreadable_production is true" in reason for reason in decision.reasons)


BOUND = {
    "candidate_model_sha256": "a" * 64,
    "metrics_sha256": "b" * 64,
    "data_version": "c" * 64,
    "params_sha256": "d" * 64,
}


def approved(**changes) -> GateDecision:
    return GateDecision(
        deploy=True, reasons=["ok"], production_version="v1", **{**BOUND, **changes}
    )


def test_a_decision_about_this_candidate_passes():
    check_decision(approved(), dict(BOUND), "v1")


@pytest.mark.parametrize("name", BOUND_FIELDS)
def test_deploy_refuses_when_a_bound_field_differs_naming_it(name):
    current = {**BOUND, name: "e" * 64}

    with pytest.raises(GateRefused, match=f"its {name} is"):
        check_decision(approved(), current, "v1")


def test_deploy_refuses_a_decision_without_bindings():
    with pytest.raises(GateRefused, match="candidate_model_sha256"):
        check_decision(approved(candidate_model_sha256=None), dict(BOUND), "v1")


def test_deploy_refuses_when_production_moved_since_the_gate():
    with pytest.raises(GateRefused, match="production moved from v1 to v2 since the gate"):
        check_decision(approved(), dict(BOUND), "v2")


def test_deploy_refuses_a_no_quoting_the_reasons():
    refusal = GateDecision(deploy=False, reasons=["candidate F1 0.05 < gate.min_f1 0.7"])

    with pytest.raises(GateRefused, match="candidate F1 0.05"):
        check_decision(refusal, dict(BOUND), None)


def test_the_decision_round_trips_and_a_missing_one_refuses(tmp_path):
    path = tmp_path / "gate" / "decision.json"
    decision = approved(interval=[-0.01, 0.02], decided_at="2026-11-02T03:00:00+00:00")

    decision.save(path)

    assert GateDecision.load(path) == decision
    assert json.loads(path.read_text())["candidate_model_sha256"] == "a" * 64
    assert [item.name for item in path.parent.iterdir()] == ["decision.json"]
    with pytest.raises(GateRefused, match="no gate decision; run `pmatch gate` first"):
        GateDecision.load(tmp_path / "absent.json")
    path.write_text("{not json")
    with pytest.raises(GateRefused, match="not a gate decision"):
        GateDecision.load(path)


def test_the_catalogue_version_follows_every_photo(tmp_path):
    from pmatch.catalog.version import catalog_version

    (tmp_path / "a.jpg").write_bytes(b"photo a")
    (tmp_path / "b.jpg").write_bytes(b"photo b")
    (tmp_path / "catalog.csv").write_text(
        "product_id,title,image_path\np1,Red mug,a.jpg\np2,Blue cup,b.jpg\n"
    )
    first = catalog_version(tmp_path)

    assert catalog_version(tmp_path) == first
    (tmp_path / "b.jpg").write_bytes(b"photo B")
    assert catalog_version(tmp_path) != first
    changed = catalog_version(tmp_path)
    (tmp_path / "b.jpg").unlink()
    assert catalog_version(tmp_path) not in (first, changed)
    (tmp_path / "catalog.csv").unlink()
    with pytest.raises(ValueError, match="no catalog.csv"):
        catalog_version(tmp_path)


def test_the_canary_is_half_matches_and_the_same_every_time():
    from pmatch.evaluate import choose_canary

    labels, scores, product_ids = scored_pairs(products=10)
    scored = pd.DataFrame(
        {
            "image_path": [f"{product}.jpg" for product in product_ids],
            "text": [f"text {index}" for index in range(len(labels))],
            "label": labels,
            "kind": np.where(labels == 1, "match", "random"),
            "product_id": product_ids,
            "score": scores,
        }
    )

    canary = choose_canary(scored, 8)

    assert len(canary) == 8
    assert canary["label"].sum() == 4
    pd.testing.assert_frame_equal(canary, choose_canary(scored.sample(frac=1, random_state=1), 8))
