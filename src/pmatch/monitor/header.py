"""The top of each drift report: what was compared, each signal's verdict, what happens next."""

from __future__ import annotations

import base64
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

# The columns plotted as reference-versus-current densities, when both frames have them.
PLOTTED_COLUMNS = (
    ("score", "match score"),
    ("photo_brightness", "photo brightness"),
    ("photo_sharpness", "photo sharpness"),
    ("title_length", "title length (characters)"),
)
# Below this many listings a distance between two distributions moves a lot from one
# delivery to the next (issue #26 measured false alarms of 35-65% at 5-50 pairs).
NOISY_BELOW = 200
HISTOGRAM_BINS = 30
# Marks the injected header, so adding it again replaces it instead of stacking a second.
HEADER_START = "<!-- pmatch header -->"
HEADER_END = "<!-- /pmatch header -->"
_BODY_TAG = re.compile(r"<body[^>]*>", re.IGNORECASE)


def header_html(
    verdict: dict,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    noisy_below: int = NOISY_BELOW,
) -> str:
    """The header as an HTML fragment (inline style and plots, nothing fetched).

    verdict: the run's verdict record (verdict.json).
    reference, current: the listings' scores and input statistics (columns such as score,
        photo_brightness) of the reference and of the delivery; None leaves the plots out.
    noisy_below: deliveries smaller than this get a note that their distances are noisy.
    """
    from pmatch.templates import render_page

    listings = verdict.get("listings")
    plot = _density_plot(reference, current, verdict.get("threshold"))
    return render_page(
        "drift_header.html.j2",
        start=HEADER_START,
        end=HEADER_END,
        verdict=verdict,
        outcome=_outcome(verdict),
        facts=_facts(verdict),
        signals=_signal_rows(verdict),
        noisy=isinstance(listings, int) and listings < noisy_below,
        noisy_below=noisy_below,
        plot=plot,
    )


def add_header(
    report_html: str | Path,
    verdict: dict,
    reference: pd.DataFrame | None = None,
    current: pd.DataFrame | None = None,
    noisy_below: int = NOISY_BELOW,
) -> Path:
    """Puts header_html right after the <body> tag of a saved Evidently report (replacing a
    header added before), writing the file in one step. Returns report_html.

    Raises ValueError naming the file when it has no <body> tag (not a saved HTML report).
    """
    report_html = Path(report_html)
    page = report_html.read_text(encoding="utf-8")
    start, end = page.find(HEADER_START), page.find(HEADER_END)
    if start != -1 and end != -1:
        page = page[:start] + page[end + len(HEADER_END) :]
    body = _BODY_TAG.search(page)
    if body is None:
        raise ValueError(
            f"{report_html}: no <body> tag, so it is not a saved HTML report; pass the "
            "drift.html that Evidently's snapshot.save_html wrote"
        )
    header = header_html(verdict, reference, current, noisy_below)
    page = page[: body.end()] + "\n" + header + page[body.end() :]
    _write_atomically(report_html, page)
    return report_html


def _outcome(verdict: dict) -> dict:
    """The headline: drift, no drift, or no verdict, with a CSS class."""
    if "drift" not in verdict:
        reason = verdict.get("reason") or "no reason recorded"
        return {"css": "none", "text": f"No verdict: {reason}"}
    fired = verdict.get("fired") or []
    if verdict["drift"]:
        return {"css": "drift", "text": f"Drift in {', '.join(fired) or 'a signal'}"}
    return {"css": "ok", "text": "No drift"}


