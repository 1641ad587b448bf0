"""Builds the preprocessed dataset (splits, pairs, image cache, token ids) and reads it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.catalog.format import item_text, read_catalog, resolve_image, top_category
from pmatch.catalog.pairs import build_pairs
from pmatch.catalog.splits import SPLITS, split_products
from pmatch.config import PreprocessParams
from pmatch.features.images import load_images
from pmatch.features.text import Vocabulary


@dataclass(frozen=True)
class Dataset:
    """The preprocess stage's output, loaded.

    items: one row per catalogue row (split, image_index, text, category, colour...).
    images: (unique photos, size, size, 3) uint8; items.image_index points into it.
    tokens: (rows, max_tokens) int32 token ids of each row's text.
    pairs: split, image_row, text_row (positions in items), label, kind.
    """

    items: pd.DataFrame
    images: np.ndarray
    tokens: np.ndarray
    pairs: pd.DataFrame
    vocabulary: Vocabulary

    def split_pairs(self, split: str) -> pd.DataFrame:
        return self.pairs[self.pairs["split"] == split].reset_index(drop=True)

    def pair_inputs(self, pairs: pd.DataFrame) -> dict[str, np.ndarray]:
        """The model's inputs for pairs: each pair's photo array and token ids."""
        image_index = self.items["image_index"].to_numpy()[pairs["image_row"].to_numpy()]
        return {
            "image": self.images[image_index],
            "tokens": self.tokens[pairs["text_row"].to_numpy()],
        }


def build_dataset(
    catalog: str | Path, params: PreprocessParams, out_dir: str | Path, progress=None
) -> dict:
    """Splits the catalogue, builds pairs per split, caches photos and encodes text.

    The vocabulary is fitted on the train split only, so validation and test words the
    model never saw map to [UNK] as they would in production. Returns a summary dict.
    """
    catalog, out_dir = Path(catalog), Path(out_dir)
    frame = read_catalog(catalog)
    frame["split"] = split_products(frame, params.val_fraction, params.test_fraction, params.seed)
    frame["text"] = item_text(frame)
    frame["top_category"] = top_category(frame["category"])

    unique_paths = sorted(frame["image_path"].unique())
    frame["image_index"] = frame["image_path"].map({path: i for i, path in enumerate(unique_paths)})
    images = load_images(
        [resolve_image(catalog, path) for path in unique_paths], params.image_size, progress
    )

    vocabulary = Vocabulary.fit(
        frame.loc[frame["split"] == "train", "text"], params.min_token_count
    )
    tokens = vocabulary.encode(frame["text"], params.max_tokens)

    pair_frames = []
    for offset, split in enumerate(SPLITS):
        rows = frame.index[frame["split"] == split].to_numpy()
        if len(rows) == 0:
            continue
        pairs = build_pairs(
            frame.loc[rows],
            params.random_negatives,
            params.hard_negatives,
            seed=params.seed + offset,
        )
        # build_pairs numbers rows within the split; map back to positions in the catalogue.
        pairs["image_row"] = rows[pairs["image_row"].to_numpy()]
        pairs["text_row"] = rows[pairs["text_row"].to_numpy()]
        pairs.insert(0, "split", split)
        pair_frames.append(pairs)
    pairs = pd.concat(pair_frames, ignore_index=True)

    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [
        "row_key",
        "product_id",
        "variant",
        "split",
        "image_index",
        "image_path",
        "top_category",
        "color",
        "text",
    ]
    frame[columns].to_csv(out_dir / "items.csv", index_label="row")
    np.save(out_dir / "images.npy", images)
    np.save(out_dir / "tokens.npy", tokens)
    pairs.to_csv(out_dir / "pairs.csv", index=False)
    vocabulary.save(out_dir / "vocab.json")
    summary = {
        "rows": int(len(frame)),
        "products": {
            split: int(frame.loc[frame["split"] == split, "product_id"].nunique())
            for split in SPLITS
        },
        "pairs": {split: int((pairs["split"] == split).sum()) for split in SPLITS},
        "positive_share": round(float(pairs["label"].mean()), 4),
        "images": int(len(unique_paths)),
        "vocabulary": len(vocabulary),
        "unknown_token_share": {
            split: round(float(_unknown_share(tokens[frame.index[frame["split"] == split]])), 4)
            for split in SPLITS
        },
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _unknown_share(tokens: np.ndarray) -> float:
    used = tokens > 0
    return float((tokens == 1).sum() / used.sum()) if used.any() else 0.0


def load_dataset(directory: str | Path) -> Dataset:
    directory = Path(directory)
    missing = [
        name
        for name in ("items.csv", "images.npy", "tokens.npy", "pairs.csv", "vocab.json")
        if not (directory / name).exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"{directory}: preprocessed dataset lacks {', '.join(missing)}; run `dvc repro preprocess`"
        )
    return Dataset(
        items=pd.read_csv(
            directory / "items.csv", index_col="row", dtype={"variant": str}, keep_default_na=False
        ),
        images=np.load(directory / "images.npy"),
        tokens=np.load(directory / "tokens.npy"),
        pairs=pd.read_csv(directory / "pairs.csv"),
        vocabulary=Vocabulary.load(directory / "vocab.json"),
    )
