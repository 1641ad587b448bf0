"""The monitoring decision: is this delivery drift, and does it start a retrain?

A run's drift comes from its signals (pmatch.monitor.signals): labelled F1 decides when the
delivery has enough labels; otherwise drift means at least monitor.min_signals signals
fired. A retrain starts only when drift persisted (persistence_drifts of the last
persistence_runs runs, from the verdicts stored in S3) and no retrain was triggered and no
model promoted within cooldown_hours. Fewer than min_listings listings: no verdict.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pmatch.config import MonitorParams


def safe_name(text: str) -> str:
    """A run id or delivery name made safe for file and S3 key names."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    # '.' and '..' would step out of the reports folder.
    return name if name.strip(".") else "run"


def _moment(text: str) -> datetime:
    """An ISO date or time as an aware datetime (a date alone is midnight UTC)."""
    from datetime import UTC

    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _dated(record: dict, key: str) -> datetime | None:
    """record[key] as a moment, or None when it is missing or not an ISO date (a damaged
    record elsewhere in S3 must not stop this run's decision)."""
    try:
        return _moment(record[key]) if record.get(key) else None
    except (TypeError, ValueError):
        return None


def run_drift(signals: dict[str, dict], params: MonitorParams) -> tuple[bool, list[str]]:
    """This run's drift and the signals that fired (labels_f1 first when it decides)."""
    fired = [name for name, signal in signals.items() if signal["drift"]]
    if "labels_f1" in signals:
        # Reviewed labels say whether the model still matches: inputs may move harmlessly.
        quality = signals["labels_f1"]["drift"]
        others = [name for name in fired if name != "labels_f1"]
        return quality, (["labels_f1", *others] if quality else [])
    return len(fired) >= params.min_signals, fired


def decide(
    signals: dict[str, dict],
    listings: int,
    params: MonitorParams,
    earlier_verdicts: list[dict],
    promotions: list[dict],
    run_id: str,
    run_date: str,
    delivery: str,
) -> dict:
    """The verdict's decision fields for one run.

    signals: compute_signals' result; listings: the delivery's listing count.
    earlier_verdicts: the verdict.json documents of earlier monitoring runs (any order; this
    run's own, by run_id, is ignored); promotions: the registry's promotion log.
    run_date: the run's date (ISO), against which persistence and cooldown are read.
    Returns drift (absent with reason when there are too few listings), fired,
    persistence, cooldown_until, retrain, retrain_reason and next_step.
    """
    now = _moment(run_date)
    if listings < params.min_listings:
        return {
            "reason": f"too few listings: {listings} < monitor.min_listings {params.min_listings}",
            "fired": [],
            "persistence": None,
            "cooldown_until": None,
            "retrain": False,
            "retrain_reason": None,
            "next_step": "no verdict: too few listings",
        }
    drift, fired = run_drift(signals, params)
    earlier = sorted(
        (
            verdict
            for verdict in earlier_verdicts
            if "drift" in verdict
            and verdict.get("run_id") != run_id
            and _dated(verdict, "run_date") is not None
            and _dated(verdict, "run_date") <= now
        ),
        key=lambda verdict: (_dated(verdict, "run_date"), str(verdict.get("run_id"))),
    )
    previous = [bool(verdict["drift"]) for verdict in earlier]
    recent = previous[max(0, len(previous) - (params.persistence_runs - 1)) :] + [drift]
    persistence = {
        "k": params.persistence_drifts,
        "n": params.persistence_runs,
        "recent_drift": recent,
    }
    persisted = sum(recent) >= params.persistence_drifts
    last_retrain = [
        _dated(verdict, "run_date") for verdict in earlier if verdict.get("retrain")
    ] + [_dated(entry, "when") for entry in promotions]
    last_retrain = [moment for moment in last_retrain if moment is not None and moment <= now]
    cooldown_until = None
    if last_retrain and params.cooldown_hours:
        until = max(last_retrain) + timedelta(hours=params.cooldown_hours)
        if now < until:
            cooldown_until = until.isoformat()
    retrain = drift and persisted and cooldown_until is None
    named = ", ".join(fired)
    if not drift:
        next_step = "nothing"
    elif not persisted:
        next_step = f"waiting for persistence ({sum(recent)} of {params.persistence_drifts} runs)"
    elif cooldown_until is not None:
        next_step = f"cooldown until {cooldown_until}"
    else:
        next_step = "retrain started"
    return {
        "drift": drift,
        "fired": fired,
        "persistence": persistence,
        "cooldown_until": cooldown_until,
        "retrain": retrain,
        "retrain_reason": (
            f"drift in {named} ({sum(recent)} of the last {len(recent)} runs) on delivery "
            f"{delivery}"
            if retrain
            else None
        ),
        "next_step": next_step,
    }
