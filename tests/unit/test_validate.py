"""Tests for the catalogue contract: what passes, and how a broken catalogue is reported."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from pmatch.config import ConfigError, parse_params
from pmatch.validate.contract import CatalogValidationError, check_photo, validate_catalog

LUMA = Path(__file__).resolve().parents[3] / "shared" / "data" / "luma"
ROOT = Path(__file__).resolve().parents[2]


def copy_catalogue(source: Path, target: Path) -> tuple[Path, pd.DataFrame]:
    shutil.copytree(source, target)
    return target, pd.read_csv(target / "catalog.csv", dtype=str, keep_default_na=False)


def save(frame: pd.DataFrame, catalogue: Path) -> None:
    frame.to_csv(catalogue / "catalog.csv", index=False)


def line_of(row: int) -> str:
    """How the report names a row of a frame without multi-line values: the header is line 1."""
    return f"line {row + 2}:"


def failed_section(message: str, expectation: str, column: str | None = None) -> str:
    """The lines of the report under one failed expectation (on one column), up to the next."""
    start = message.index(f"- {expectation}({column or ''}")
    end = message.find("\n- ", start + 1)
    return message[start : end if end != -1 else len(message)]


def write_photo(path: Path, seed: int, side: int = 16, shift: int = 0) -> None:
    """A side x side photo of noise, different for every seed; shift brightens it, which
    gives a near-identical copy of the same photo."""
    pixels = np.random.default_rng(seed).integers(0, 250, (side, side, 3)).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(pixels + shift, 0, 255).astype(np.uint8)).save(path)


TINY_ROWS = [
    ("P1", "red", "Red tee", "images/p1-red.png"),
    ("P1", "blue", "Blue tee", "images/p1-blue.png"),
    ("P2", "", "White mug", "images/p2.png"),
    ("P3", "", "Green cap", "images/p3.png"),
]


def tiny_catalogue(folder: Path, rows: list[tuple] = TINY_ROWS, placed: str = "") -> Path:
    """A catalogue of (product_id, variant, title, image_path) rows, each photo a distinct
    16x16 image. Files already there are kept, so a test can place its own first; the
    image_path `placed` is left as the test made it (even when there is nothing)."""
    for seed, image_path in enumerate(dict.fromkeys(row[3] for row in rows)):
        path = folder / image_path
        if image_path and image_path != placed and not Path(image_path).is_absolute():
            if not path.exists() and not path.is_symlink():
                write_photo(path, seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "catalog.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["product_id", "variant", "title", "image_path"])
        writer.writerows(rows)
    return folder


def refusal(catalogue: Path, params, out_dir: Path | None = None) -> str:
    with pytest.raises(CatalogValidationError) as caught:
        validate_catalog(catalogue, params.validate, out_dir or catalogue.parent / "validation")
    message = str(caught.value)
    assert str(catalogue / "catalog.csv") in message
    return message


# Catalogues that pass -----------------------------------------------------------------------


def test_the_sample_catalogue_passes_and_the_result_is_saved(sample_catalog, tmp_path, params):
    out_dir = tmp_path / "validation"

    outcome = validate_catalog(sample_catalog, params.validate, out_dir)

    assert outcome.success
    assert outcome.failed == []
    assert outcome.result_path == out_dir / "result.json"
    result = json.loads((out_dir / "result.json").read_text())
    assert result["success"] is True
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["success"] is True
    assert summary["rows"] == len(pd.read_csv(sample_catalog / "catalog.csv"))
    assert summary["expectations"] == outcome.evaluated > 0
    assert summary["failed"] == []
    assert "all" in outcome.message(sample_catalog)
    page = (out_dir / "result.html").read_text()
    assert 'Catalogue contract: <span class="met">met</span>' in page
    assert page.count("expect_") == outcome.evaluated


@pytest.mark.skipif(not (LUMA / "catalog.csv").is_file(), reason=f"no Luma catalogue at {LUMA}")
def test_the_luma_catalogue_passes(tmp_path, params):
    # Luma names one photo file for several sizes of a ball (different product_ids), and its
    # colour variants are one photo recoloured: neither is a copied photo.
    outcome = validate_catalog(LUMA, params.validate, tmp_path / "validation")

    assert outcome.success
    summary = json.loads((tmp_path / "validation" / "summary.json").read_text())
    assert summary["success"] is True
    assert summary["rows"] == len(pd.read_csv(LUMA / "catalog.csv"))


def test_trimmed_values_that_meet_the_contract_pass(tmp_path, params):
    catalogue = tiny_catalogue(
        tmp_path / "catalogue",
        [(" P1 ", "red ", "  Tee  ", "images/p1.png"), ("P1", "blue", "Tee", "images/p1b.png")],
    )

    assert validate_catalog(catalogue, params.validate, tmp_path / "validation").success


# Files that are not a catalogue table -------------------------------------------------------


def test_a_folder_without_catalog_csv_is_refused_before_anything_runs(tmp_path, params):
    with pytest.raises(CatalogValidationError, match="no catalog.csv; set data.catalog"):
        validate_catalog(tmp_path / "empty", params.validate, tmp_path / "validation")
    assert not (tmp_path / "validation").exists()


def test_an_empty_catalog_csv_is_refused_and_the_reason_recorded(tmp_path, params):
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    (catalogue / "catalog.csv").write_text("")

    message = refusal(catalogue, params)

    assert "is empty; a catalogue needs a header line with product_id, title, image_path" in message
    summary = json.loads((tmp_path / "validation" / "summary.json").read_text())
    assert summary["success"] is False and "is empty" in summary["read_error"]
    assert "is empty" in (tmp_path / "validation" / "result.html").read_text()


def test_a_header_without_rows_fails_the_row_count_expectation(tmp_path, params):
    catalogue = tiny_catalogue(tmp_path / "catalogue", [])

    message = refusal(catalogue, params)

    section = failed_section(message, "expect_table_row_count_to_be_between")
    assert "has a header but no rows" in section
    assert "fix: add one row per listing under the header line" in section
    assert message.startswith(f"{catalogue / 'catalog.csv'} failed 1 of ")


def test_latin1_bytes_name_the_line_and_column(tmp_path, params):
    catalogue = tiny_catalogue(tmp_path / "catalogue")
    text = (catalogue / "catalog.csv").read_text().replace("White mug", "Caf\u00e9 mug")
    (catalogue / "catalog.csv").write_bytes(text.encode("latin-1"))

    message = refusal(catalogue, params)

    assert "line 4, column 'title': byte 0xe9 is not UTF-8" in message
    assert "save catalog.csv as UTF-8" in message


def test_ragged_rows_name_every_line(tmp_path, params):
    catalogue = tiny_catalogue(tmp_path / "catalogue")
    lines = (catalogue / "catalog.csv").read_text().splitlines()
    lines[2] = lines[2].replace("Blue tee", "Blue, cotton tee")
    lines[4] = "P3,,Green cap"
    (catalogue / "catalog.csv").write_text("\n".join(lines) + "\n")

    message = refusal(catalogue, params)

    assert "line 3: 5 fields; line 5: 3 fields" in message
    assert "the header's 4 fields (product_id, variant, title, image_path)" in message


def test_a_missing_required_column_is_named_and_dependent_checks_say_they_could_not_run(
    sample_catalog, tmp_path, params
):
    catalogue, frame = copy_catalogue(sample_catalog, tmp_path / "untitled")
    save(frame.drop(columns=["title"]), catalogue)

    message = refusal(catalogue, params)

    assert "expect_column_to_exist(title), column title: column 'title' is missing" in message
    assert "add the column to the header line (line 1) of catalog.csv" in message
    assert "0 row(s) fail" not in message
    assert "could not be evaluated" in failed_section(
        message, "expect_column_value_lengths_to_be_between"
    )
    summary = json.loads((tmp_path / "validation" / "summary.json").read_text())
    assert summary["success"] is False


# Values -------------------------------------------------------------------------------------


def test_a_broken_catalogue_names_each_expectation_and_the_bad_lines(
    sample_catalog, tmp_path, params
):
    catalogue, frame = copy_catalogue(sample_catalog, tmp_path / "broken")
    # Row 4 repeats row 3's product_id and variant.
    frame.loc[4, ["product_id", "variant"]] = frame.loc[3, ["product_id", "variant"]].to_numpy()
    frame.loc[6, "title"] = ""
    frame.loc[8, "title"] = "ab"
    frame.loc[10, "image_path"] = "images/not-there.png"
    (catalogue / frame.loc[12, "image_path"]).write_bytes(b"these bytes are not a photo")
    save(frame, catalogue)
    out_dir = tmp_path / "validation"

    message = refusal(catalogue, params, out_dir)

    unique = failed_section(message, "expect_column_values_to_be_unique")
    assert line_of(3) in unique and line_of(4) in unique
    assert line_of(6) in failed_section(message, "expect_column_values_to_not_be_null")
    lengths = failed_section(message, "expect_column_value_lengths_to_be_between")
    assert line_of(8) in lengths and '"title": "ab"' in lengths
    photos = failed_section(message, "expect_column_values_to_be_in_set")
    assert line_of(10) in photos and '"image_status": "missing"' in photos
    assert "images/not-there.png" in photos
    assert line_of(12) in photos and '"image_status": "not_an_image"' in photos
    # Each failure tells the user what to do about it.
    assert message.count("fix: ") == 4

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["success"] is False
    assert {failure["expectation"] for failure in summary["failed"]} == {
        "expect_column_values_to_be_unique",
        "expect_column_values_to_not_be_null",
        "expect_column_value_lengths_to_be_between",
        "expect_column_values_to_be_in_set",
    }
    assert (out_dir / "result.json").is_file()
    page = (out_dir / "result.html").read_text()
    assert "images/not-there.png" in page and "<td>12</td>" in page


def test_a_duplicate_product_and_variant_names_both_lines_after_trimming(tmp_path, params):
    rows = [*TINY_ROWS, (" P1", "red ", "Red tee again", "images/p1-again.png")]
    catalogue = tiny_catalogue(tmp_path / "catalogue", rows)

    section = failed_section(refusal(catalogue, params), "expect_column_values_to_be_unique")

    assert "column product_id" in section
    assert "line 2:" in section and "line 6:" in section
    assert "give every row its own product_id" in section


def test_whitespace_only_product_id_and_title_are_empty(tmp_path, params):
    rows = [
        *TINY_ROWS,
        ("   ", "", "Black hat", "images/p4.png"),
        ("P5", "", "      ", "images/p5.png"),
    ]
    catalogue = tiny_catalogue(tmp_path / "catalogue", rows)

    message = refusal(catalogue, params)

    product = failed_section(message, "expect_column_values_to_not_be_null", "product_id")
    assert "column product_id" in product and 'line 6: {"product_id": "   "' in product
    assert "give every row a product_id (spaces alone do not count)" in product
    title = failed_section(message, "expect_column_values_to_not_be_null", "title")
    assert "column title" in title and 'line 7: {"product_id": "P5"' in title
    assert '"title": "      "' in title


def test_a_title_short_after_trimming_fails(tmp_path, params):
    rows = [*TINY_ROWS, ("P4", "", "  ab   ", "images/p4.png")]
    catalogue = tiny_catalogue(tmp_path / "catalogue", rows)

    section = failed_section(
        refusal(catalogue, params), "expect_column_value_lengths_to_be_between"
    )

    assert (
        "column title" in section
        and 'line 6: {"product_id": "P4", "variant": "", "title": "  ab   "}' in section
    )
    assert "at least 3 characters (spaces at either end do not count)" in section


# Photos -------------------------------------------------------------------------------------


def big_png(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height, with a tiny (invalid) body: decoding it
    would fail, and would need width * height * 3 bytes first."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("make", "status", "fix"),
    [
        (lambda path: None, "missing", "put the photo at image_path"),
        (lambda path: path.mkdir(), "unreadable", "name a readable file"),
        (lambda path: path.write_bytes(b"GIF? no"), "not_an_image", "replace the file with a JPEG"),
        (
            lambda path: (write_photo(path, 9, side=64), path.write_bytes(path.read_bytes()[:80])),
            "undecodable",
            "export the photo again",
        ),
        (
            lambda path: write_photo(path, 9, side=8),
            "too_small",
            "at least validate.min_image_side",
        ),
        (
            lambda path: big_png(path, 12_000, 12_000),
            "too_many_pixels",
            "at most validate.max_image_pixels",
        ),
    ],
)
def test_an_unusable_photo_is_named_with_its_line_and_fix(tmp_path, params, make, status, fix):
    catalogue = tmp_path / "catalogue"
    (catalogue / "images").mkdir(parents=True)
    make(catalogue / "images" / "p4.png")
    rows = [*TINY_ROWS, ("P4", "", "Black hat", "images/p4.png")]
    catalogue = tiny_catalogue(catalogue, rows, placed="images/p4.png")

    section = failed_section(refusal(catalogue, params), "expect_column_values_to_be_in_set")

    assert "column image_path" in section
    assert (
        f'line 6: {{"product_id": "P4", "variant": "", "image_path": "images/p4.png", "image_status": "{status}"}}'
        in section
    )
    assert f"fix: {status}: " in section and fix in section


def test_a_huge_png_is_refused_from_its_header_without_decoding(tmp_path):
    for side in (12_000, 20_000):  # 20,000^2 is past Pillow's own refusal limit too
        path = tmp_path / f"{side}.png"
        big_png(path, side, side)
        tracemalloc.start()
        started = time.perf_counter()

        check = check_photo(path, min_side=16, max_pixels=40_000_000)

        seconds = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert check.status == "too_many_pixels"
        assert seconds < 0.5 and peak < 5_000_000


def test_a_healthy_photo_gets_its_fingerprints(tmp_path):
    write_photo(tmp_path / "a.png", 1)

    check = check_photo(tmp_path / "a.png", min_side=16, max_pixels=40_000_000)

    assert check.status == "ok" and len(check.sha256) == 64
    assert check.thumbnail.shape == (16, 16, 3)
    assert 0 <= check.difference_hash < 2**64


def test_a_photo_is_checked_once_per_content_and_a_rewritten_file_again(tmp_path, monkeypatch):
    from pmatch.validate import contract

    decoded = []
    real = contract._check_photo_bytes

    def counting(data, *args):
        decoded.append(len(data))
        return real(data, *args)

    monkeypatch.setattr(contract, "_check_photo_bytes", counting)
    write_photo(tmp_path / "a.png", 11)
    shutil.copyfile(tmp_path / "a.png", tmp_path / "copy.png")

    first = check_photo(tmp_path / "a.png", min_side=16, max_pixels=40_000_000)
    again = check_photo(tmp_path / "copy.png", min_side=16, max_pixels=40_000_000)
    assert again is first and len(decoded) == 1
    assert check_photo(tmp_path / "a.png", min_side=17, max_pixels=40_000_000).status == (
        "too_small"
    )
    write_photo(tmp_path / "a.png", 12)  # The same name, other pixels: checked again.
    rewritten = check_photo(tmp_path / "a.png", min_side=16, max_pixels=40_000_000)
    assert len(decoded) == 3 and rewritten.sha256 != first.sha256
    assert not first.thumbnail.flags.writeable


def test_image_paths_that_leave_the_catalogue_are_refused(tmp_path, params):
    outside = tmp_path / "outside.png"
    write_photo(outside, 7)
    catalogue = tmp_path / "catalogue"
    (catalogue / "images").mkdir(parents=True)
    (catalogue / "images" / "link.png").symlink_to(outside)
    rows = [
        *TINY_ROWS,
        ("P4", "", "Black hat", "../outside.png"),
        ("P5", "", "Grey hat", str(outside)),
        ("P6", "", "Blue hat", "images/link.png"),
    ]
    catalogue = tiny_catalogue(catalogue, rows)

    section = failed_section(refusal(catalogue, params), "expect_column_values_to_be_in_set")

    for line in (6, 7, 8):
        assert f"line {line}: " in section
    assert section.count('"image_status": "outside_catalog"') == 3
    assert "copy the photo into the catalogue folder" in section


def test_the_same_photo_under_two_products_names_both_lines(tmp_path, params):
    catalogue = tmp_path / "catalogue"
    write_photo(catalogue / "images" / "p2.png", 5)
    # P4 is a byte-identical copy of P2's photo, P5 a near-identical (brightened) P3 photo.
    shutil.copy(catalogue / "images" / "p2.png", catalogue / "images" / "p4.png")
    write_photo(catalogue / "images" / "p3.png", 6)
    write_photo(catalogue / "images" / "p5.png", 6, shift=2)
    rows = [
        *TINY_ROWS,
        ("P4", "", "Mug copy", "images/p4.png"),
        ("P5", "", "Cap copy", "images/p5.png"),
    ]
    catalogue = tiny_catalogue(catalogue, rows)

    section = failed_section(refusal(catalogue, params), "expect_column_values_to_be_null")

    assert "column image_path" in section and "4 row(s) fail" in section
    assert (
        "line 4: " in section and "line 6 (product 'P4', images/p4.png): byte-identical" in section
    )
    assert (
        "line 6: " in section and "line 4 (product 'P2', images/p2.png): byte-identical" in section
    )
    assert (
        "line 5: " in section and "line 7 (product 'P5', images/p5.png): near-identical" in section
    )
    assert (
        "line 7: " in section and "line 5 (product 'P3', images/p3.png): near-identical" in section
    )
    assert "can land in train and in test" in section


def test_rows_of_one_product_and_one_file_named_twice_may_share_a_photo(tmp_path, params):
    catalogue = tmp_path / "catalogue"
    write_photo(catalogue / "images" / "p1-red.png", 5)
    shutil.copy(catalogue / "images" / "p1-red.png", catalogue / "images" / "p1-blue.png")
    # Two sizes of one ball sold as two products, both naming the one photo file (as in Luma).
    rows = [
        *TINY_ROWS,
        ("P4", "", "Ball 55 cm", "images/ball.png"),
        ("P5", "", "Ball 65 cm", "images/ball.png"),
    ]
    catalogue = tiny_catalogue(catalogue, rows)

    assert validate_catalog(catalogue, params.validate, tmp_path / "validation").success


def test_a_photo_smaller_than_min_image_side_fails(sample_catalog, tmp_path, params):
    # The sample's photos are 96 px; a stricter contract refuses every one of them.
    with pytest.raises(CatalogValidationError, match='"image_status": "too_small"'):
        validate_catalog(
            sample_catalog,
            dataclasses.replace(params.validate, min_image_side=97),
            tmp_path / "out",
        )


# Params -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"min_title_chars": -1}, "validate.min_title_chars must be at least 1, got -1"),
        ({"max_image_pixels": 0}, "validate.max_image_pixels must be at least 1"),
        ({"near_duplicate_bits": 33}, "validate.near_duplicate_bits must be in [0, 32]"),
        (
            {"near_duplicate_difference": -1},
            "validate.near_duplicate_difference must be in [0, 255]",
        ),
        ({"max_image_pixels": 100}, "below validate.min_image_side squared (256)"),
    ],
)
def test_validate_params_out_of_range_are_refused(changes, named):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["validate"].update(changes)

    with pytest.raises(ConfigError) as caught:
        parse_params(raw)

    assert named in str(caught.value)
