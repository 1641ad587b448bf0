"""Monitoring: Evidently drift reports on a batch's match scores, and the drift history."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import HISTORY_CSV, HISTORY_HTML, HISTORY_PLOT, PAIRS_FILE
from pmatch.config import MonitorParams
from pmatch.score import score_pairs_file


@dataclass(frozen=True)
class DriftVerdict:
    drift: bool
    method: str
    threshold: float
    drift_score: float
    current_pairs: int
    reference_pairs: int
    current_mean_score: float
    reference_mean_score: float
    current_match_rate: float
    reference_match_rate: float

    def to_dict(self) -> dict:
        return {
            key: (bool(value) if isinstance(value, (bool, np.bool_)) else value)
            for key, value in self.__dict__.items()
        }


def drift_report(
    reference_scores: np.ndarray,
    current_scores: np.ndarray,
    decision_threshold: float,
    params: MonitorParams,
    html_path: Path,
    json_path: Path,
    title: str,
) -> DriftVerdict:
    """Compares two score distributions with Evidently and saves its HTML and JSON report."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.metrics import MeanValue, QuantileValue, ValueDrift

    reference = pd.DataFrame({"score": reference_scores.astype(float)})
    current = pd.DataFrame({"score": current_scores.astype(float)})
    definition = DataDefinition(numerical_columns=["score"])
    report = Report(
        [
            ValueDrift(
                column="score", method=params.drift_method, threshold=params.drift_threshold
            ),
            MeanValue(column="score"),
            QuantileValue(column="score", quantile=0.5),
        ],
        metadata={"title": title},
    )
    snapshot = report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html_path))
    snapshot.save_json(str(json_path))
    # The report shows the drift score; the verdict uses the same Evidently stat test,
    # whose direction (distance above, or p-value below, the threshold) depends on the method.
    stattest = get_stattest(reference["score"], current["score"], "num", params.drift_method)
    result = stattest(reference["score"], current["score"], "num", params.drift_threshold)
    return DriftVerdict(
        drift=bool(result.drifted),
        method=params.drift_method,
        threshold=params.drift_threshold,
        drift_score=round(float(result.drift_score), 6),
        current_pairs=len(current),
        reference_pairs=len(reference),
        current_mean_score=round(float(current_scores.mean()), 6),
        reference_mean_score=round(float(reference_scores.mean()), 6),
        current_match_rate=round(float(np.mean(current_scores >= decision_threshold)), 6),
        reference_match_rate=round(float(np.mean(reference_scores >= decision_threshold)), 6),
    )


