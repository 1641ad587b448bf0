"""Tests for the deliveries of new listings, unshifted and with each kind of shift."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from pmatch.catalog.format import read_catalog
from pmatch.sample.categories import load_categories
from pmatch.sample.shifts import DELIVERY_COLUMNS, SHIFTS, to_german, write_delivery

LISTINGS = 40
SEED = 7


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def read_delivery(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "catalog.csv", keep_default_na=False)


def photo_values(folder: Path, frame: pd.DataFrame) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(folder / path).convert("L"), dtype=np.float32)
        for path in frame["image_path"]
    ]


def sharpness(values: np.ndarray) -> float:
    """The variance of the Laplacian: high for crisp edges, low for a blurred photo."""
    image = Image.fromarray(values.astype(np.uint8))
    laplacian = image.filter(ImageFilter.Kernel((3, 3), [0, 1, 0, 1, -4, 1, 0, 1, 0], 1, 128))
    return float(np.asarray(laplacian, dtype=np.float32).var())


@pytest.fixture(scope="module")
def deliveries(tmp_path_factory) -> dict[str, Path]:
    """One small delivery per shift, all with the same seed."""
    root = tmp_path_factory.mktemp("deliveries")
    return {
        shift: write_delivery(root / shift, shift=shift, listings=LISTINGS, seed=SEED)
        for shift in SHIFTS
    }


def test_a_delivery_is_a_catalogue_with_labels_of_new_products(deliveries):
    folder = deliveries["none"]
    frame = read_delivery(folder)
    assert list(frame.columns) == DELIVERY_COLUMNS
    assert len(frame) == LISTINGS
    assert set(frame["label"]) == {0, 1}
    assert frame["label"].sum() == round(0.9 * LISTINGS)
    # The sample catalogue's products are P0001...; a delivery's are N...
    assert frame["product_id"].str.startswith("N").all()
    assert len(read_catalog(folder)) == LISTINGS
    for image_path in frame["image_path"]:
        assert (folder / image_path).is_file()
    # A genuine listing shows its own product's photo; another one names another product's.
    for row in frame.itertuples():
        shows_own = Path(row.image_path).name.startswith(row.product_id.lower() + "-")
        assert shows_own == bool(row.label), row


def test_same_arguments_give_identical_files_and_others_differ(deliveries, tmp_path):
    again = write_delivery(tmp_path / "again", shift="none", listings=LISTINGS, seed=SEED)
    other_seed = write_delivery(tmp_path / "other", shift="none", listings=LISTINGS, seed=SEED + 1)
    later_products = write_delivery(
        tmp_path / "later", shift="none", listings=LISTINGS, seed=SEED, first_product=1000
    )
    assert tree_digest(again) == tree_digest(deliveries["none"])
    assert tree_digest(other_seed) != tree_digest(deliveries["none"])
    later = read_delivery(later_products)
    assert not set(later["product_id"]) & set(read_delivery(deliveries["none"])["product_id"])


def test_photo_shifts_change_what_they_say(deliveries):
    base = read_delivery(deliveries["none"])
    base_photos = photo_values(deliveries["none"], base)
    base_brightness = np.mean([values.mean() for values in base_photos])
    base_sharpness = np.mean([sharpness(values) for values in base_photos])

    for shift, most in (("dark", 0.6), ("compensating", 0.75)):
        photos = photo_values(deliveries[shift], read_delivery(deliveries[shift]))
        assert np.mean([values.mean() for values in photos]) < most * base_brightness, shift

    blurred = photo_values(deliveries["blur"], read_delivery(deliveries["blur"]))
    assert np.mean([sharpness(values) for values in blurred]) < 0.3 * base_sharpness

    jpeg = read_delivery(deliveries["jpeg10"])
    assert jpeg["image_path"].str.endswith(".jpg").all()
    assert Image.open(deliveries["jpeg10"] / jpeg["image_path"].iloc[0]).format == "JPEG"
    # Quality 10 leaves visible 8x8 blocks: the photo differs from the PNG's pixels.
    difference = np.mean(
        [
            np.abs(shifted - original).mean()
            for shifted, original in zip(
                photo_values(deliveries["jpeg10"], jpeg), base_photos, strict=True
            )
        ]
    )
    assert difference > 2.0

    cropped = photo_values(deliveries["crop"], read_delivery(deliveries["crop"]))
    assert all(values.shape == base_photos[0].shape for values in cropped)
    assert np.mean([np.abs(a - b).mean() for a, b in zip(cropped, base_photos, strict=True)]) > 10.0


def test_text_shifts_change_titles_and_keep_photos(deliveries):
    base = read_delivery(deliveries["none"])
    truncated = read_delivery(deliveries["truncated_titles"])
    assert (truncated["title"].str.split().str.len() <= 2).all()
    assert (truncated["image_path"] == base["image_path"]).all()

    german = read_delivery(deliveries["other_language"])
    assert (german["title"] != base["title"]).mean() > 0.9
    german_words = {"rot", "blau", "grün", "schwarz", "weiß", "grau", "Stuhl", "Hose", "Becher"}
    assert any(set(title.split()) & german_words for title in german["title"])

    shuffled = read_delivery(deliveries["shuffled_words"])
    for before, after in zip(base["title"], shuffled["title"], strict=True):
        assert sorted(before.split()) == sorted(after.split())
    assert (shuffled["title"] != base["title"]).mean() > 0.9


def test_new_categories_and_genuine_shares(deliveries):
    known = {category.path for category in load_categories().values()}
    new = read_delivery(deliveries["new_categories"])
    assert not set(new["category"]) & known
    assert read_delivery(deliveries["fewer_genuine"])["label"].mean() == pytest.approx(0.7)
    assert read_delivery(deliveries["compensating"])["label"].mean() == 1.0


def test_genuine_share_argument_overrides_the_shift(tmp_path):
    folder = write_delivery(
        tmp_path / "d", shift="fewer_genuine", listings=20, seed=1, genuine_share=0.8
    )
    assert read_delivery(folder)["label"].mean() == pytest.approx(0.8)


def test_german_keeps_capitals_and_unknown_words():
    assert to_german("Nordhaven Classic Running Shoe in dark blue") == (
        "Nordhaven Klassisch Laufschuh in dunkelblau"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"shift": "sepia", "listings": 10, "seed": 1}, "shift='sepia'; use one of"),
        ({"shift": "none", "listings": 1, "seed": 1}, "listings=1"),
        ({"shift": "none", "listings": 10, "seed": 1, "genuine_share": 1.5}, "genuine_share"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        write_delivery(tmp_path / "d", **arguments)


def test_refuses_to_replace_a_folder_that_is_not_a_delivery(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and has no catalog.csv"):
        write_delivery(tmp_path, shift="none", listings=10, seed=1)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("shift", ["none", "new_categories"])
def test_deliveries_meet_the_catalogue_contract(deliveries, tmp_path, params, shift):
    """Listings that are not genuine name another product's photo file, which the contract
    allows (one file named by several products), rather than a copy it would refuse."""
    from pmatch.validate.contract import validate_catalog

    outcome = validate_catalog(deliveries[shift], params.validate, tmp_path / "validation")
    assert outcome.success, outcome.failed
