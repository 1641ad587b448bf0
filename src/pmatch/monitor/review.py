"""The suspect listings of a delivery: those production scores below its match threshold."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pmatch.error_report import photo_thumbnail

SUSPECTS_FILE = "suspects.html"
# A page shows this many suspects of each delivery, the lowest scores first; scores.csv
# (below_threshold) lists every one.
SUSPECTS_SHOWN = 300
TITLE_SHOWN = 200  # characters of each title
REQUIRED_COLUMNS = ("product_id", "title", "image_path", "score")


def suspect_listings(scores: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The listings scored below threshold, the lowest score first (ties by product_id and
    variant, so the order does not depend on the delivery's row order).

    scores: the run's scores.csv frame (product_id, variant, title, image_path, score, and
        label where the delivery has one). Raises ValueError naming a missing column.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in scores.columns]
    if missing:
        raise ValueError(
            f"suspect_listings: the scores lack the column(s) {missing}; pass the run's "
            f"scores.csv, which has {list(REQUIRED_COLUMNS)}"
        )
    suspects = scores[pd.to_numeric(scores["score"], errors="coerce") < threshold].copy()
    if "variant" not in suspects.columns:
        suspects["variant"] = ""
    suspects["variant"] = suspects["variant"].fillna("").astype(str)
    return suspects.sort_values(["score", "product_id", "variant"], kind="stable").reset_index(
        drop=True
    )


def write_suspects(
    scores: pd.DataFrame,
    delivery_dir: str | Path,
    threshold: float,
    out_html: str | Path,
    verdict: dict,
) -> Path:
    """Writes a self-contained page of one delivery's suspect listings (photo, title, score,
    product, label where present), the most suspicious first. Returns out_html.

    scores: as suspect_listings takes them. delivery_dir: the delivery folder the photos
    are read from (a photo that cannot be read shows its path). threshold: the production
    model's match threshold. verdict: the run's verdict record, for the page's heading.
    """
    return write_suspects_page([(verdict, scores, Path(delivery_dir))], threshold, out_html)


def write_suspects_page(
    runs: list[tuple[dict, pd.DataFrame, Path]],
    threshold: float | None,
    out_html: str | Path,
) -> Path:
    """Writes the suspects of several runs on one page, the newest delivery first (by run
    date, then delivery), each delivery's lowest scores first. Returns out_html.

    runs: (verdict, scores, delivery folder) of each run. threshold: the match threshold
        to use for every run; None takes each verdict's own "threshold".
    """
    from pmatch.templates import render_page

    sections = []
    for verdict, scores, delivery_dir in runs:
        run_threshold = threshold if threshold is not None else verdict.get("threshold")
        if run_threshold is None:
            raise ValueError(
                f"write_suspects_page: the verdict of run {verdict.get('run_id')!r} has no "
                "threshold; pass the production model's match threshold"
            )
        suspects = suspect_listings(scores, float(run_threshold))
        shown = suspects.head(SUSPECTS_SHOWN)
        sections.append(
            {
                "delivery": verdict.get("delivery") or Path(delivery_dir).name,
                "run_date": verdict.get("run_date") or "",
                "run_id": verdict.get("run_id") or "",
                "model_version": verdict.get("model_version") or "-",
                "threshold": float(run_threshold),
                "listings": len(scores),
                "count": len(suspects),
                "labelled": "label" in suspects.columns,
                "rows": [_page_row(row, delivery_dir) for row in shown.itertuples(index=False)],
                "more": len(suspects) - len(shown),
            }
        )
    # Two stable sorts: by run date, newest first, and within one date by delivery name.
    sections.sort(key=lambda section: section["delivery"], reverse=True)
    sections.sort(key=_newest_first)
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    page = render_page("suspects.html.j2", sections=sections, shown=SUSPECTS_SHOWN)
    out_html.write_text(page, encoding="utf-8")
    return out_html


def _newest_first(section: dict) -> tuple[bool, float]:
    """Sort key: the latest run date first, runs without a readable one last."""
    try:
        stamp = pd.Timestamp(section["run_date"]) if section["run_date"] else None
    except ValueError:
        stamp = None
    if stamp is None:
        return (True, 0.0)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return (False, -stamp.timestamp())


def _page_row(row, delivery_dir: Path) -> dict:
    """What the page shows of one suspect listing."""
    title = str(row.title)
    if len(title) > TITLE_SHOWN:
        title = title[: TITLE_SHOWN - 1] + "…"
    label = getattr(row, "label", None)
    return {
        "thumbnail": photo_thumbnail(delivery_dir, str(row.image_path)),
        "image_path": str(row.image_path),
        "title": title,
        "score": float(row.score),
        "product": str(row.product_id) + (f" / {row.variant}" if row.variant else ""),
        "label": _label_text(label),
    }


def _label_text(label) -> str:
    """How a reviewed label reads: 1 says the photo matches, 0 that it does not."""
    if label is None or pd.isna(label) or label == "":
        return "-"
    return "matches (1)" if int(label) == 1 else "does not match (0)"