def safe_name(text: str) -> str:
    """A run id or batch name made safe for file and S3 key names."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    # '.' and '..' would step out of the reports folder.
    return name if name.strip(".") else "run"


def monitor_batch(
    matcher,
    reference_scores: str | Path,
    batch_dir: str | Path,
    params: MonitorParams,
    out_dir: str | Path,
    run_id: str,
    model_version: str | None = None,
    run_date: str | None = None,
) -> dict:
    """Scores batch_dir/pairs.csv, compares it with the model's reference scores, saves it all.

    reference_scores: the model's reference_scores.csv (its test-split scores).
    run_date: the run's logical date (YYYY-MM-DD), kept in the verdict for the drift history.
    out_dir/BATCH/RUN gets scores.csv, drift.html, drift.json (Evidently) and verdict.json.
    Returns the verdict dict, with the paths of what was written.
    """
    batch_dir = Path(batch_dir)
    reference_path = Path(reference_scores)
    if not reference_path.is_file():
        raise FileNotFoundError(
            f"{reference_path}: the model has no reference scores to compare with"
        )
    run_dir = Path(out_dir) / safe_name(batch_dir.name) / safe_name(run_id)
    run_dir.mkdir(parents=True, exist_ok=True)
    score_pairs_file(matcher, batch_dir / PAIRS_FILE, run_dir / "scores.csv")
    current = pd.read_csv(run_dir / "scores.csv")["score"].to_numpy()
    reference = pd.read_csv(reference_path)["score"].to_numpy()
    verdict = drift_report(
        reference,
        current,
        matcher.threshold,
        params,
        run_dir / "drift.html",
        run_dir / "drift.json",
        title=f"pmatch score drift: {batch_dir.name} ({run_id})",
    )
    result = {
        **verdict.to_dict(),
        "batch": str(batch_dir),
        "run_id": run_id,
        "run_date": run_date,
        "model_version": model_version,
        "report_html": str(run_dir / "drift.html"),
        "report_json": str(run_dir / "drift.json"),
        "scores": str(run_dir / "scores.csv"),
    }
    (run_dir / "verdict.json").write_text(json.dumps(result, indent=2))
    return result


# ---------------------------------------------------------------------------------------------
# Drift history: every monitoring run's verdict side by side, for review over time.

HISTORY_COLUMNS = [
    "run_date",
    "batch",
    "run_id",
    "model_version",
    "drift",
    "method",
    "drift_score",
    "threshold",
    "current_pairs",
    "current_mean_score",
    "reference_mean_score",
    "current_match_rate",
    "reference_match_rate",
    "report",
]


def drift_history(verdicts: list[dict]) -> pd.DataFrame:
    """One row per monitoring run (HISTORY_COLUMNS), oldest first by run date, then batch
    and run id; runs saved without a run date come last.

    verdicts: monitor_batch results (verdict.json documents). report is the run's drift.html
    relative to the monitoring folder, as laid out locally and in S3 alike.
    """
    rows = []
    for verdict in verdicts:
        batch = Path(str(verdict.get("batch", ""))).name
        run_id = str(verdict.get("run_id", ""))
        row = {column: verdict.get(column) for column in HISTORY_COLUMNS}
        row.update(
            batch=batch,
            run_id=run_id,
            run_date=verdict.get("run_date") or "",
            report=f"{safe_name(batch)}/{safe_name(run_id)}/drift.html",
        )
        rows.append(row)
    history = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    history["drift"] = history["drift"].fillna(False).astype(bool)
    undated = history["run_date"] == ""
    history = history.assign(_undated=undated).sort_values(
        ["_undated", "run_date", "batch", "run_id"], kind="stable"
    )
    return history.drop(columns="_undated").reset_index(drop=True)


def write_drift_history(history: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Writes history.csv, history.png (drift score and mean score per run, by batch) and
    history.html (the plot and one row per run, newest first, each linking its Evidently
    report) into out_dir. Returns {file name: path}."""
    import base64

    from pmatch.templates import render_page

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in (HISTORY_CSV, HISTORY_PLOT, HISTORY_HTML)}
    history.to_csv(paths[HISTORY_CSV], index=False)
    _plot_drift_history(history, paths[HISTORY_PLOT])
    runs = [
        {
            "drift": bool(run.drift),
            "run_date": run.run_date or "-",
            "batch": run.batch,
            "run_id": run.run_id,
            "model_version": str(run.model_version),
            "drift_score": _number(run.drift_score),
            "threshold": _number(run.threshold),
            "current_mean_score": _number(run.current_mean_score),
            "reference_mean_score": _number(run.reference_mean_score),
            "current_match_rate": _number(run.current_match_rate),
            "reference_match_rate": _number(run.reference_match_rate),
            "current_pairs": run.current_pairs,
            "report": run.report,
        }
        for run in history.iloc[::-1].itertuples(index=False)
    ]
    page = render_page(
        "history.html.j2",
        runs=runs,
        drifted=int(history["drift"].sum()),
        # The plot is inlined so the page stands alone, in S3 as locally.
        plot=base64.b64encode(paths[HISTORY_PLOT].read_bytes()).decode("ascii"),
    )
    paths[HISTORY_HTML].write_text(page, encoding="utf-8")
    return paths


def _number(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):.3f}"


def _plot_drift_history(history: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    positions = np.arange(len(history))
    for batch, runs in history.groupby("batch", sort=True):
        where = positions[history["batch"].to_numpy() == batch]
        axes[0].plot(where, runs["drift_score"].astype(float), marker="o", label=batch)
        axes[1].plot(where, runs["current_mean_score"].astype(float), marker="o", label=batch)
    drift = history["drift"].to_numpy()
    axes[0].scatter(
        positions[drift],
        history["drift_score"].astype(float).to_numpy()[drift],
        s=120,
        facecolors="none",
        edgecolors="red",
        label="drift",
    )
    for threshold in sorted(set(history["threshold"].dropna().astype(float))):
        axes[0].axhline(threshold, color="red", linestyle="--", linewidth=1)
    axes[0].set_ylabel("drift score")
    axes[0].set_title("Score drift per monitoring run (dashed: the drift threshold)")
    axes[0].legend(fontsize=8)
    reference = history["reference_mean_score"].astype(float)
    axes[1].plot(positions, reference, color="grey", linestyle=":", label="reference")
    axes[1].set_ylabel("mean match score")
    axes[1].legend(fontsize=8)
    labels = [f"{run.run_date or '-'}\n{run.batch}" for run in history.itertuples()]
    step = max(1, len(labels) // 12)
    axes[1].set_xticks(positions[::step], labels[::step], fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
