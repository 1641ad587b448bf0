"""Tests for the synthetic sample catalogue and its monitoring batches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pmatch.catalog.format import read_catalog, resolve_image, top_category
from pmatch.sample import NEW_COLOURS, write_sample
from pmatch.sample.categories import load_categories, parse_categories

BATCH_PAIRS = 60


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, keyed by its path relative to folder."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def mean_brightness(batch: Path, pairs: pd.DataFrame) -> float:
    paths = sorted(set(pairs["image_path"]))
    return float(np.mean([np.asarray(Image.open(batch / path)).mean() for path in paths]))


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    """One 200-product sample shared by the read-only tests, to keep the suite fast."""
    folder = tmp_path_factory.mktemp("sample") / "catalogue"
    summary = write_sample(folder, products=200, seed=3, batch_pairs=BATCH_PAIRS)
    return folder, summary


def test_same_arguments_give_identical_files_and_another_seed_differs(tmp_path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    other_seed = tmp_path / "other_seed"
    write_sample(first, products=30, seed=11, batch_pairs=30)
    write_sample(second, products=30, seed=11, batch_pairs=30)
    write_sample(other_seed, products=30, seed=12, batch_pairs=30)

    digest = tree_digest(first)
    assert "catalog.csv" in digest
    assert "batches/shifted/pairs.csv" in digest
    assert digest == tree_digest(second)
    assert digest != tree_digest(other_seed)


def test_catalogue_reads_and_covers_categories_colours_and_variants(sample):
    folder, summary = sample
    frame = read_catalog(folder)

    assert list(frame.columns[:8]) == [
        "product_id",
        "variant",
        "title",
        "name",
        "color",
        "category",
        "description",
        "image_path",
    ]
    assert summary["rows"] == len(frame) == summary["images"]
    assert frame["product_id"].nunique() == summary["products"] == 200
    assert not frame.duplicated(["product_id", "variant"]).any()
    assert frame["row_key"].is_unique
    assert top_category(frame["category"]).nunique() >= 8
    assert frame["color"].nunique() >= 10
    assert not set(frame["color"]) & set(NEW_COLOURS)

    variants = frame.groupby("product_id")
    assert (variants.size() > 1).sum() >= 20
    # Colour variants share everything but their colour, title and photo.
    assert (variants[["name", "description", "category"]].nunique() == 1).all().all()
    assert (variants["color"].nunique() == variants.size()).all()

    for image_path in frame["image_path"]:
        with Image.open(resolve_image(folder, image_path)) as image:
            assert image.size == (96, 96)
            assert image.mode == "RGB"


def test_batches_have_the_requested_pairs_with_mixed_labels(sample):
    folder, summary = sample
    assert summary["batches"] == {"unshifted": BATCH_PAIRS, "shifted": BATCH_PAIRS}
    catalogue_ids = set(read_catalog(folder)["product_id"])

    for name in ("unshifted", "shifted"):
        batch = folder / "batches" / name
        pairs = pd.read_csv(
            batch / "pairs.csv", dtype={"expected_match": int}, keep_default_na=False
        )
        assert list(pairs.columns) == [
            "pair_id",
            "image_path",
            "text",
            "product_id",
            "expected_match",
            "pair_kind",
            "shift",
        ]
        assert len(pairs) == BATCH_PAIRS
        assert pairs["pair_id"].is_unique
        assert set(pairs["expected_match"]) == {0, 1}
        assert set(pairs["pair_kind"]) == {"match", "random", "hard"}
        assert not set(pairs["product_id"]) & catalogue_ids
        assert all((batch / path).is_file() for path in pairs["image_path"])

    unshifted = pd.read_csv(folder / "batches/unshifted/pairs.csv", keep_default_na=False)
    assert set(unshifted["shift"]) == {"none"}


def test_shifted_batch_uses_new_colours_and_darker_photos(sample):
    folder, _ = sample
    unshifted_folder = folder / "batches" / "unshifted"
    shifted_folder = folder / "batches" / "shifted"
    unshifted = pd.read_csv(unshifted_folder / "pairs.csv", keep_default_na=False)
    shifted = pd.read_csv(shifted_folder / "pairs.csv", keep_default_na=False)

    assert shifted["shift"].str.contains("new_colour").any()
    assert (shifted["shift"] != "none").all()
    image_colours = shifted["image_path"].str.extract(r"-(\w+)\.png$")[0]
    assert set(image_colours) & set(NEW_COLOURS)
    assert set(image_colours) - set(read_catalog(folder)["color"])
    assert mean_brightness(shifted_folder, shifted) < 0.8 * mean_brightness(
        unshifted_folder, unshifted
    )


def test_existing_catalogue_is_replaced_whole(tmp_path):
    folder = tmp_path / "catalogue"
    write_sample(folder, products=4, seed=1, batch_pairs=3)
    stale = folder / "images" / "stale.png"
    stale.write_bytes(b"left from an older run")
    calls = []

    write_sample(
        folder, products=5, seed=1, batch_pairs=3, progress=lambda *args: calls.append(args)
    )

    assert not stale.exists()
    assert read_catalog(folder)["product_id"].nunique() == 5
    assert [path.name for path in tmp_path.iterdir()] == ["catalogue"]
    assert calls and calls[-1][0] == calls[-1][1]


def test_refuses_to_replace_a_folder_that_is_not_a_catalogue(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")

    with pytest.raises(ValueError, match="has no catalog.csv"):
        write_sample(tmp_path, products=4, seed=1, batch_pairs=3)
    assert (tmp_path / "notes.txt").exists()


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"products": 0, "seed": 1, "batch_pairs": 3}, "products"),
        ({"products": 4, "seed": -1, "batch_pairs": 3}, "seed"),
        ({"products": 4, "seed": 1, "batch_pairs": 0}, "batch_pairs"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, arguments, name):
    with pytest.raises(ValueError, match=f"{name}="):
        write_sample(tmp_path / "catalogue", **arguments)
    assert not (tmp_path / "catalogue").exists()


def test_drawing_table_loads_and_a_bad_shape_names_its_category():
    categories = load_categories()
    assert len(categories) == 10
    assert categories["hat"].shapes[1].degrees == (180, 360)

    table = {
        "kite": {
            "path": "Toys|Kites",
            "nouns": ["kite"],
            "sizes": ["one size"],
            "features": ["Flies in light wind."],
            "soft": True,
            "neutral": [40, 40, 40],
            "shapes": [{"layer": "body", "kind": "triangle", "points": [[0, 0], [1, 1]]}],
        }
    }
    with pytest.raises(ValueError, match=r"category 'kite' shape 0: kind 'triangle'"):
        parse_categories(table)
