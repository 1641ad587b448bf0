"""Tests for the catalogue format, pair building and the product-disjoint splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pmatch.catalog.format import (
    CatalogError,
    item_text,
    read_catalog,
    read_catalog_table,
    resolve_image,
    top_category,
)
from pmatch.catalog.pairs import PAIR_COLUMNS, build_pairs, colour_negatives
from pmatch.catalog.splits import split_products


def catalogue_frame(rows: list[tuple]) -> pd.DataFrame:
    """Catalogue rows from (product_id, variant, title, color, category, image_path)."""
    frame = pd.DataFrame(
        rows, columns=["product_id", "variant", "title", "color", "category", "image_path"]
    )
    frame["name"] = ""
    frame["description"] = ""
    return frame


# Rows 0-1: two colour variants of one T-shirt. Rows 2-3: other tops in red. Rows 4-5: two
# green bags. Row 6: the only hat.
SHOP = catalogue_frame(
    [
        ("P1", "red", "Tee - red", "red", "Tops|T-shirts", "images/p1-red.png"),
        ("P1", "blue", "Tee - blue", "blue", "Tops|T-shirts", "images/p1-blue.png"),
        ("P2", "", "Shirt in red", "red", "Tops|Shirts", "images/p2.png"),
        ("P3", "", "Red polo", "red", "Tops|Polos", "images/p3.png"),
        ("P4", "", "Green bag", "green", "Bags|Handbags", "images/p4.png"),
        ("P5", "", "Green tote", "green", "Bags|Totes", "images/p5.png"),
        ("P6", "", "Black hat", "black", "Hats|Fedoras", "images/p6.png"),
    ]
)


def hard_texts(pairs: pd.DataFrame, row: int) -> set[int]:
    chosen = pairs[(pairs["image_row"] == row) & (pairs["kind"] == "hard")]
    return set(chosen["text_row"])


# read_catalog ---------------------------------------------------------------------------------


def test_read_catalog_without_catalog_csv_says_what_a_catalogue_is(tmp_path):
    with pytest.raises(CatalogError, match="no catalog.csv") as caught:
        read_catalog(tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "catalog.csv") in message
    assert "product_id, title, image_path" in message


def test_read_catalog_names_the_missing_required_column(tmp_path):
    (tmp_path / "catalog.csv").write_text("product_id,image_path\nP1,images/a.png\n")

    with pytest.raises(CatalogError) as caught:
        read_catalog(tmp_path)

    assert str(caught.value) == (
        f"{tmp_path / 'catalog.csv'}: missing column(s) title; found product_id, image_path; "
        "add the column(s) to the header line (line 1)"
    )


def test_read_catalog_adds_optional_columns_strips_text_and_keys_rows(tmp_path):
    (tmp_path / "catalog.csv").write_text(
        "product_id,variant,title,image_path\n"
        "P1,red, Tee - red ,images/p1-red.png\n"
        "P1,blue,Tee - blue,images/p1-blue.png\n"
        "NA,,None,images/na.png\n"
    )

    frame = read_catalog(tmp_path)

    for column in ("name", "color", "category", "description"):
        assert list(frame[column]) == ["", "", ""]
    assert frame.loc[0, "title"] == "Tee - red"
    # Strings such as NA and None are product data, not missing values.
    assert list(frame["product_id"]) == ["P1", "P1", "NA"]
    assert frame.loc[2, "title"] == "None"
    assert list(frame["row_key"]) == ["P1/red", "P1/blue", "NA"]


def test_item_text_and_top_category():
    frame = pd.DataFrame(
        {
            "title": ["Tee - red", "Plain mug"],
            "description": ["Soft cotton.", ""],
            "category": ["Tops|T-shirts", ""],
        }
    )

    assert list(item_text(frame)) == ["Tee - red. Soft cotton", "Plain mug"]
    assert list(top_category(frame["category"])) == ["Tops", ""]


def test_resolve_image_joins_paths_inside_the_catalogue(tmp_path):
    assert resolve_image(tmp_path, "images/a.png") == tmp_path / "images" / "a.png"


@pytest.mark.parametrize(
    ("image_path", "reason"),
    [
        ("/data/a.png", "is an absolute path"),
        ("../elsewhere/a.png", "climbs out of the catalogue folder"),
        ("images/outside.png", "symlink"),
    ],
)
def test_resolve_image_refuses_paths_that_leave_the_catalogue(tmp_path, image_path, reason):
    catalogue = tmp_path / "catalogue"
    (catalogue / "images").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"not yours")
    (catalogue / "images" / "outside.png").symlink_to(tmp_path / "secret.png")

    with pytest.raises(CatalogError, match=reason) as caught:
        resolve_image(catalogue, image_path)

    assert str(catalogue / "catalog.csv") in str(caught.value)
    assert "copy the photo into the catalogue folder" in str(caught.value)


# read_catalog: files that are not a catalogue table -------------------------------------------


def write_csv(folder: Path, content: bytes | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    (folder / "catalog.csv").write_bytes(data)
    return folder


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_catalog_csv_says_what_a_catalogue_needs(tmp_path, content):
    with pytest.raises(CatalogError) as caught:
        read_catalog(write_csv(tmp_path, content))

    assert str(caught.value) == (
        f"{tmp_path / 'catalog.csv'}: is empty; a catalogue needs a header line with "
        "product_id, title, image_path and one row per listing"
    )


def test_a_header_without_rows_is_refused_by_read_catalog(tmp_path):
    folder = write_csv(tmp_path, "product_id,title,image_path\n")

    with pytest.raises(CatalogError, match="has a header but no rows; add one row"):
        read_catalog(folder)
    # The table reader leaves it to the contract, which reports it as a failed expectation.
    assert read_catalog_table(folder).frame.empty


def test_latin1_bytes_name_the_line_the_column_and_the_fix(tmp_path):
    content = (
        "product_id,title,image_path\nP1,Tee red,images/a.png\nP2,Caf\u00e9 mug,images/b.png\n"
    )
    folder = write_csv(tmp_path, content.encode("latin-1"))

    with pytest.raises(CatalogError) as caught:
        read_catalog(folder)

    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'catalog.csv'}: line 3, column 'title': byte 0xe9")
    assert "save catalog.csv as UTF-8" in message


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    folder = write_csv(tmp_path, "\ufeffproduct_id,title,image_path\nP1,Tee red,images/a.png\n")

    assert list(read_catalog(folder)["product_id"]) == ["P1"]


def test_every_ragged_row_is_named_and_none_is_dropped(tmp_path):
    folder = write_csv(
        tmp_path,
        "product_id,title,image_path\n"
        "P1,Tee red,images/a.png\n"
        "P2,Mug, white,images/b.png\n"
        '"P3","A title\nover two lines",images/c.png\n'
        "P4,Cap\n"
        "P5,Hat,images/e.png\n",
    )

    with pytest.raises(CatalogError) as caught:
        read_catalog(folder)

    message = str(caught.value)
    assert str(tmp_path / "catalog.csv") in message
    assert "2 row(s) do not have the header's 3 fields (product_id, title, image_path)" in message
    # The quoted title spans lines 4-5, so the short row is line 6.
    assert "line 3: 4 fields; line 6: 2 fields;" in message
    assert "put values that contain commas in double quotes" in message


def test_an_unclosed_quote_names_its_line(tmp_path):
    folder = write_csv(tmp_path, 'product_id,title,image_path\nP1,"Tee red,images/a.png\n')

    # The csv module reads an unclosed quote to the end of the file, which makes the row
    # ragged, or raises; either way the error names line 2.
    with pytest.raises(CatalogError, match="line 2"):
        read_catalog(folder)


def test_a_repeated_header_name_is_refused(tmp_path):
    folder = write_csv(tmp_path, "product_id,title,title,image_path\nP1,a,b,images/a.png\n")

    with pytest.raises(CatalogError, match="line 1: the header names column.s. title more than"):
        read_catalog(folder)


def test_the_table_reader_keeps_values_as_written_and_their_lines(tmp_path):
    folder = write_csv(
        tmp_path,
        "product_id,title,image_path\n"
        "  P1 ,  ,images/a.png\n"
        "\n"
        '"P2","two\nlines",images/b.png\n'
        "P3,Cap,images/c.png\n",
    )

    table = read_catalog_table(folder)

    assert list(table.frame["product_id"]) == ["  P1 ", "P2", "P3"]
    assert list(table.frame["title"]) == ["  ", "two\nlines", "Cap"]
    assert table.lines == [2, 4, 6]


# build_pairs ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("random_negatives", "hard_negatives"), [(1, 1), (2, 0), (0, 3), (0, 0)])
def test_every_row_gets_one_match_and_the_requested_negatives(random_negatives, hard_negatives):
    pairs = build_pairs(SHOP, random_negatives, hard_negatives, seed=0)

    assert list(pairs.columns) == PAIR_COLUMNS
    per_row = 1 + random_negatives + hard_negatives
    assert len(pairs) == len(SHOP) * per_row
    assert (pairs.groupby("image_row").size() == per_row).all()

    matches = pairs[pairs["kind"] == "match"]
    assert len(matches) == len(SHOP)
    assert (matches["label"] == 1).all()
    assert (matches["image_row"] == matches["text_row"]).all()
    negatives = pairs[pairs["kind"] != "match"]
    assert (negatives["label"] == 0).all()
    assert (negatives["image_row"] != negatives["text_row"]).all()


def test_hard_negatives_prefer_colour_variants_then_other_colours_of_the_category():
    pairs = build_pairs(SHOP, random_negatives=0, hard_negatives=6, seed=1)

    # The T-shirt's hard negatives are its other colour.
    assert hard_texts(pairs, 0) == {1}
    assert hard_texts(pairs, 1) == {0}
    # A red top without variants meets the blue T-shirt, never the other red tops.
    assert hard_texts(pairs, 2) == {1}
    assert hard_texts(pairs, 3) == {1}
    # Only green bags: the same category in the same colour is the fallback.
    assert hard_texts(pairs, 4) == {5}
    assert hard_texts(pairs, 5) == {4}


def test_a_row_without_hard_candidates_gets_random_negatives_instead():
    pairs = build_pairs(SHOP, random_negatives=0, hard_negatives=2, seed=1)

    hat = pairs[pairs["image_row"] == 6]
    assert list(hat["kind"]) == ["match", "random", "random"]
    assert (hat["label"] == [1, 0, 0]).all()


def test_negatives_never_share_the_photo_or_the_exact_title():
    frame = catalogue_frame(
        [
            ("P7", "black", "Cap black", "black", "Hats|Caps", "images/cap-a.png"),
            # The same photo under another title (a shop reusing a picture).
            ("P7", "white", "Cap white", "white", "Hats|Caps", "images/cap-a.png"),
            # The same title over another photo.
            ("P7", "black2", "Cap black", "black", "Hats|Caps", "images/cap-c.png"),
            ("P7", "grey", "Cap grey", "gray", "Hats|Caps", "images/cap-d.png"),
            ("P8", "", "Blue bag", "blue", "Bags|Totes", "images/bag.png"),
        ]
    )

    for seed in range(5):
        pairs = build_pairs(frame, random_negatives=3, hard_negatives=3, seed=seed)
        assert hard_texts(pairs, 0) == {3}
        negatives = pairs[pairs["label"] == 0]
        image = frame["image_path"].to_numpy()
        title = frame["title"].to_numpy()
        assert (image[negatives["image_row"]] != image[negatives["text_row"]]).all()
        assert (title[negatives["image_row"]] != title[negatives["text_row"]]).all()


def test_build_pairs_numbers_rows_by_position_and_is_seed_deterministic():
    split = SHOP.iloc[[6, 4, 5, 0]].set_axis([60, 40, 50, 0])

    first = build_pairs(split, 1, 1, seed=5)
    again = build_pairs(split, 1, 1, seed=5)

    pd.testing.assert_frame_equal(first, again)
    assert set(first["image_row"]) | set(first["text_row"]) == {0, 1, 2, 3}


def test_a_single_row_has_only_its_match():
    pairs = build_pairs(SHOP.iloc[[0]], random_negatives=2, hard_negatives=1, seed=0)

    assert list(pairs["kind"]) == ["match"]


# split_products -------------------------------------------------------------------------------


def colour_rows() -> tuple[pd.DataFrame, np.ndarray]:
    """Six rows: red and blue in two categories, two colour variants of one product, one
    row whose title names no colour."""
    items = pd.DataFrame(
        {
            "product_id": ["A", "A", "B", "C", "D", "E"],
            "top_category": ["Tops", "Tops", "Tops", "Bags", "Bags", "Bags"],
        }
    )
    # Colour classes: 0 red, 1 blue.
    mentions = np.array([[1, 0], [0, 1], [1, 0], [1, 0], [0, 1], [0, 0]], dtype="float32")
    return items, mentions


def test_colour_negatives_pair_a_photo_with_another_category_naming_its_colour():
    items, mentions = colour_rows()

    pairs = colour_negatives(items, mentions, np.arange(6), share=1.0, seed=3)

    assert list(pairs.columns) == PAIR_COLUMNS
    assert (pairs["label"] == 0).all() and (pairs["kind"] == "colour").all()
    # Red tops (rows 0, 2) get the red bag (3) and the red bag gets a red top; the blue top
    # (1) gets the blue bag (4) and back; the row naming no colour (5) gets none.
    partners = dict(zip(pairs["image_row"], pairs["text_row"], strict=True))
    assert partners[0] == 3 and partners[2] == 3 and partners[3] in (0, 2)
    assert partners[1] == 4 and partners[4] == 1
    assert 5 not in partners


def test_colour_negatives_follow_the_share_the_rows_and_the_seed():
    items, mentions = colour_rows()
    rows = np.arange(6)

    assert colour_negatives(items, mentions, rows, share=0.0, seed=3).empty
    # Only rows among `rows` are paired, with partners among them: no red bag, no partner.
    assert colour_negatives(items, mentions, np.array([0, 1, 2]), share=1.0, seed=3).empty
    many = pd.concat([items] * 50, ignore_index=True)
    many["product_id"] += many.index.astype(str)
    share = colour_negatives(many, np.tile(mentions, (50, 1)), np.arange(300), 0.3, seed=3)
    assert 0.2 * 250 < len(share) < 0.4 * 250
    pd.testing.assert_frame_equal(
        share, colour_negatives(many, np.tile(mentions, (50, 1)), np.arange(300), 0.3, seed=3)
    )


def test_splits_keep_every_product_in_one_split(sample_catalog):
    frame = read_catalog(sample_catalog)

    splits = split_products(frame, val_fraction=0.15, test_fraction=0.15, seed=13)

    assert set(splits) == {"train", "val", "test"}
    assert (frame.assign(split=splits).groupby("product_id")["split"].nunique() == 1).all()
    products = frame.assign(split=splits).groupby("split")["product_id"].nunique()
    assert products["test"] == products["val"] == round(50 * 0.15)
    assert products["train"] == 50 - 2 * round(50 * 0.15)
    # Colour variants are in the sample, so at least one split holds several rows of a product.
    assert frame["product_id"].duplicated().any()


def test_splits_are_deterministic_for_a_seed_and_change_with_it(sample_catalog):
    frame = read_catalog(sample_catalog)

    first = split_products(frame, 0.15, 0.15, seed=13)
    again = split_products(frame.sample(frac=1, random_state=0).sort_index(), 0.15, 0.15, seed=13)
    other = split_products(frame, 0.15, 0.15, seed=14)

    pd.testing.assert_series_equal(first, again)
    assert not first.equals(other)


def test_three_products_give_one_per_split_and_two_stay_in_train():
    three = catalogue_frame(
        [
            ("A", "", "a", "", "", "a.png"),
            ("B", "", "b", "", "", "b.png"),
            ("C", "", "c", "", "", "c.png"),
        ]
    )

    assert sorted(split_products(three, 0.01, 0.01, seed=0)) == ["test", "train", "val"]
    assert list(split_products(three.iloc[:2], 0.3, 0.3, seed=0)) == ["train", "train"]


def test_products_that_list_one_photo_share_a_split():
    from pmatch.catalog.splits import split_products

    products = [f"p{index:02d}" for index in range(30)]
    frame = pd.DataFrame(
        {"product_id": products, "image_path": [f"images/{product}.jpg" for product in products]}
    )
    # p03 and p17 show one photo file; p17 and p25 another: all three are one group.
    frame.loc[frame["product_id"] == "p17", "image_path"] = "images/p03.jpg"
    frame = pd.concat(
        [frame, pd.DataFrame({"product_id": ["p25"], "image_path": ["images/p03.jpg"]})],
        ignore_index=True,
    )
    for seed in range(20):
        splits = split_products(frame, 0.2, 0.2, seed)
        grouped = set(splits[frame["product_id"].isin(["p03", "p17", "p25"])])
        assert len(grouped) == 1, (seed, grouped)
        assert {"train", "val", "test"} <= set(splits)
