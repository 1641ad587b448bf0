"""The monitoring decision: minimum size, signals, labels, persistence, cooldown, reason."""

from __future__ import annotations

import dataclasses

import pytest

from pmatch.monitor.decide import decide, run_drift, safe_name


def signal(drift: bool, kind: str = "input") -> dict:
    return {"kind": kind, "drift": drift, "value": 1.0 if drift else 0.0, "threshold": 0.5}


QUIET = {"score": signal(False, "score"), "photo_brightness": signal(False)}
DARK = {"score": signal(False, "score"), "photo_brightness": signal(True)}


@pytest.fixture
def monitor_params(params):
    return dataclasses.replace(
        params.monitor,
        min_listings=50,
        min_signals=1,
        persistence_runs=3,
        persistence_drifts=2,
        cooldown_hours=72,
    )


def earlier(run_date: str, drift: bool, retrain: bool = False, run_id: str = "") -> dict:
    return {
        "run_id": run_id or f"run-{run_date}",
        "run_date": run_date,
        "drift": drift,
        "retrain": retrain,
    }


def test_too_few_listings_give_no_verdict_and_no_retrain(monitor_params):
    decision = decide(DARK, 12, monitor_params, [], [], "r", "2026-01-08", "2026-01-08")
    assert "drift" not in decision
    assert decision["reason"] == "too few listings: 12 < monitor.min_listings 50"
    assert decision["retrain"] is False
    assert decision["next_step"] == "no verdict: too few listings"


def test_quiet_signals_are_no_drift(monitor_params):
    decision = decide(QUIET, 360, monitor_params, [], [], "r", "2026-01-08", "d")
    assert decision["drift"] is False
    assert decision["fired"] == [] and decision["next_step"] == "nothing"


def test_one_drift_waits_for_persistence(monitor_params):
    decision = decide(DARK, 360, monitor_params, [], [], "r", "2026-01-08", "d")
    assert decision["drift"] is True and decision["retrain"] is False
    assert decision["persistence"] == {"k": 2, "n": 3, "recent_drift": [True]}
    assert decision["next_step"] == "waiting for persistence (1 of 2 runs)"


def test_drift_in_two_of_the_last_three_runs_retrains_and_names_the_signals(monitor_params):
    history = [
        earlier("2026-01-05", True),
        earlier("2026-01-06", True),
        earlier("2026-01-07", False),
    ]
    decision = decide(DARK, 360, monitor_params, history, [], "r", "2026-01-08", "2026-01-08")
    # The oldest run is out of the window: drift, no drift, drift.
    assert decision["persistence"]["recent_drift"] == [True, False, True]
    assert decision["retrain"] is True
    assert decision["next_step"] == "retrain started"
    assert decision["retrain_reason"] == (
        "drift in photo_brightness (2 of the last 3 runs) on delivery 2026-01-08"
    )


def test_runs_without_a_verdict_and_later_runs_do_not_count(monitor_params):
    history = [
        {"run_id": "small", "run_date": "2026-01-07", "reason": "too few listings"},
        earlier("2026-01-09", True),  # after this run's date
        earlier("2026-01-08", True, run_id="r"),  # this run itself, written by a retry
    ]
    decision = decide(DARK, 360, monitor_params, history, [], "r", "2026-01-08", "d")
    assert decision["persistence"]["recent_drift"] == [True]
    assert decision["retrain"] is False


def test_no_retrain_within_the_cooldown_after_a_triggered_retrain(monitor_params):
    history = [earlier("2026-01-07", True, retrain=True)]
    decision = decide(DARK, 360, monitor_params, history, [], "r", "2026-01-08", "d")
    assert decision["drift"] is True and decision["retrain"] is False
    assert decision["cooldown_until"] == "2026-01-10T00:00:00+00:00"
    assert decision["next_step"] == "cooldown until 2026-01-10T00:00:00+00:00"
    # After the cooldown the same history retrains.
    later = decide(DARK, 360, monitor_params, history, [], "r", "2026-01-10T00:00:01", "d")
    assert later["retrain"] is True and later["cooldown_until"] is None


def test_a_promotion_starts_a_cooldown_too(monitor_params):
    history = [earlier("2026-01-07", True)]
    promotions = [{"when": "2026-01-07T12:00:00+00:00", "to_version": "v2"}]
    decision = decide(DARK, 360, monitor_params, history, promotions, "r", "2026-01-08", "d")
    assert decision["retrain"] is False
    assert decision["cooldown_until"] == "2026-01-10T12:00:00+00:00"


def test_labels_decide_over_the_other_signals(monitor_params):
    fine = {**DARK, "labels_f1": signal(False, "quality")}
    drift, fired = run_drift(fine, monitor_params)
    # The inputs moved, but the labelled F1 says the model still matches.
    assert (drift, fired) == (False, [])
    harmed = {**QUIET, "labels_f1": signal(True, "quality")}
    assert run_drift(harmed, monitor_params) == (True, ["labels_f1"])


def test_min_signals_asks_for_more_than_one_signal(monitor_params):
    two = dataclasses.replace(monitor_params, min_signals=2)
    assert run_drift(DARK, two) == (False, ["photo_brightness"])
    both = {**DARK, "score": signal(True, "score")}
    assert run_drift(both, two) == (True, ["score", "photo_brightness"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-08", "2026-01-08"),
        ("manual__2026-01-08T00:00:00+00:00", "manual__2026-01-08T00_00_00_00_00"),
        ("..", "run"),
    ],
)
def test_safe_name(text, expected):
    assert safe_name(text) == expected


def test_a_damaged_earlier_record_is_left_out(monitor_params):
    history = [
        {"run_id": "x", "run_date": "not a date", "drift": True},
        earlier("2026-01-07", True),
    ]
    promotions = [{"when": None}, {"when": "yesterday"}]
    decision = decide(DARK, 360, monitor_params, history, promotions, "r", "2026-01-08", "d")
    assert decision["persistence"]["recent_drift"] == [True, True]
    assert decision["retrain"] is True
