"""The data version of a catalogue: DVC's own directory hash of the catalogue folder."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pmatch.catalog.format import catalog_csv

# What DVC leaves out of a directory it hashes, whatever .dvcignore says.
IGNORED_NAMES = frozenset({".git", ".hg", ".dvc", ".dvcignore", ".gitignore"})
BLOCK = 1 << 20


def file_md5(path: Path) -> str:
    with open(path, "rb") as handle:
        digest = hashlib.md5(usedforsecurity=False)
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def directory_entries(folder: str | Path) -> list[dict[str, str]]:
    """Every file under folder as DVC 3 lists it in a directory object:
    {"md5": md5 of the bytes, "relpath": path relative to folder with '/'}, sorted by relpath."""
    folder = Path(folder)
    entries = []
    for root, directories, files in os.walk(folder, followlinks=True):
        directories[:] = sorted(name for name in directories if name not in IGNORED_NAMES)
        for name in files:
            if name in IGNORED_NAMES:
                continue
            path = Path(root) / name
            entries.append({"md5": file_md5(path), "relpath": path.relative_to(folder).as_posix()})
    return sorted(entries, key=lambda entry: entry["relpath"])


def catalog_version(catalog_dir: str | Path) -> str:
    """The catalogue folder's data version: the md5 DVC 3 gives the folder (the value
    `dvc add` writes into the .dvc file, without its '.dir' suffix).

    DVC hashes a folder as the md5 of the JSON list of its files' md5s and relative paths
    (dvc_data.hashfile.tree.Tree.as_bytes); computing the same here gives untracked
    catalogues (Luma, test folders) a version too, and a tracked one the same version as its
    .dvc file, so any version can be restored with `dvc pull`. Changing, adding, removing or
    renaming any file changes it; the order of rows counts through catalog.csv's bytes.
    Raises CatalogError when the folder holds no catalog.csv.
    """
    catalog_dir = Path(catalog_dir)
    if not catalog_csv(catalog_dir).is_file():
        from pmatch.catalog.format import CatalogError

        raise CatalogError(
            f"{catalog_csv(catalog_dir)}: no catalog.csv, so the folder is no catalogue and "
            "has no data version; point data.catalog at a folder with catalog.csv"
        )
    listing = json.dumps(directory_entries(catalog_dir), sort_keys=True).encode("utf-8")
    return hashlib.md5(listing, usedforsecurity=False).hexdigest()
