"""Tests for pmatch ingest: quarantine, merge rules, refusals, idempotence, crash and lock safety."""

from __future__ import annotations

import csv
import dataclasses
import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pmatch.catalog.version import catalog_version
from pmatch.ingest import (
    ALREADY_IN_CATALOGUE,
    LEDGER_FILE,
    REVIEWED_MISMATCH,
    DeliveryRefused,
    ingest_delivery,
    pending_deliveries,
)
from pmatch.validate.contract import validate_catalog

HEADER = ["product_id", "variant", "title", "image_path"]


def write_photo(path: Path, seed: int, side: int = 24) -> None:
    """A photo of noise, different for every seed."""
    pixels = np.random.default_rng(seed).integers(0, 250, (side, side, 3)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def delivery(folder: Path, rows: list[dict], first_seed: int) -> Path:
    """A delivery of rows ({product_id, variant, title, image_path, [label]}); every photo a
    row names is drawn (seeded from first_seed) unless the row says photo=False."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = HEADER + (["label"] if any("label" in row for row in rows) else [])
    for offset, row in enumerate(rows):
        if row.get("photo", True) and not (folder / row["image_path"]).exists():
            write_photo(folder / row["image_path"], first_seed + offset)
    with open(folder / "catalog.csv", "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row.get(column, "") for column in columns])
    return folder


def listing(product_id: str, title: str, variant: str = "", **extra) -> dict:
    return {
        "product_id": product_id,
        "variant": variant,
        "title": title,
        "image_path": f"photos/{product_id}-{variant or 'x'}.png",
        **extra,
    }


INITIAL = [
    listing("P1", "Red tee", "red"),
    listing("P1", "Blue tee", "blue"),
    listing("P2", "White mug"),
    listing("P3", "Green cap"),
    listing("P4", "Black boots"),
]


@pytest.fixture
def loaded(tmp_path, params):
    """A catalogue that came in through one delivery (2026-01-01); returns (catalogue, result)."""
    first = delivery(tmp_path / "inbox" / "2026-01-01", INITIAL, first_seed=100)
    catalogue = tmp_path / "data" / "catalog"
    result = ingest_delivery(first, catalogue, params, tmp_path / "reports")
    return catalogue, result


def catalogue_rows(catalogue: Path) -> pd.DataFrame:
    return pd.read_csv(catalogue / "catalog.csv", dtype=str, keep_default_na=False)


def test_the_first_delivery_becomes_the_catalogue_and_its_data_version(loaded, tmp_path, params):
    catalogue, result = loaded
    assert (result.rows, result.accepted, result.quarantined) == (5, 5, {})
    assert result.previous_data_version is None
    assert result.data_version == catalog_version(catalogue)
    rows = catalogue_rows(catalogue)
    assert list(rows["product_id"]) == ["P1", "P1", "P2", "P3", "P4"]
    # Photos are stored by content, so deliveries never collide on a file name.
    assert all(path.startswith("images/delivered/") for path in rows["image_path"])
    validate_catalog(catalogue, params.validate, tmp_path / "validation")
    ledger = pd.read_csv(catalogue / LEDGER_FILE, dtype=str)
    assert list(ledger["delivery"]) == ["2026-01-01"]
    report = json.loads((tmp_path / "reports" / "2026-01-01" / "ingest.json").read_text())
    assert report["accepted"] == 5 and report["data_version"] == result.data_version
    assert pending_deliveries(tmp_path / "inbox", catalogue) == []


def test_bad_rows_are_quarantined_with_reasons_and_the_rest_merged(loaded, tmp_path, params):
    catalogue, first = loaded
    folder = tmp_path / "inbox" / "2026-01-08"
    # A copy of P2's delivered photo, under a new product.
    folder.joinpath("photos").mkdir(parents=True)
    shutil.copy(
        tmp_path / "inbox" / "2026-01-01" / "photos" / "P2-x.png", folder / "photos/N9-x.png"
    )
    rows = [
        listing("P3", "Green cap, wool", label="1"),  # replaces P3
        listing("N1", "Yellow scarf", label=""),
        listing("N2", "Purple socks", label="1"),
        listing("N3", "      ", label=""),  # title of spaces
        listing("N4", "Grey hat", label="", photo=False),  # photo missing
        listing("N5", "Orange bag", label="0"),  # reviewed: the photo shows something else
        listing("N9", "Pink cup", label=""),  # P2's photo
        listing("N6", "Blue tie", label=""),
        listing("N7", "Tan belt", label=""),
        listing("N8", "Red gloves", label=""),
        listing("N10", "Olive coat", label=""),
        listing("N11", "Navy shorts", label=""),
        listing("N12", "Beige skirt", label=""),
        listing("N13", "White shirt", label=""),
    ]
    result = ingest_delivery(delivery(folder, rows, 200), catalogue, params, tmp_path / "reports")

    assert result.quarantined == {
        ALREADY_IN_CATALOGUE: 1,
        "photo missing": 1,
        REVIEWED_MISMATCH: 1,
        "title empty": 1,
    }
    assert (result.rows, result.accepted) == (14, 10)
    assert result.previous_data_version == first.data_version
    assert result.data_version == catalog_version(catalogue) != first.data_version
    conflict = next(row for row in result.quarantined_rows if row["reason"] == ALREADY_IN_CATALOGUE)
    assert conflict["product_id"] == "N9" and "'P2'" in conflict["detail"]
    assert conflict["line"] == 8 and conflict["thumbnail"].startswith("data:image/jpeg;base64,")

    merged = catalogue_rows(catalogue)
    assert "label" not in merged.columns
    assert merged.set_index("product_id").loc["P3", "title"] == "Green cap, wool"
    assert len(merged) == 5 + 9  # P3 replaced, nine new products
    assert not {"N3", "N4", "N5", "N9"} & set(merged["product_id"])
    # The replaced row's photo left with it; every remaining file is named by a row.
    files = {path.relative_to(catalogue).as_posix() for path in catalogue.rglob("*.png")}
    assert files == set(merged["image_path"])
    validate_catalog(catalogue, params.validate, tmp_path / "validation")

    page = (tmp_path / "reports" / "2026-01-08" / "ingest.html").read_text()
    assert "photo already belongs to another product" in page and "data:image/jpeg" in page


def test_the_same_delivery_twice_changes_nothing(loaded, tmp_path, params):
    catalogue, first = loaded
    written = (catalogue / "catalog.csv").stat().st_mtime_ns
    again = ingest_delivery(
        tmp_path / "inbox" / "2026-01-01", catalogue, params, tmp_path / "reports"
    )
    assert again.already_ingested
    assert again.data_version == first.data_version == catalog_version(catalogue)
    assert (catalogue / "catalog.csv").stat().st_mtime_ns == written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("product_id,variant,title,image_path\n", "header but no rows"),
        ("product_id,title\nX1,Red tee\n", "missing column(s) image_path"),
        ("product_id,variant,title,image_path\nX1,,Caf\xe9 mug,a.png\n", "line 2"),
        ("product_id,variant,title,image_path\nX1,,Red, tee,a.png\n", "line 2: 5 fields"),
    ],
)
def test_a_delivery_broken_as_a_whole_is_refused_and_the_catalogue_unchanged(
    loaded, tmp_path, params, text, message
):
    catalogue, first = loaded
    folder = tmp_path / "inbox" / "2026-01-08"
    folder.mkdir(parents=True)
    (folder / "catalog.csv").write_bytes(text.encode("latin-1"))
    with pytest.raises(DeliveryRefused, match="refused whole") as refused:
        ingest_delivery(folder, catalogue, params, tmp_path / "reports")
    assert message in str(refused.value) and "catalog.csv" in str(refused.value)
    assert catalog_version(catalogue) == first.data_version
    report = json.loads((tmp_path / "reports" / "2026-01-08" / "ingest.json").read_text())
    assert message in report["refused"]
    # Not tried again by --pending (it would fail the same way, every day).
    assert pending_deliveries(tmp_path / "inbox", catalogue) == []


def test_too_many_failing_rows_refuse_the_delivery(loaded, tmp_path, params):
    catalogue, first = loaded
    rows = [listing("N1", "Yellow scarf"), listing("N2", ""), listing("N3", "x")]
    folder = delivery(tmp_path / "inbox" / "2026-01-08", rows, 300)
    with pytest.raises(DeliveryRefused, match=r"2 of 3 rows fail .*max_rejected_share \(0.2\)"):
        ingest_delivery(folder, catalogue, params, tmp_path / "reports")
    assert catalog_version(catalogue) == first.data_version
    lenient = dataclasses.replace(
        params, ingest=dataclasses.replace(params.ingest, max_rejected_share=0.7)
    )
    result = ingest_delivery(folder, catalogue, lenient, tmp_path / "reports")
    assert result.accepted == 1 and result.quarantined == {
        "title empty": 1,
        "title under 3 characters": 1,
    }


def test_a_failure_after_the_new_catalogue_is_built_leaves_the_previous_version(
    loaded, tmp_path, params
):
    catalogue, first = loaded
    # A hand edit broke the catalogue: the merged catalogue fails the whole contract, after
    # the delivery's rows passed theirs and the new folder was written beside the catalogue.
    rows = catalogue_rows(catalogue)
    rows.loc[2, "title"] = " "
    rows.to_csv(catalogue / "catalog.csv", index=False, lineterminator="\n")
    broken = catalog_version(catalogue)
    folder = delivery(tmp_path / "inbox" / "2026-01-08", [listing("N1", "Yellow scarf")], 400)
    with pytest.raises(DeliveryRefused, match="the catalogue is unchanged"):
        ingest_delivery(folder, catalogue, params, tmp_path / "reports")
    assert catalog_version(catalogue) == broken
    assert sorted(path.name for path in catalogue.parent.iterdir()) == [
        ".catalog.lock",
        ".catalog.refused.csv",
        "catalog",
    ]


def _ingest_in_child(arguments) -> str:
    source, catalogue, params, reports = arguments
    return ingest_delivery(source, catalogue, params, reports).data_version


def test_two_ingests_at_once_leave_a_valid_catalogue_with_both(loaded, tmp_path, params):
    catalogue, _ = loaded
    first = delivery(
        tmp_path / "inbox" / "2026-01-08",
        [listing(f"A{i}", f"Alpha item {i}") for i in range(6)],
        500,
    )
    second = delivery(
        tmp_path / "inbox" / "2026-01-09",
        [listing(f"B{i}", f"Beta item {i}") for i in range(6)],
        600,
    )
    jobs = [(source, catalogue, params, tmp_path / "reports") for source in (first, second)]
    # Spawned, not forked: a fork of this test process, which holds TensorFlow's and
    # servers' threads, can inherit a lock some thread held and never finish (seen once in
    # CI: a pool worker gone, its result lost, map waiting forever). A lost result fails
    # the test after the timeout instead of hanging the run.
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        versions = pool.map_async(_ingest_in_child, jobs).get(timeout=600)

    rows = catalogue_rows(catalogue)
    assert len(rows) == 5 + 12
    ledger = pd.read_csv(catalogue / LEDGER_FILE, dtype=str)
    assert sorted(ledger["delivery"]) == ["2026-01-01", "2026-01-08", "2026-01-09"]
    assert catalog_version(catalogue) in versions
    validate_catalog(catalogue, params.validate, tmp_path / "validation")


def test_the_sample_inbox_comes_in_delivery_by_delivery_and_the_bad_rows_are_quarantined(
    tmp_path, params
):
    from pmatch.sample import write_sample
    from pmatch.sample.deliveries import BAD_ROWS, DELIVERIES, INITIAL_DELIVERY

    inbox, catalogue = tmp_path / "inbox", tmp_path / "data" / "catalog"
    summary = write_sample(
        tmp_path / "sample", products=30, seed=3, batch_pairs=6, inbox=inbox, delivery_listings=25
    )
    assert list(summary["deliveries"]) == [INITIAL_DELIVERY] + [name for name, *_ in DELIVERIES]
    pending = pending_deliveries(inbox, catalogue)
    results = {}
    for source in pending:
        result = ingest_delivery(source, catalogue, params, tmp_path / "reports")
        results[result.delivery] = result
    assert pending_deliveries(inbox, catalogue) == []
    # The first delivery is the sample catalogue itself.
    assert results[INITIAL_DELIVERY].accepted == summary["rows"]
    for name, kind in DELIVERIES:
        # Each later delivery carries reviewed labels: its label-0 rows stay out of training.
        quarantined = dict(results[name].quarantined)
        delivered = pd.read_csv(inbox / name / "catalog.csv", dtype=str, keep_default_na=False)
        assert quarantined.pop(REVIEWED_MISMATCH, 0) == (delivered["label"] == "0").sum(), name
        expected = len(BAD_ROWS) if kind == "bad_rows" else 0
        assert sum(quarantined.values()) == expected, name
    (with_bad_rows,) = [name for name, kind in DELIVERIES if kind == "bad_rows"]
    bad = dict(results[with_bad_rows].quarantined)
    bad.pop(REVIEWED_MISMATCH, None)
    assert bad == {
        ALREADY_IN_CATALOGUE: 1,
        "photo missing": 1,
        "photo not an image": 1,
        "photo too small": 1,
        "title empty": 1,
    }
    rows = catalogue_rows(catalogue)
    assert len(rows) == sum(result.accepted for result in results.values())
    validate_catalog(catalogue, params.validate, tmp_path / "validation")


def test_more_row_problems_each_get_their_reason(loaded, tmp_path, params):
    catalogue, _ = loaded
    folder = tmp_path / "inbox" / "2026-01-08"
    # A near-identical copy (brightened, re-encoded) of P3's photo, under a new product.
    original = np.asarray(Image.open(tmp_path / "inbox" / "2026-01-01" / "photos" / "P3-x.png"))
    folder.joinpath("photos").mkdir(parents=True)
    Image.fromarray(np.clip(original.astype(int) + 3, 0, 255).astype(np.uint8)).save(
        folder / "photos" / "near.png"
    )
    write_photo(tmp_path / "outside.png", 9)
    rows = [listing(f"N{index}", f"Good listing {index}") for index in range(12)]
    rows += [
        {**listing("X1", "Near copy"), "image_path": "photos/near.png", "photo": False},
        {**listing("X2", "Climbs out"), "image_path": "../../outside.png", "photo": False},
        {**listing("X3", "Absolute"), "image_path": str(tmp_path / "outside.png"), "photo": False},
        listing("X4", "Twice", "red"),
        {**listing("X4", "Twice again", "red"), "image_path": "photos/X4-again.png"},
        listing("X5", "Unsure", label="maybe"),
    ]
    lenient = dataclasses.replace(
        params, ingest=dataclasses.replace(params.ingest, max_rejected_share=0.5)
    )
    result = ingest_delivery(delivery(folder, rows, 700), catalogue, lenient, tmp_path / "reports")
    assert result.quarantined == {
        ALREADY_IN_CATALOGUE: 1,
        "duplicate product_id + variant in the delivery": 2,
        "label not 0 or 1": 1,
        "photo outside catalog": 2,
    }
    near = next(row for row in result.quarantined_rows if row["product_id"] == "X1")
    assert "near-identical" in near["detail"] and "'P3'" in near["detail"]
    assert result.accepted == 12


def test_ingest_params_out_of_range_are_refused():
    import yaml

    from pmatch.config import ConfigError, parse_params
    from tests.conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["ingest"]["max_rejected_share"] = 1.5
    with pytest.raises(ConfigError, match=r"ingest.max_rejected_share must be in \[0, 1\]"):
        parse_params(raw)
