"""Dated deliveries of listings for the inbox: the initial catalogue, ordinary new products
(one of them with bad rows that ingest quarantines), and shifted ones the first model
handles badly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pmatch.artifacts import CATALOG_FILE

# Each later delivery: its date (the folder's name) and its pmatch.sample.shifts shift. Two
# like the catalogue, the second with bad rows that ingest quarantines (bad_rows), then
# three of product kinds the catalogue never had (new_categories, which the first model
# scores badly: monitoring sees drift twice, the persistence rule starts a retrain, and the
# third finds a model that knows them). Fixed, so the sample is reproducible.
INITIAL_DELIVERY = "2026-01-01"
DELIVERIES = (
    ("2026-01-08", "none"),
    ("2026-01-15", "bad_rows"),
    ("2026-01-22", "new_categories"),
    ("2026-01-29", "new_categories"),
    ("2026-02-05", "new_categories"),
)
# The bad rows the bad_rows delivery brings (product_id suffix, what is wrong), each quarantined.
BAD_ROWS = ("missing_photo", "empty_title", "duplicate_photo", "too_small", "not_an_image")
# Later deliveries number their products from (index + 1) * PRODUCT_BLOCK, so none repeats.
PRODUCT_BLOCK = 10_000


def write_deliveries(inbox: str | Path, catalogue: str | Path, seed: int, listings: int) -> dict:
    """Writes the dated deliveries into inbox (replacing the sample's own folders there).

    catalogue: the sample catalogue written just before; it becomes the first delivery,
    INITIAL_DELIVERY, so the training catalogue comes in through ingest. listings: rows in
    each later delivery (pmatch.sample.shifts.write_delivery: new products, a reviewed label
    column, about one in ten listings showing another product's photo). Returns
    {delivery: rows}.
    """
    from pmatch.sample.shifts import write_delivery

    inbox, catalogue = Path(inbox), Path(catalogue)
    inbox.mkdir(parents=True, exist_ok=True)
    written = {}
    first = inbox / INITIAL_DELIVERY
    shutil.rmtree(first, ignore_errors=True)
    first.mkdir()
    shutil.copy2(catalogue / CATALOG_FILE, first / CATALOG_FILE)
    shutil.copytree(catalogue / "images", first / "images")
    written[INITIAL_DELIVERY] = sum(1 for _ in open(first / CATALOG_FILE)) - 1
    for index, (name, kind) in enumerate(DELIVERIES):
        folder = inbox / name
        shift = "none" if kind == "bad_rows" else kind
        write_delivery(
            folder,
            shift=shift,
            listings=listings,
            seed=seed + index + 1,
            first_product=(index + 1) * PRODUCT_BLOCK,
        )
        frame = pd.read_csv(folder / CATALOG_FILE, dtype=str, keep_default_na=False)
        if kind == "bad_rows":
            frame = _add_bad_rows(folder, frame, catalogue)
            frame.to_csv(folder / CATALOG_FILE, index=False, lineterminator="\n")
        written[name] = len(frame)
    return written


def _add_bad_rows(folder: Path, frame: pd.DataFrame, catalogue: Path) -> pd.DataFrame:
    """Appends one row per BAD_ROWS problem, copying a good row's text."""
    template = (
        {**frame.iloc[0].to_dict(), "label": "1"} if "label" in frame else frame.iloc[0].to_dict()
    )
    existing = pd.read_csv(catalogue / CATALOG_FILE, dtype=str, keep_default_na=False)
    bad = []
    for problem in BAD_ROWS:
        row = {**template, "product_id": f"BAD-{problem}", "variant": ""}
        row["image_path"] = f"images/bad-{problem}.png"
        path = folder / row["image_path"]
        if problem == "empty_title":
            row["title"] = "   "
            _noise(path, seed=1, side=64)
        elif problem == "duplicate_photo":
            # Another product's photo, already in the catalogue.
            shutil.copyfile(catalogue / existing["image_path"].iloc[0], path)
        elif problem == "too_small":
            _noise(path, seed=2, side=8)
        elif problem == "not_an_image":
            path.write_text("this is not a photo\n")
        bad.append(row)
    return pd.concat([frame, pd.DataFrame(bad)], ignore_index=True)


def _noise(path: Path, seed: int, side: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 250, (side, side, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")