def _facts(verdict: dict) -> list[tuple[str, str]]:
    """What the run was about, in the order people look for it."""
    listings = verdict.get("listings")
    labelled = verdict.get("labelled")
    size = f"{listings} listings" if listings is not None else "-"
    if labelled:
        size += f", {labelled} with reviewed labels"
    if verdict.get("min_listings") is not None:
        size += f" (a verdict needs at least {verdict['min_listings']})"
    persistence = verdict.get("persistence") or {}
    recent = persistence.get("recent_drift")
    rule = "-"
    if persistence.get("k") is not None:
        rule = f"drift in {persistence['k']} of the last {persistence.get('n')} runs"
        if recent is not None:
            marks = " ".join("drift" if flag else "ok" for flag in recent)
            rule += f" (these runs, oldest first: {marks})"
    facts = [
        ("model version", _text(verdict.get("model_version"))),
        ("reference data version", _text(verdict.get("reference_data_version"))),
        ("delivery", f"{_text(verdict.get('delivery'))} ({_text(verdict.get('delivery_uri'))})"),
        ("run", f"{_text(verdict.get('run_date'))}, {_text(verdict.get('run_id'))}"),
        ("size", size),
        ("match threshold", _number(verdict.get("threshold"))),
        ("retrain rule", rule),
    ]
    if verdict.get("cooldown_until"):
        facts.append(("cooldown until", str(verdict["cooldown_until"])))
    if verdict.get("s3_uri"):
        facts.append(("stored at", str(verdict["s3_uri"])))
    return facts


def _signal_rows(verdict: dict) -> list[dict]:
    """One row per signal: its value against its threshold; the fired ones first."""
    fired = set(verdict.get("fired") or [])
    rows = []
    for name, signal in (verdict.get("signals") or {}).items():
        drift = signal.get("drift")
        rows.append(
            {
                "name": name,
                "kind": _text(signal.get("kind")),
                "description": _text(signal.get("description")),
                "method": _text(signal.get("method")),
                "value": _number(signal.get("value")),
                "threshold": _number(signal.get("threshold")),
                "reference_mean": _number(signal.get("reference_mean")),
                "current_mean": _number(signal.get("current_mean")),
                "fired": name in fired,
                "verdict": "-" if drift is None else ("drift" if drift else "ok"),
                "css": "fired" if name in fired else ("drift" if drift else ""),
            }
        )
    return sorted(rows, key=lambda row: not row["fired"])


def _density_plot(
    reference: pd.DataFrame | None, current: pd.DataFrame | None, threshold
) -> str | None:
    """Reference and current histograms of PLOTTED_COLUMNS, each normalised to the same area
    (density), so a reference twice the delivery's size does not look twice as tall; a
    base64 PNG, or None when there is nothing to plot."""
    if reference is None or current is None:
        return None
    columns = [
        (column, label)
        for column, label in PLOTTED_COLUMNS
        if column in reference.columns and column in current.columns
    ]
    if not columns:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(columns), figsize=(3.6 * len(columns), 2.8), squeeze=False)
    for axis, (column, label) in zip(axes[0], columns, strict=True):
        before = pd.to_numeric(reference[column], errors="coerce").dropna().to_numpy()
        after = pd.to_numeric(current[column], errors="coerce").dropna().to_numpy()
        both = np.concatenate([before, after])
        if both.size == 0:
            axis.set_title(f"{label}: no values", fontsize=9)
            continue
        low, high = (0.0, 1.0) if column == "score" else (float(both.min()), float(both.max()))
        bins = np.linspace(low, high if high > low else low + 1.0, HISTOGRAM_BINS + 1)
        axis.hist(
            before,
            bins=bins,
            density=True,
            alpha=0.45,
            color="tab:gray",
            label=f"reference ({before.size})",
        )
        axis.hist(
            after,
            bins=bins,
            density=True,
            histtype="step",
            linewidth=1.8,
            color="tab:red",
            label=f"delivery ({after.size})",
        )
        axis.set_title(label, fontsize=9)
        axis.set_yticks([])
        # Few ticks, so small values (sharpness near 0.01) do not run into each other.
        axis.locator_params(axis="x", nbins=5)
        axis.tick_params(labelsize=8)
        if column == "score" and threshold is not None:
            axis.axvline(float(threshold), color="black", linestyle="--", linewidth=1)
    axes[0][0].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _number(value) -> str:
    if value is None or isinstance(value, str):
        return "-" if value is None else value
    if isinstance(value, bool):
        return str(value).lower()
    if pd.isna(value):
        return "-"
    return f"{float(value):.3f}"


def _text(value) -> str:
    return "-" if value is None or value == "" else str(value)


def _write_atomically(path: Path, text: str) -> None:
    """Writes text to path through a temporary file in the same folder and a rename."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        # mkstemp makes the file private; the report keeps the mode it had.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
