"""The drift history: every monitoring run's signals over time, with deploys and retrains."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import HISTORY_CSV, HISTORY_HTML, HISTORY_PLOT
from pmatch.config import SIGNAL_NAMES

# The signals in the order their panels are drawn (the verdict's); others follow by name.
SIGNAL_ORDER = SIGNAL_NAMES
# history.html lists this many runs, newest first; history.csv holds every one.
RUNS_SHOWN = 50
# Past this many runs the plot draws lines without a marker per run.
MARKERS_UP_TO = 60
RUN_COLUMNS = [
    "run_date",
    "run_id",
    "delivery",
    "model_version",
    "reference_data_version",
    "listings",
    "labelled",
    "verdict",
    "fired",
    "retrain",
    "retrain_reason",
    "retrain_outcome",
    "next_step",
    "report",
    "suspects",
]
NO_DEPLOY = "no deploy"


def history_frame(verdicts: list[dict], promotions: list[dict]) -> pd.DataFrame:
    """One row per monitoring run, oldest first (by run date, then run id; runs without a
    run date last): RUN_COLUMNS, then SIGNAL_value, SIGNAL_threshold and SIGNAL_drift for
    every signal any run has.

    verdicts: the runs' verdict records (verdict.json), in any order. Verdicts written before
        the signals existed (one score drift, a batch instead of a delivery) are read as a
        run with the one signal "score".
    promotions: the registry's promotion log (ModelRegistry.promotion_log()); a run that
        started a retrain gets as its outcome the first promotion from its run date until
        the next later run, or "no deploy".
    retrain_outcome is empty for runs that started no retrain.
    """
    rows = [_run_row(verdict) for verdict in verdicts]
    signal_names = _signal_names(verdicts)
    columns = RUN_COLUMNS + [
        f"{name}_{part}" for name in signal_names for part in ("value", "threshold", "drift")
    ]
    frame = pd.DataFrame(rows).reindex(columns=[*columns, "_time"])
    frame["retrain"] = frame["retrain"].fillna(False).astype(bool)
    frame = frame.assign(_undated=frame["_time"].isna())
    frame = frame.sort_values(["_undated", "_time", "run_id"], kind="stable")
    frame["retrain_outcome"] = _retrain_outcomes(frame, promotions)
    return frame.drop(columns=["_undated", "_time"]).reset_index(drop=True)


def write_history(
    verdicts: list[dict], promotions: list[dict], out_dir: str | Path
) -> dict[str, Path]:
    """Writes history.csv (every run), history.png (one panel per signal: its value and
    threshold over time; deploys as vertical lines) and history.html (the plot, the retrains
    with their outcomes, and the latest RUNS_SHOWN runs, each linking its report) into
    out_dir. Returns {file name: path}.

    verdicts, promotions: as history_frame takes them.
    """
    from pmatch.templates import render_page

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (HISTORY_CSV, HISTORY_PLOT, HISTORY_HTML)}
    history = history_frame(verdicts, promotions)
    history.to_csv(paths[HISTORY_CSV], index=False, lineterminator="\n")
    deploys = _deploys(promotions)
    _plot_history(history, deploys, paths[HISTORY_PLOT])
    newest_first = history.iloc[::-1]
    page = render_page(
        "monitor_history.html.j2",
        total=len(history),
        shown=min(RUNS_SHOWN, len(history)),
        counts=history["verdict"].value_counts().to_dict(),
        runs=[_page_row(run) for run in newest_first.head(RUNS_SHOWN).itertuples(index=False)],
        retrains=[_page_row(run) for run in newest_first.itertuples(index=False) if run.retrain],
        deploys=deploys[::-1],
        csv_name=HISTORY_CSV,
        # The plot is inlined so the page stands alone, in S3 as locally.
        plot=base64.b64encode(paths[HISTORY_PLOT].read_bytes()).decode("ascii"),
    )
    paths[HISTORY_HTML].write_text(page, encoding="utf-8")
    return paths


def _signals_of(verdict: dict) -> dict[str, dict]:
    """The verdict's signals; a verdict from before the signals has its score drift."""
    if isinstance(verdict.get("signals"), dict):
        return verdict["signals"]
    if "drift_score" in verdict:
        return {
            "score": {
                "value": verdict.get("drift_score"),
                "threshold": verdict.get("threshold"),
                "drift": verdict.get("drift"),
            }
        }
    return {}


