"""errors.csv and errors.html: the test pairs a model decides wrongly, for people to review."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import ERRORS_FILE, ERRORS_REPORT_FILE

# errors.html shows this many pairs of each kind of error, the most confident first;
# errors.csv lists every one.
ERRORS_SHOWN = 50
THUMBNAIL_SIDE = 112
TEXT_SHOWN = 220  # characters of each text in errors.html


def misjudged_pairs(
    test_pairs: pd.DataFrame, scores: np.ndarray, threshold: float, items: pd.DataFrame
) -> pd.DataFrame:
    """The pairs decided wrongly at threshold: matches scored below it and non-matches at
    or above it, each kind of error apart and the most confident first.

    items: the dataset's catalogue rows (Dataset.items), which name the photo's own row
    (photo_of), the text's row (text_of) and the text itself.
    """
    labels = test_pairs["label"].to_numpy()
    wrong = (scores >= threshold) != (labels == 1)
    pairs = test_pairs.loc[wrong]
    photo, text = items.loc[pairs["image_row"]], items.loc[pairs["text_row"]]
    errors = pd.DataFrame(
        {
            "error": np.where(
                pairs["label"].to_numpy() == 1,
                "missed match",
                "accepted " + pairs["kind"].astype(str) + " negative",
            ),
            "kind": pairs["kind"].to_numpy(),
            "label": pairs["label"].to_numpy(),
            "score": np.round(scores[wrong], 4),
            "margin": np.round(np.abs(scores[wrong] - threshold), 4),
            "photo_of": photo["row_key"].to_numpy(),
            "text_of": text["row_key"].to_numpy(),
            "category": photo["top_category"].to_numpy(),
            "image_path": photo["image_path"].to_numpy(),
            "text": text["text"].to_numpy(),
            "image_row": pairs["image_row"].to_numpy(),
            "text_row": pairs["text_row"].to_numpy(),
        }
    )
    return errors.sort_values(
        ["label", "kind", "margin"], ascending=[False, True, False], ignore_index=True
    )


def write_error_report(
    test_pairs: pd.DataFrame,
    scores: np.ndarray,
    metrics: dict,
    items: pd.DataFrame,
    out_dir: Path,
    catalog: str | Path | None = None,
) -> pd.DataFrame:
    """Writes errors.csv (every misjudged test pair: misjudged_pairs) and errors.html (up
    to ERRORS_SHOWN of each kind of error, with the photo, the text it was scored against
    and what the photo really is), for people reviewing what a model gets wrong.

    test_pairs, scores: the test split's pairs (image_row, text_row, label, kind) and the
    model's scores for them. metrics: the model's metrics (threshold and f1 are shown).
    items: the dataset's catalogue rows (Dataset.items). out_dir: where both files go.
    catalog: the catalogue folder the photos' paths are relative to; without it (or for a
    photo not there) the report names the photo's path instead of showing it.
    Returns the errors.
    """
    from pmatch.templates import render_page

    out_dir = Path(out_dir)
    errors = misjudged_pairs(test_pairs, scores, metrics["threshold"], items)
    errors.to_csv(out_dir / ERRORS_FILE, index=False)
    kinds = test_pairs["kind"].astype(str)
    # Each kind of error: its heading and how many test pairs could have had it.
    totals = {"missed match": ("Missed matches", int((test_pairs["label"] == 1).sum()))}
    for kind in sorted(set(kinds[test_pairs["label"] == 0])):
        totals[f"accepted {kind} negative"] = (
            f"Accepted {kind} negatives",
            int((kinds == kind).sum()),
        )
    counts = errors["error"].value_counts()
    summary = ", ".join(
        f"{error}: {int(counts.get(error, 0))} of {total}" for error, (_, total) in totals.items()
    )
    sections = []
    for error, (heading, total) in totals.items():
        chosen = errors[errors["error"] == error]
        sections.append(
            {
                "heading": heading,
                "count": len(chosen),
                "total": total,
                "rows": [_page_row(row, catalog) for row in chosen.head(ERRORS_SHOWN).itertuples()],
                "more": max(0, len(chosen) - ERRORS_SHOWN),
            }
        )
    page = render_page(
        "errors.html.j2",
        threshold=metrics["threshold"],
        f1=metrics["f1"],
        test_pairs=len(test_pairs),
        summary=summary,
        sections=sections,
        errors_file=ERRORS_FILE,
    )
    (out_dir / ERRORS_REPORT_FILE).write_text(page, encoding="utf-8")
    return errors


def _page_row(row, catalog: str | Path | None) -> dict:
    """What errors.html shows of one misjudged pair (a misjudged_pairs row)."""
    text = row.text if len(row.text) <= TEXT_SHOWN else row.text[: TEXT_SHOWN - 1] + "…"
    return {
        "thumbnail": photo_thumbnail(catalog, row.image_path),
        "image_path": row.image_path,
        "score": row.score,
        "text": text,
        "photo_of": str(row.photo_of),
        "text_of": str(row.text_of),
        "category": str(row.category),
    }


def photo_thumbnail(catalog: str | Path | None, image_path: str) -> str | None:
    """The photo as a base64 JPEG thumbnail, inlined so the page stands alone; None
    without a catalogue or where the photo cannot be read."""
    import base64
    import io

    from PIL import Image, ImageOps

    from pmatch.catalog.format import resolve_image

    if catalog is None:
        return None
    try:
        with Image.open(resolve_image(catalog, image_path)) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
    except OSError:
        return None
    return base64.b64encode(buffer.getvalue()).decode("ascii")
