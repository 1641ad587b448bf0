"""Builds the preprocessed dataset (splits, pairs, image cache, token ids) and reads it back."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.catalog.format import item_text, read_catalog, resolve_image, top_category
from pmatch.catalog.pairs import build_pairs
from pmatch.catalog.splits import SPLITS, split_products
from pmatch.config import PreprocessParams
from pmatch.features.encoders import extract_image_features, extract_text_features
from pmatch.features.images import load_images
from pmatch.features.text import Vocabulary


@dataclass(frozen=True)
class Dataset:
    """The preprocess stage's output, loaded.

    items: one row per catalogue row (split, image_index, text, category, colour...).
    images: (unique photos, size, size, 3) uint8 when photos feed a CNN trained from
        scratch (preprocess.image_features: pixels), else None.
    image_features: (unique photos, 1280 + colour columns) frozen EfficientNet-Lite0
        features and colour features (pmatch.features.colour.ColourHistogram), else None.
    tokens: (rows, max_tokens) int32 word ids (preprocess.text_features: tokens), else None.
    text_features: (rows, 384) frozen MiniLM embeddings, else None.
    colour_mentions: (rows, colour classes) the colours each row's title names
        (pmatch.features.colour.ColourMentions), else None (datasets from older versions).
    pairs: split, image_row, text_row (positions in items), label, kind.
    """

    items: pd.DataFrame
    images: np.ndarray | None
    tokens: np.ndarray | None
    pairs: pd.DataFrame
    vocabulary: Vocabulary
    image_features: np.ndarray | None = None
    text_features: np.ndarray | None = None
    preprocessing: dict | None = None
    colour_mentions: np.ndarray | None = None

    @property
    def image_input_name(self) -> str:
        return "image" if self.images is not None else "image_features"

    @property
    def text_input_name(self) -> str:
        return "tokens" if self.tokens is not None else "text_features"

    def image_inputs(self, image_index: np.ndarray) -> np.ndarray:
        """What the image tower reads for these photos: pixels or frozen features."""
        return (self.images if self.images is not None else self.image_features)[image_index]

    def text_inputs(self, rows: np.ndarray) -> np.ndarray:
        """What the text tower reads for these rows: word ids or frozen features."""
        return (self.tokens if self.tokens is not None else self.text_features)[rows]

    def split_pairs(self, split: str) -> pd.DataFrame:
        return self.pairs[self.pairs["split"] == split].reset_index(drop=True)

    def pair_inputs(self, pairs: pd.DataFrame, colour: bool = False) -> dict[str, np.ndarray]:
        """The towers' inputs for pairs: each pair's photo and text, as the towers read them
        (and, with colour, the colours each text's title names)."""
        image_index = self.items["image_index"].to_numpy()[pairs["image_row"].to_numpy()]
        inputs = {
            self.image_input_name: self.image_inputs(image_index),
            self.text_input_name: self.text_inputs(pairs["text_row"].to_numpy()),
        }
        if colour:
            inputs["colour_mentions"] = self.colour_mentions[pairs["text_row"].to_numpy()]
        return inputs


def build_dataset(
    catalog: str | Path,
    params: PreprocessParams,
    out_dir: str | Path,
    progress=None,
    feature_store=None,
    text_progress=None,
) -> dict:
    """Splits the catalogue, builds pairs per split, caches photos and encodes text.

    The vocabulary is fitted on the train split only, so validation and test words the
    model never saw map to [UNK] as they would in production. feature_store: a
    pmatch.features.store.FeatureStore for the frozen pretrained features (photos and texts
    it holds are not encoded again). progress / text_progress: optional callables(done,
    total), called as photos are loaded or encoded and as MiniLM encodes texts. Returns a
    summary dict.
    """
    catalog, out_dir = Path(catalog), Path(out_dir)
    frame = read_catalog(catalog)
    frame["split"] = split_products(frame, params.val_fraction, params.test_fraction, params.seed)
    frame["text"] = item_text(frame)
    frame["top_category"] = top_category(frame["category"])

    unique_paths = sorted(frame["image_path"].unique())
    frame["image_index"] = frame["image_path"].map({path: i for i, path in enumerate(unique_paths)})
    photo_paths = [resolve_image(catalog, path) for path in unique_paths]
    arrays = {}
    started = time.perf_counter()
    if params.image_features == "efficientnet_lite0":
        arrays["image_features"] = extract_image_features(
            photo_paths, params.image_size, progress, store=feature_store
        )
    else:
        arrays["images"] = load_images(photo_paths, params.image_size, progress)
    photo_seconds = time.perf_counter() - started

    vocabulary = Vocabulary.fit(
        frame.loc[frame["split"] == "train", "text"], params.min_token_count
    )
    if params.text_features == "minilm":
        arrays["text_features"] = extract_text_features(
            frame["text"], params.max_tokens, text_progress, store=feature_store
        )
    else:
        arrays["tokens"] = vocabulary.encode(frame["text"], params.max_tokens)
    mentions = colour_mentions_layer(params.text_features, vocabulary)
    arrays["colour_mentions"] = np.asarray(
        mentions(text_token_ids(frame["text"], params.text_features, params.max_tokens, vocabulary))
    )

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
    for name in ("images", "tokens", "image_features", "text_features", "colour_mentions"):
        # A folder reused with other feature settings must not keep the old arrays.
        (out_dir / f"{name}.npy").unlink(missing_ok=True)
    for name, array in arrays.items():
        np.save(out_dir / f"{name}.npy", array)
    pairs.to_csv(out_dir / "pairs.csv", index=False)
    vocabulary.save(out_dir / "vocab.json")
    # What scoring must do to a photo and a text to feed the trained model.
    preprocessing = {
        "image_size": params.image_size,
        "max_tokens": params.max_tokens,
        "image_features": params.image_features,
        "text_features": params.text_features,
    }
    (out_dir / "preprocessing.json").write_text(json.dumps(preprocessing, indent=2))
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
        "image_features": params.image_features,
        "text_features": params.text_features,
        "rows_naming_a_colour": round(float(arrays["colour_mentions"].max(axis=1).mean()), 4),
        "unknown_token_share": {
            split: round(
                float(
                    _unknown_share(
                        vocabulary.encode(
                            frame.loc[frame["split"] == split, "text"], params.max_tokens
                        )
                    )
                ),
                4,
            )
            for split in SPLITS
        },
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    # Photo decoding plus (with efficientnet_lite0) feature extraction. Printed, not saved:
    # the folder's content must not depend on the machine's speed.
    return {**summary, "photos_per_second": round(len(unique_paths) / max(photo_seconds, 1e-9), 1)}


def text_token_ids(texts, text_features: str, max_tokens: int, vocabulary: Vocabulary):
    """The ids a text encoder reads: WordPiece ids for MiniLM, else word ids."""
    if text_features == "minilm":
        from pmatch.features.tokenizer import load_minilm_tokenizer

        return load_minilm_tokenizer().encode(list(texts), max_tokens)[0]
    return vocabulary.encode(texts, max_tokens)


def colour_mentions_layer(text_features: str, vocabulary: Vocabulary):
    """A ColourMentions layer for the ids text_token_ids gives.

    WordPiece keeps punctuation, so only the title (before the first '.') is read; the word
    vocabulary drops it, so the whole text is read and a term it never saw is left out.
    WordPiece's vocabulary also tells words from slips, so misspelt colours count there.
    """
    from pmatch.features.colour import ColourMentions, colour_term_ids

    if text_features == "minilm":
        from pmatch.features.tokenizer import load_minilm_tokenizer

        tokenizer = load_minilm_tokenizer()
        return ColourMentions(
            colour_term_ids(tokenizer.token_ids, is_word=tokenizer.vocabulary.__contains__),
            title_end_id=tokenizer.token_ids(".")[0],
            continuation_ids=tokenizer.continuation_ids(),
            name="colour_mentions",
        )
    index = {token: position for position, token in enumerate(vocabulary.tokens)}
    return ColourMentions(
        colour_term_ids(lambda word: [index[word]] if word in index else []),
        name="colour_mentions",
    )


def _unknown_share(tokens: np.ndarray) -> float:
    used = tokens > 0
    return float((tokens == 1).sum() / used.sum()) if used.any() else 0.0


def load_dataset(directory: str | Path) -> Dataset:
    directory = Path(directory)
    required = ["items.csv", "pairs.csv", "vocab.json"]
    missing = [name for name in required if not (directory / name).exists()]
    if not (directory / "images.npy").exists() and not (directory / "image_features.npy").exists():
        missing.append("images.npy (or image_features.npy)")
    if not (directory / "tokens.npy").exists() and not (directory / "text_features.npy").exists():
        missing.append("tokens.npy (or text_features.npy)")
    if missing:
        raise FileNotFoundError(
            f"{directory}: preprocessed dataset lacks {', '.join(missing)}; run `dvc repro preprocess`"
        )

    def optional(name: str) -> np.ndarray | None:
        path = directory / f"{name}.npy"
        return np.load(path) if path.exists() else None

    return Dataset(
        items=pd.read_csv(
            directory / "items.csv", index_col="row", dtype={"variant": str}, keep_default_na=False
        ),
        images=optional("images"),
        tokens=optional("tokens"),
        pairs=pd.read_csv(directory / "pairs.csv"),
        vocabulary=Vocabulary.load(directory / "vocab.json"),
        image_features=optional("image_features"),
        text_features=optional("text_features"),
        colour_mentions=optional("colour_mentions"),
        preprocessing=(
            json.loads((directory / "preprocessing.json").read_text())
            if (directory / "preprocessing.json").exists()
            else None
        ),
    )
