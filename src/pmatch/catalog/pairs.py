"""Builds labelled image-text pairs from catalogue rows: matches, random and hard negatives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pmatch.catalog.format import top_category

PAIR_COLUMNS = ["image_row", "text_row", "label", "kind"]


def _hard_candidates(frame: pd.DataFrame, row: int, categories: np.ndarray) -> np.ndarray:
    """Rows that make a hard negative for `row`, best kind first.

    Colour variants of the same product come first; then the same category in another
    colour; then the same category at all. Rows sharing the photo or the exact text are
    never negatives: they would be matches in disguise.
    """
    anchor = frame.iloc[row]
    usable = (frame["image_path"] != anchor["image_path"]).to_numpy() & (
        frame["title"] != anchor["title"]
    ).to_numpy()
    usable[row] = False
    same_product = (frame["product_id"] == anchor["product_id"]).to_numpy() & usable
    if same_product.any():
        return np.flatnonzero(same_product)
    same_category = (categories == categories[row]) & usable
    other_colour = same_category & (frame["color"] != anchor["color"]).to_numpy()
    if other_colour.any():
        return np.flatnonzero(other_colour)
    return np.flatnonzero(same_category)


def build_pairs(
    frame: pd.DataFrame, random_negatives: int, hard_negatives: int, seed: int
) -> pd.DataFrame:
    """Pairs every row's image with its own text (label 1) and with negatives (label 0).

    frame: catalogue rows (read_catalog output or a split of it), indexed 0..n-1 by position.
    random_negatives, hard_negatives: negatives per row of each kind. A row with no hard
    candidate gets a random negative instead, so the pair count stays fixed.
    Returns columns image_row, text_row (positions in frame), label, kind.
    """
    frame = frame.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    categories = top_category(frame["category"]).to_numpy()
    images = frame["image_path"].to_numpy()
    titles = frame["title"].to_numpy()
    size = len(frame)
    rows = []
    for row in range(size):
        rows.append((row, row, 1, "match"))
        hard = _hard_candidates(frame, row, categories) if hard_negatives else np.array([])
        for _ in range(hard_negatives):
            if len(hard):
                rows.append((row, int(rng.choice(hard)), 0, "hard"))
            else:
                rows.append((row, _random_other(rng, row, images, titles), 0, "random"))
        for _ in range(random_negatives):
            rows.append((row, _random_other(rng, row, images, titles), 0, "random"))
    pairs = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    return pairs[pairs["text_row"] >= 0].reset_index(drop=True)


def _random_other(rng: np.random.Generator, row: int, images, titles) -> int:
    """A row with another photo and another title, or -1 when none exists."""
    size = len(images)
    for _ in range(32):
        other = int(rng.integers(size))
        if other != row and images[other] != images[row] and titles[other] != titles[row]:
            return other
    others = [
        other
        for other in range(size)
        if other != row and images[other] != images[row] and titles[other] != titles[row]
    ]
    return int(rng.choice(others)) if others else -1