def _signal_names(verdicts: list[dict]) -> list[str]:
    found = {name for verdict in verdicts for name in _signals_of(verdict)}
    ordered = [name for name in SIGNAL_ORDER if name in found]
    return ordered + sorted(found - set(ordered))


def _run_row(verdict: dict) -> dict:
    """One history row of a verdict (RUN_COLUMNS and the signals' columns)."""
    if "drift" not in verdict:
        outcome = "no verdict"
    else:
        outcome = "drift" if verdict["drift"] else "no drift"
    delivery = verdict.get("delivery") or Path(str(verdict.get("batch") or "")).name
    folder = _run_folder(verdict, delivery)
    signals = _signals_of(verdict)
    fired = verdict.get("fired")
    if fired is None:
        fired = [name for name, signal in signals.items() if signal.get("drift")]
    row = {
        "run_date": verdict.get("run_date") or "",
        "run_id": str(verdict.get("run_id") or ""),
        "delivery": delivery,
        "model_version": verdict.get("model_version") or "",
        "reference_data_version": verdict.get("reference_data_version") or "",
        "listings": verdict.get("listings", verdict.get("current_pairs")),
        "labelled": verdict.get("labelled"),
        "verdict": outcome,
        "fired": " ".join(fired),
        "retrain": bool(verdict.get("retrain", verdict.get("drift", False))),
        "retrain_reason": verdict.get("retrain_reason") or "",
        "next_step": verdict.get("next_step") or "",
        # A run with too few listings writes no report (report_html is null).
        "report": f"{folder}/drift.html" if folder and verdict.get("report_html") else "",
        "suspects": f"{folder}/suspects.html" if folder and verdict.get("suspects_html") else "",
        "_time": _timestamp(verdict.get("run_date")),
    }
    for name, signal in signals.items():
        row[f"{name}_value"] = signal.get("value")
        row[f"{name}_threshold"] = signal.get("threshold")
        row[f"{name}_drift"] = signal.get("drift")
    return row


def _run_folder(verdict: dict, delivery: str) -> str:
    """The run's folder relative to the monitoring folder (DELIVERY/RUN), as in S3 and
    locally alike: from s3_uri, else from the report's path."""
    if verdict.get("s3_uri"):
        parts = str(verdict["s3_uri"]).rstrip("/").split("/")
        return "/".join(parts[-2:])
    if verdict.get("report_html"):
        report = Path(str(verdict["report_html"]))
        return f"{report.parent.parent.name}/{report.parent.name}"
    return ""


def _timestamp(value) -> pd.Timestamp | None:
    """A run date or promotion time as a UTC timestamp; None when absent or unreadable."""
    if not value:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _deploys(promotions: list[dict]) -> list[dict]:
    """The pointer moves with a readable time, oldest first: {when, time, version, action,
    reason}."""
    deploys = []
    for entry in promotions:
        time = _timestamp(entry.get("when"))
        if time is None:
            continue
        deploys.append(
            {
                "when": str(entry.get("when")),
                "time": time,
                "version": str(entry.get("to_version") or ""),
                "action": str(entry.get("action") or "promote"),
                "reason": str(entry.get("reason") or ""),
            }
        )
    return sorted(deploys, key=lambda deploy: deploy["time"])


def _retrain_outcomes(frame: pd.DataFrame, promotions: list[dict]) -> list[str]:
    """For each run (frame in time order) that started a retrain: the first promotion from
    its run date until the next run with a later date, else NO_DEPLOY; "" for other runs.

    The retrain run records nothing that names the monitoring run, so the two are linked by
    time: a retrain deploys before the next day's monitoring run reads production.
    """
    promoted = [deploy for deploy in _deploys(promotions) if deploy["action"] == "promote"]
    times = list(frame["_time"])
    outcomes = []
    for position, (time, retrain) in enumerate(zip(times, frame["retrain"], strict=True)):
        if not retrain:
            outcomes.append("")
            continue
        if time is None or pd.isna(time):
            outcomes.append(NO_DEPLOY + " (the run has no date)")
            continue
        later = [
            other
            for other in times[position + 1 :]
            if other is not None and not pd.isna(other) and other > time
        ]
        until = later[0] if later else None
        found = next(
            (
                deploy
                for deploy in promoted
                if deploy["time"] >= time and (until is None or deploy["time"] < until)
            ),
            None,
        )
        outcomes.append(f"deployed {found['version']} at {found['when']}" if found else NO_DEPLOY)
    return outcomes


