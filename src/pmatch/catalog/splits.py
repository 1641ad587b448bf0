"""Splits a catalogue into train, validation and test sets, disjoint by product_id."""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "val", "test")


def split_products(
    frame: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> pd.Series:
    """The split of each row; all rows of one product_id (its colour variants) share one.

    Products are shuffled with seed, then the first test_fraction of them go to test and
    the next val_fraction to val, at least one product each when there are three or more.
    Products that list the same photo file (a catalogue may show one photo for a ball's three
    sizes, each its own product_id) then all take the split of the first of them, so no
    photo is seen in training and again in test.
    """
    products = np.array(sorted(frame["product_id"].unique()))
    order = np.random.default_rng(seed).permutation(len(products))
    count = len(products)
    test_count = max(1, round(count * test_fraction)) if count >= 3 else 0
    val_count = max(1, round(count * val_fraction)) if count >= 3 else 0
    assignment = {}
    for position, product_index in enumerate(order):
        if position < test_count:
            split = "test"
        elif position < test_count + val_count:
            split = "val"
        else:
            split = "train"
        assignment[products[product_index]] = split
    for group in products_sharing_a_photo(frame):
        first = min(group)
        for product in group:
            assignment[product] = assignment[first]
    return frame["product_id"].map(assignment)


def products_sharing_a_photo(frame: pd.DataFrame) -> list[set[str]]:
    """Groups of two or more product_ids linked by a photo file they list (directly, or
    through a chain of shared photos)."""
    parent: dict[str, str] = {}

    def root(product: str) -> str:
        while parent.get(product, product) != product:
            product = parent[product]
        return product

    for products in frame.groupby(frame["image_path"].str.strip())["product_id"].unique():
        first = root(products[0])
        for product in products[1:]:
            parent.setdefault(first, first)
            parent[root(product)] = first
    groups: dict[str, set[str]] = {}
    for product in parent:
        groups.setdefault(root(product), set()).add(product)
    return [group for group in groups.values() if len(group) > 1]
