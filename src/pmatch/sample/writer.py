"""Writes the sample catalogue and its batches into a folder, replacing it in one step."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import CATALOG_FILE, PAIRS_FILE
from pmatch.sample.batches import plan_batches
from pmatch.sample.planning import (
    CATALOG_COLUMNS,
    CATALOG_STREAM,
    PlannedRow,
    catalog_record,
    plan_rows,
)
from pmatch.sample.render import draw_photo
from pmatch.sample.words import colour_rgb

PROGRESS_EVERY = 100
DRAW_THREADS = 4

Progress = Callable[[int, int], None]


def write_sample(
    out_dir: str | Path,
    products: int,
    seed: int,
    batch_pairs: int,
    random_negatives: int = 1,
    hard_negatives: int = 1,
    progress: Progress | None = None,
    inbox: str | Path | None = None,
    delivery_listings: int = 0,
) -> dict:
    """Writes the synthetic catalogue and two incoming batches into out_dir, replacing it.

    out_dir: folder to (re)create: catalog.csv, images/, batches/unshifted/, batches/shifted/.
        An existing catalogue there is replaced whole; any other non-empty folder is refused.
    products: how many distinct product_ids the catalogue has; about a third come in 2-3
        colour variants, so there are about 1.4 rows per product.
    seed: the same seed and arguments give byte-identical files.
    batch_pairs: image-text pairs in each batch, built like the training pairs.
    random_negatives, hard_negatives: negatives per row in the batches (pairs.build_pairs).
    progress: called as progress(done, total) with photos drawn so far, every PROGRESS_EVERY
        photos and once at the end; None stays silent.
    inbox: where to write the dated deliveries too (pmatch.sample.deliveries: the catalogue
        itself as the first, then delivery_listings listings in each later one); None: none.
    Returns the summary {rows, products, images, batches: {batch name: pair count},
    deliveries: {delivery: rows}}.
    """
    _check_arguments(products, seed, batch_pairs, random_negatives, hard_negatives)
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)

    catalog_rows = plan_rows(seed, CATALOG_STREAM, "P", products, shifted=False)
    batches = plan_batches(seed, batch_pairs, random_negatives, hard_negatives)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent)
    )
    try:
        # mkdtemp makes a private folder; the catalogue should read like any other output.
        os.chmod(staging, 0o755)
        folders = {staging: catalog_rows}
        folders.update({staging / "batches" / name: batch.rows for name, batch in batches.items()})
        _draw_photos(folders, progress)
        catalog = pd.DataFrame(
            [catalog_record(row) for row in catalog_rows], columns=CATALOG_COLUMNS
        )
        catalog.to_csv(staging / CATALOG_FILE, index=False, lineterminator="\n")
        for name, batch in batches.items():
            batch.pairs.to_csv(
                staging / "batches" / name / PAIRS_FILE, index=False, lineterminator="\n"
            )
        replace_folder(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary = {
        "rows": len(catalog_rows),
        "products": products,
        "images": len(catalog_rows),
        "batches": {name: len(batch.pairs) for name, batch in batches.items()},
    }
    if inbox is not None:
        from pmatch.sample.deliveries import write_deliveries

        summary["deliveries"] = write_deliveries(
            inbox,
            out_dir,
            seed,
            delivery_listings,
        )
    return summary


def _check_arguments(
    products: int, seed: int, batch_pairs: int, random_negatives: int, hard_negatives: int
) -> None:
    """Raises ValueError naming the first argument that cannot make a sample."""
    minimums = {
        "products": (products, 2),
        "seed": (seed, 0),
        "batch_pairs": (batch_pairs, 1),
        "random_negatives": (random_negatives, 0),
        "hard_negatives": (hard_negatives, 0),
    }
    for name, (value, minimum) in minimums.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
            raise ValueError(f"write_sample: {name}={value!r}; it must be an integer >= {minimum}")


def _check_replaceable(out_dir: Path) -> None:
    """Refuses to replace a folder that holds something other than a catalogue.

    write_sample deletes out_dir wholesale, so a typo such as '.' must not wipe a project.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ValueError(f"write_sample: {out_dir} is a file; pass a folder path for the sample")
    if any(out_dir.iterdir()) and not (out_dir / CATALOG_FILE).exists():
        raise ValueError(
            f"write_sample: {out_dir} is not empty and has no {CATALOG_FILE}; refusing to replace "
            f"it. Pass an empty or new folder, or remove it first."
        )


def replace_folder(staging: Path, out_dir: Path) -> None:
    """Moves the finished staging folder to out_dir, so readers never see half a catalogue
    or half a delivery (pmatch.sample.shifts)."""
    if out_dir.exists():
        retired = staging.with_name(staging.name + ".old")
        out_dir.rename(retired)
        staging.rename(out_dir)
        shutil.rmtree(retired)
    else:
        staging.rename(out_dir)


def _draw_photos(folders: dict[Path, list[PlannedRow]], progress: Progress | None) -> None:
    """Draws and saves each row's photo under its folder's images/, a few photos at a time.

    folders: the rows whose photos go under each folder.
    progress: as in write_sample.

    Pillow and numpy release the GIL while they work, so threads use the spare cores; every
    photo has its own generator and file, so the output does not depend on the scheduling.
    """
    photos = []
    for folder, rows in folders.items():
        (folder / "images").mkdir(parents=True, exist_ok=True)
        photos.extend((folder, row) for row in rows)
    total = len(photos)
    workers = min(DRAW_THREADS, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as executor:
        drawn = executor.map(lambda photo: _write_photo(*photo), photos)
        for done, _ in enumerate(drawn, start=1):
            if progress is not None and (done % PROGRESS_EVERY == 0 or done == total):
                progress(done, total)


def _write_photo(folder: Path, row: PlannedRow) -> None:
    photo = draw_photo(
        row.category_key,
        colour_rgb(row.color),
        row.pattern,
        row.material,
        np.random.default_rng(list(row.photo_key)),
        dark="dark" in row.image_shifts,
        blur="blur" in row.image_shifts,
    )
    photo.save(folder / row.image_path, format="PNG")