def _page_row(run) -> dict:
    """What history.html shows of one run (a history_frame row)."""
    listings = "-" if pd.isna(run.listings) else str(int(run.listings))
    if not pd.isna(run.labelled) and run.labelled:
        listings += f" ({int(run.labelled)} labelled)"
    return {
        "run_date": _short_date(run.run_date),
        "run_id": run.run_id,
        "delivery": run.delivery,
        "model_version": str(run.model_version or "-"),
        "listings": listings,
        "verdict": run.verdict,
        "fired": run.fired or "-",
        "retrain": bool(run.retrain),
        "retrain_reason": run.retrain_reason,
        "retrain_outcome": run.retrain_outcome,
        "next_step": run.next_step or "-",
        "report": run.report,
        "suspects": run.suspects,
    }


def _short_date(value) -> str:
    """A run date as people read it: YYYY-MM-DD, with HH:MM (UTC) unless midnight."""
    stamp = _timestamp(value)
    if stamp is None:
        return str(value or "-")
    return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%d %H:%M UTC")


def _plot_history(history: pd.DataFrame, deploys: list[dict], path: Path) -> None:
    """One panel per signal over run time (value, threshold dashed, fired runs red), under a
    panel of the verdicts; deploys are grey vertical lines, labelled with their version on
    the top panel. Runs without a date are left out of the plot (they are in the table)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = pd.to_datetime(history["run_date"], utc=True, errors="coerce", format="ISO8601")
    dated = history[times.notna()]
    times = times[times.notna()].dt.tz_convert(None)
    signals = [column[: -len("_value")] for column in history.columns if column.endswith("_value")]
    columns = 3
    signal_rows = max(1, -(-len(signals) // columns))
    figure = plt.figure(figsize=(14, 2.2 + 2.1 * signal_rows))
    grid = figure.add_gridspec(1 + signal_rows, columns, height_ratios=[0.8] + [1] * signal_rows)
    overview = figure.add_subplot(grid[0, :])
    marker = "o" if len(dated) <= MARKERS_UP_TO else None
    size = 18 if len(dated) <= MARKERS_UP_TO else 6

    levels = {"no verdict": 0, "no drift": 1, "drift": 2}
    colours = {"no verdict": "tab:gray", "no drift": "tab:green", "drift": "tab:red"}
    for outcome, level in levels.items():
        where = dated["verdict"] == outcome
        overview.scatter(times[where], np.full(int(where.sum()), level), s=size, c=colours[outcome])
    retrained = dated["retrain"]
    overview.scatter(
        times[retrained], np.full(int(retrained.sum()), 2.6), marker="v", s=size * 1.5, c="black"
    )
    overview.set_yticks([0, 1, 2, 2.6], ["no verdict", "no drift", "drift", "retrain"], fontsize=8)
    overview.set_ylim(-0.5, 3.4)
    overview.set_title(
        f"{len(history)} monitoring runs; grey lines: deploys (version), dashed: each signal's "
        "threshold, red: fired",
        fontsize=10,
    )
    axes = [overview]
    for index, name in enumerate(signals):
        axis = figure.add_subplot(grid[1 + index // columns, index % columns], sharex=overview)
        values = pd.to_numeric(dated[f"{name}_value"], errors="coerce")
        thresholds = pd.to_numeric(dated[f"{name}_threshold"], errors="coerce")
        fired = dated["fired"].str.split().apply(lambda names, name=name: name in names)
        axis.plot(times, values, marker=marker, markersize=3, linewidth=1, color="tab:blue")
        axis.step(times, thresholds, where="post", color="black", linestyle="--", linewidth=0.8)
        axis.scatter(times[fired], values[fired], s=size, c="tab:red", zorder=3)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
        axes.append(axis)
    for deploy in deploys:
        moment = deploy["time"].tz_convert(None)
        for axis in axes:
            axis.axvline(moment, color="grey", linewidth=0.8, alpha=0.7)
        label = deploy["version"][:8] + (" (rollback)" if deploy["action"] == "rollback" else "")
        overview.annotate(
            label,
            (moment, 3.4),
            xytext=(2, -2),
            textcoords="offset points",
            rotation=90,
            fontsize=7,
            va="top",
            annotation_clip=True,
        )
    locator = mdates.AutoDateLocator(maxticks=8)
    for axis in axes:
        axis.xaxis.set_major_locator(locator)
        axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
