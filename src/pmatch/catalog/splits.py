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
    return frame["product_id"].map(assignment)
