"""Tests for text and image preprocessing and the preprocessed dataset on disk."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pmatch.catalog.format import read_catalog
from pmatch.catalog.splits import split_products
from pmatch.config import load_params
from pmatch.features.dataset import build_dataset, load_dataset
from pmatch.features.images import load_image, load_images
from pmatch.features.text import PAD, UNKNOWN, Vocabulary, tokenize

DATASET_FILES = (
    "items.csv",
    "pairs.csv",
    "images.npy",
    "tokens.npy",
    "colour_mentions.npy",
    "vocab.json",
    "summary.json",
)
# A word no catalogue row contains; the dataset fixture puts it into one test-split title.
TEST_ONLY_WORD = "zanzibarite"
# The from-scratch inputs (pixels and word ids): tiny and fast; the pretrained ones have
# their own tests (test_pretrained_pipeline, test_efficientnet_lite, test_minilm).
PARAMS = dataclasses.replace(
    load_params(Path(__file__).resolve().parents[2] / "params.yaml").preprocess,
    image_size=16,
    max_tokens=24,
    image_features="pixels",
    text_features="tokens",
)


def save_png(path: Path, size: tuple[int, int], colour, mode: str = "RGB") -> Path:
    Image.new(mode, size, colour).save(path, format="PNG")
    return path


# Text -----------------------------------------------------------------------------------------


def test_tokenize_lowercases_and_keeps_words_and_numbers():
    assert tokenize("Classic Tee - RED, size XL/42!") == [
        "classic",
        "tee",
        "red",
        "size",
        "xl",
        "42",
    ]
    assert tokenize("") == []


def test_tokenize_drops_html_leftovers():
    assert tokenize("Mars HeatTech&trade; Pullover <b>new</b>") == [
        "mars",
        "heattech",
        "pullover",
        "new",
    ]


def test_vocabulary_orders_words_by_count_then_alphabetically():
    texts = ["red shirt", "Red tee", "blue TEE"]

    assert Vocabulary.fit(texts).tokens == (PAD, UNKNOWN, "red", "tee", "blue", "shirt")
    assert Vocabulary.fit(texts, min_count=2).tokens == (PAD, UNKNOWN, "red", "tee")
    assert len(Vocabulary.fit([])) == 2


def test_encode_pads_with_zero_truncates_and_maps_unknown_words_to_one():
    vocabulary = Vocabulary.fit(["red shirt", "red tee", "blue tee"])

    ids = vocabulary.encode(["red tee shirt purple", "", "blue"], max_tokens=6)

    assert ids.dtype == np.int32
    assert ids.tolist() == [
        [2, 3, 5, 1, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [4, 0, 0, 0, 0, 0],
    ]
    assert vocabulary.encode(["red tee shirt purple"], max_tokens=2).tolist() == [[2, 3]]


def test_vocabulary_survives_save_and_load(tmp_path):
    vocabulary = Vocabulary.fit(["Crème brûlée mug", "red tee", "red mug"])
    path = tmp_path / "vocab.json"

    vocabulary.save(path)
    loaded = Vocabulary.load(path)

    assert loaded == vocabulary
    assert json.loads(path.read_text())["tokens"][:2] == [PAD, UNKNOWN]
    texts = ["red mug", "tee purple"]
    assert (loaded.encode(texts, 4) == vocabulary.encode(texts, 4)).all()


# Images ---------------------------------------------------------------------------------------


def test_load_image_gives_a_square_uint8_array(tmp_path):
    path = save_png(tmp_path / "red.png", (16, 16), (200, 30, 35))

    pixels = load_image(path, 16)

    assert pixels.shape == (16, 16, 3)
    assert pixels.dtype == np.uint8
    assert (pixels == [200, 30, 35]).all()
    assert load_image(path, 8).shape == (8, 8, 3)


def test_load_image_letterboxes_a_wide_photo_on_white(tmp_path):
    path = save_png(tmp_path / "wide.png", (32, 16), (35, 85, 215))

    pixels = load_image(path, 16)

    # 32x16 shrinks to 16x8, centred: four white rows above and below.
    assert (pixels[:4] == 255).all()
    assert (pixels[-4:] == 255).all()
    assert (pixels[5:11] == [35, 85, 215]).all()


def test_load_image_converts_grey_and_transparent_photos_to_rgb(tmp_path):
    grey = save_png(tmp_path / "grey.png", (16, 16), 128, mode="L")
    transparent = save_png(tmp_path / "alpha.png", (16, 16), (10, 20, 30, 255), mode="RGBA")

    assert (load_image(grey, 16) == 128).all()
    assert (load_image(transparent, 16) == [10, 20, 30]).all()


def test_load_image_lays_transparent_pixels_on_white(tmp_path):
    # A cut-out product photo: an opaque red square on transparent black pixels.
    cutout = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    cutout.paste((200, 0, 0, 255), (4, 4, 12, 12))
    half = Image.new("RGBA", (16, 16), (0, 0, 0, 128))
    palette = Image.new("P", (16, 16), 1)
    palette.putpalette([0, 0, 0, 0, 0, 200] + [0] * 762)
    palette.paste(0, (0, 0, 16, 8))
    cutout.save(tmp_path / "cutout.png")
    half.save(tmp_path / "half.png")
    palette.save(tmp_path / "palette.png", transparency=0)

    pixels = load_image(tmp_path / "cutout.png", 16)
    assert (pixels[:4] == 255).all() and (pixels[:, :4] == 255).all()
    assert (pixels[4:12, 4:12] == [200, 0, 0]).all()
    assert (load_image(tmp_path / "half.png", 16) == 127).all()
    palette_pixels = load_image(tmp_path / "palette.png", 16)
    assert (palette_pixels[:8] == 255).all() and (palette_pixels[8:] == [0, 0, 200]).all()


def test_load_images_keeps_the_order_of_the_paths(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    paths = [
        save_png(tmp_path / f"{index}.png", (16, 16), colour)
        for index, colour in enumerate(colours)
    ]
    calls = []

    images = load_images(paths, 16, progress=lambda done, total: calls.append((done, total)))

    assert images.shape == (3, 16, 16, 3)
    assert [tuple(image[0, 0]) for image in images] == colours
    assert calls[-1] == (3, 3)


# The preprocessed dataset ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(sample_catalog, tmp_path_factory) -> tuple[Path, dict, pd.DataFrame]:
    """The sample, with TEST_ONLY_WORD in one test-split title, preprocessed once."""
    catalogue = tmp_path_factory.mktemp("features") / "catalogue"
    shutil.copytree(sample_catalog, catalogue)
    frame = pd.read_csv(catalogue / "catalog.csv", dtype=str, keep_default_na=False)
    splits = split_products(
        read_catalog(catalogue), PARAMS.val_fraction, PARAMS.test_fraction, PARAMS.seed
    )
    test_row = int(np.flatnonzero(splits == "test")[0])
    frame.loc[test_row, "title"] = f"{TEST_ONLY_WORD} {frame.loc[test_row, 'title']}"
    frame.to_csv(catalogue / "catalog.csv", index=False)

    out_dir = catalogue.parent / "dataset"
    summary = build_dataset(catalogue, PARAMS, out_dir)
    return out_dir, summary, frame


def test_build_dataset_writes_every_file(built):
    out_dir, summary, frame = built

    for name in DATASET_FILES:
        assert (out_dir / name).is_file(), name
    images = np.load(out_dir / "images.npy")
    tokens = np.load(out_dir / "tokens.npy")
    assert images.shape == (frame["image_path"].nunique(), 16, 16, 3)
    assert images.dtype == np.uint8
    assert tokens.shape == (len(frame), PARAMS.max_tokens)
    # The photo rate is printed, not saved: the folder must not depend on the machine.
    assert summary.pop("photos_per_second") > 0
    assert json.loads((out_dir / "summary.json").read_text()) == summary


def test_splits_are_disjoint_by_product(built):
    out_dir, _, _ = built
    items = pd.read_csv(out_dir / "items.csv", dtype=str, keep_default_na=False)

    assert set(items["split"]) == {"train", "val", "test"}
    assert (items.groupby("product_id")["split"].nunique() == 1).all()


def test_pairs_only_join_rows_of_their_own_split(built):
    out_dir, _, _ = built
    items = pd.read_csv(out_dir / "items.csv", index_col="row", keep_default_na=False)
    pairs = pd.read_csv(out_dir / "pairs.csv")

    split = items["split"]
    assert (split.loc[pairs["image_row"]].to_numpy() == pairs["split"].to_numpy()).all()
    assert (split.loc[pairs["text_row"]].to_numpy() == pairs["split"].to_numpy()).all()
    assert set(pairs["kind"]) == {"match", "random", "hard"}
    per_row = 1 + PARAMS.random_negatives + PARAMS.hard_negatives
    assert len(pairs) == per_row * len(items)


def test_vocabulary_is_fitted_on_the_train_split_only(built):
    out_dir, _, _ = built
    items = pd.read_csv(out_dir / "items.csv", index_col="row", keep_default_na=False)
    tokens = np.load(out_dir / "tokens.npy")
    vocabulary = Vocabulary.load(out_dir / "vocab.json")

    assert TEST_ONLY_WORD not in vocabulary.tokens
    row = int(np.flatnonzero(items["text"].str.contains(TEST_ONLY_WORD))[0])
    assert items["split"].iloc[row] == "test"
    assert tokens[row, 0] == 1
    # Every train word is known (min_token_count is 1), so train rows hold no [UNK].
    train = (items["split"] == "train").to_numpy()
    assert not (tokens[train] == 1).any()
    train_words = {word for text in items.loc[train, "text"] for word in tokenize(text)}
    assert set(vocabulary.tokens[2:]) == train_words


def test_summary_counts_agree_with_the_files(built):
    out_dir, summary, _ = built
    items = pd.read_csv(out_dir / "items.csv", dtype=str, keep_default_na=False)
    pairs = pd.read_csv(out_dir / "pairs.csv")

    assert summary["rows"] == len(items)
    assert summary["images"] == len(np.load(out_dir / "images.npy"))
    assert summary["vocabulary"] == len(Vocabulary.load(out_dir / "vocab.json"))
    assert summary["pairs"] == pairs["split"].value_counts().to_dict()
    assert summary["products"] == items.groupby("split")["product_id"].nunique().to_dict()
    assert summary["positive_share"] == round(pairs["label"].mean(), 4)
    assert summary["unknown_token_share"]["train"] == 0
    assert summary["unknown_token_share"]["test"] > 0


def test_load_dataset_reads_back_what_was_built(built):
    out_dir, summary, _ = built

    dataset = load_dataset(out_dir)

    assert len(dataset.items) == summary["rows"]
    assert len(dataset.vocabulary) == summary["vocabulary"]
    test_pairs = dataset.split_pairs("test")
    assert len(test_pairs) == summary["pairs"]["test"]
    inputs = dataset.pair_inputs(test_pairs)
    assert inputs["image"].shape == (len(test_pairs), 16, 16, 3)
    assert inputs["tokens"].shape == (len(test_pairs), PARAMS.max_tokens)
    # A match pair's inputs are its own row's photo and text.
    position = int(np.flatnonzero(test_pairs["kind"] == "match")[0])
    row = int(test_pairs["image_row"].iloc[position])
    image_index = int(dataset.items["image_index"].iloc[row])
    assert (inputs["tokens"][position] == dataset.tokens[row]).all()
    assert (inputs["image"][position] == dataset.images[image_index]).all()


def test_load_dataset_names_a_missing_file(built, tmp_path):
    out_dir, _, _ = built
    partial = tmp_path / "dataset"
    shutil.copytree(out_dir, partial)
    (partial / "tokens.npy").unlink()

    with pytest.raises(
        FileNotFoundError,
        match=r"lacks tokens\.npy \(or text_features\.npy\); run `dvc repro preprocess`",
    ):
        load_dataset(partial)
