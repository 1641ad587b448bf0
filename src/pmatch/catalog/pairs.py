"""Builds labelled image-text pairs from catalogue rows: matches, random and hard negatives,
and the colour negatives that only the match head trains on."""

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


def colour_negatives(
    items: pd.DataFrame, colour_mentions: np.ndarray, rows, share: float, seed: int
) -> pd.DataFrame:
    """Extra negatives for training the match head (kind "colour", label 0): for about
    `share` of `rows` whose title names a colour, the row's photo with the text of another
    of `rows` from another top category whose title names the same colour.

    A random negative nearly always differs in colour as well, so trained on random and
    hard negatives alone a match head learns that agreeing colours make a match, and
    accepts an orange flask's text for the photo of any orange product. These pairs show
    it otherwise. They are not part of the evaluation protocol: train on them, never
    measure on them.

    items: the dataset's rows (product_id, top_category); colour_mentions: (rows, colour
    classes), the colours each title names; rows: the row positions to pair (the train
    split's matches).
    """
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=int)
    colours = np.where(colour_mentions.max(axis=1) > 0, colour_mentions.argmax(axis=1), -1)
    categories = items["top_category"].fillna("").to_numpy()
    products = items["product_id"].to_numpy()
    pairs = []
    for row in rows:
        if colours[row] < 0 or rng.random() >= share:
            continue
        candidates = rows[
            (colours[rows] == colours[row])
            & (categories[rows] != categories[row])
            & (products[rows] != products[row])
        ]
        if len(candidates):
            pairs.append((int(row), int(rng.choice(candidates)), 0, "colour"))
    return pd.DataFrame(pairs, columns=PAIR_COLUMNS)
