"""Plans the monitoring batches: an unshifted batch like the catalogue, and a drifted one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pmatch.catalog.format import item_text
from pmatch.catalog.pairs import build_pairs
from pmatch.sample.planning import (
    CATALOG_COLUMNS,
    SHIFTED_STREAM,
    UNSHIFTED_STREAM,
    PlannedRow,
    catalog_record,
    plan_rows,
)

PAIR_COLUMNS = [
    "pair_id",
    "image_path",
    "text",
    "product_id",
    "expected_match",
    "pair_kind",
    "shift",
]
# Each batch's name (its folder under batches/) and seed-sequence stream, in writing order.
BATCH_STREAMS = {"unshifted": UNSHIFTED_STREAM, "shifted": SHIFTED_STREAM}
# The order shifts are listed in a pair's shift column, such as "new_colour+dark".
SHIFT_ORDER = ("new_colour", "dark", "blur", "noisy_title", "truncated_title")


@dataclass(frozen=True)
class PlannedBatch:
    """One batch before its photos are drawn.

    pairs: the pairs.csv frame (PAIR_COLUMNS).
    rows: the rows whose photos the pairs show.
    """

    pairs: pd.DataFrame
    rows: list[PlannedRow]


def plan_batches(
    seed: int, batch_pairs: int, random_negatives: int, hard_negatives: int
) -> dict[str, PlannedBatch]:
    """Every batch of BATCH_STREAMS by name; the arguments are write_sample's."""
    return {
        name: _plan_batch(seed, stream, name, batch_pairs, random_negatives, hard_negatives)
        for name, stream in BATCH_STREAMS.items()
    }


def _plan_batch(
    seed: int,
    stream: int,
    name: str,
    batch_pairs: int,
    random_negatives: int,
    hard_negatives: int,
) -> PlannedBatch:
    """A batch's pairs.csv frame and the rows whose photos it shows.

    Starts from ceil(batch_pairs / pairs per row) products and adds products while the
    pairs fall short (a tiny batch can lack negatives), then keeps the first batch_pairs.
    """
    shifted = name == "shifted"
    prefix = "S" if shifted else "B"
    pairs_per_row = 1 + random_negatives + hard_negatives
    product_count = max(2, math.ceil(batch_pairs / pairs_per_row))
    pair_seed = int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])
    while True:
        rows = plan_rows(seed, stream, prefix, product_count, shifted)
        frame = pd.DataFrame([catalog_record(row) for row in rows], columns=CATALOG_COLUMNS)
        pairs = build_pairs(frame, random_negatives, hard_negatives, pair_seed)
        if len(pairs) >= batch_pairs:
            break
        product_count += max(1, math.ceil((batch_pairs - len(pairs)) / pairs_per_row))
    pairs = pairs.head(batch_pairs).reset_index(drop=True)

    texts = item_text(frame)
    records = []
    for position, pair in pairs.iterrows():
        image_row = rows[int(pair["image_row"])]
        text_row = rows[int(pair["text_row"])]
        shifts = set(image_row.image_shifts) | set(text_row.text_shifts)
        records.append(
            {
                "pair_id": f"{name}-{position + 1:05d}",
                "image_path": image_row.image_path,
                "text": texts.iloc[int(pair["text_row"])],
                "product_id": image_row.product_id,
                "expected_match": int(pair["label"]),
                "pair_kind": pair["kind"],
                "shift": "+".join(shift for shift in SHIFT_ORDER if shift in shifts) or "none",
            }
        )
    drawn = sorted(set(pairs["image_row"].astype(int)))
    return PlannedBatch(
        pairs=pd.DataFrame(records, columns=PAIR_COLUMNS),
        rows=[rows[index] for index in drawn],
    )
