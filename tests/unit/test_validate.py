"""Tests for the catalogue contract: what passes, and how a broken catalogue is reported."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from pmatch.validate.contract import CatalogValidationError, image_status, validate_catalog

LUMA = Path(__file__).resolve().parents[3] / "shared" / "data" / "luma"


def copy_catalogue(source: Path, target: Path) -> tuple[Path, pd.DataFrame]:
    shutil.copytree(source, target)
    return target, pd.read_csv(target / "catalog.csv", dtype=str, keep_default_na=False)


def save(frame: pd.DataFrame, catalogue: Path) -> None:
    frame.to_csv(catalogue / "catalog.csv", index=False)


def line_of(row: int) -> str:
    """How the report names a row of the frame: the header is line 1."""
    return f"line {row + 2}:"


def failed_section(message: str, expectation: str) -> str:
    """The lines of the report under one failed expectation, up to the next one."""
    start = message.index(f"- {expectation}(")
    end = message.find("\n- ", start + 1)
    return message[start : end if end != -1 else len(message)]


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

    with pytest.raises(CatalogValidationError) as caught:
        validate_catalog(catalogue, params.validate, out_dir)
    message = str(caught.value)

    assert str(catalogue / "catalog.csv") in message
    unique = failed_section(message, "expect_column_values_to_be_unique")
    assert line_of(3) in unique and line_of(4) in unique
    assert line_of(6) in failed_section(message, "expect_column_values_to_not_be_null")
    lengths = failed_section(message, "expect_column_value_lengths_to_be_between")
    assert line_of(8) in lengths and '"title": "ab"' in lengths
    photos = failed_section(message, "expect_column_values_to_be_in_set")
    assert line_of(10) in photos and '"image_status": "missing"' in photos
    assert "images/not-there.png" in photos
    assert line_of(12) in photos and '"image_status": "undecodable"' in photos
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


def test_a_photo_smaller_than_min_image_side_fails(sample_catalog, tmp_path, params):
    # The sample's photos are 96 px; a stricter contract refuses every one of them.
    with pytest.raises(CatalogValidationError, match='"image_status": "too_small"'):
        validate_catalog(
            sample_catalog,
            dataclasses.replace(params.validate, min_image_side=97),
            tmp_path / "out",
        )


def test_a_catalogue_without_titles_names_the_missing_column(sample_catalog, tmp_path, params):
    catalogue, frame = copy_catalogue(sample_catalog, tmp_path / "untitled")
    save(frame.drop(columns=["title"]), catalogue)

    with pytest.raises(CatalogValidationError) as caught:
        validate_catalog(catalogue, params.validate, tmp_path / "validation")

    assert "expect_column_to_exist(title): column 'title' is missing" in str(caught.value)
    assert "add the column to catalog.csv" in str(caught.value)
    summary = json.loads((tmp_path / "validation" / "summary.json").read_text())
    assert summary["success"] is False


def test_expectations_that_cannot_run_on_a_missing_column_say_so(sample_catalog, tmp_path, params):
    catalogue, frame = copy_catalogue(sample_catalog, tmp_path / "untitled")
    save(frame.drop(columns=["title"]), catalogue)

    with pytest.raises(CatalogValidationError) as caught:
        validate_catalog(catalogue, params.validate, tmp_path / "validation")

    message = str(caught.value)
    assert "0 row(s) fail" not in message
    assert "could not be evaluated" in failed_section(
        message, "expect_column_value_lengths_to_be_between"
    )


def test_a_folder_without_catalog_csv_is_refused_before_anything_runs(tmp_path, params):
    with pytest.raises(CatalogValidationError, match="no catalog.csv; set data.catalog"):
        validate_catalog(tmp_path / "empty", params.validate, tmp_path / "validation")
    assert not (tmp_path / "validation").exists()


def test_image_status(tmp_path, sample_catalog):
    photo = next((sample_catalog / "images").glob("*.png"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG but not really")

    assert image_status(photo, min_side=16) == "ok"
    assert image_status(photo, min_side=200) == "too_small"
    assert image_status(broken, min_side=16) == "undecodable"
    assert image_status(tmp_path / "absent.png", min_side=16) == "missing"
    assert image_status(tmp_path, min_side=16) == "missing"


@pytest.mark.skipif(not (LUMA / "catalog.csv").is_file(), reason=f"no Luma catalogue at {LUMA}")
def test_the_luma_catalogue_passes(tmp_path, params):
    outcome = validate_catalog(LUMA, params.validate, tmp_path / "validation")

    assert outcome.success
    summary = json.loads((tmp_path / "validation" / "summary.json").read_text())
    assert summary["success"] is True
    assert summary["rows"] == len(pd.read_csv(LUMA / "catalog.csv"))
