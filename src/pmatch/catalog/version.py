"""The data version of a catalogue: one sha256 over catalog.csv and every photo it names."""

from __future__ import annotations

import hashlib
from pathlib import Path

from pmatch.catalog.format import catalog_csv, read_catalog, resolve_image


def catalog_version(catalog_dir: str | Path) -> str:
    """A sha256 (hex) that changes when catalog.csv or any photo it names changes.

    The digest covers catalog.csv's bytes, then, for each distinct image_path in sorted
    order, the path as written, the photo's size and its bytes, so renaming or editing a photo changes
    it and the order of rows in the file only counts through catalog.csv itself.
    Raises CatalogError (no catalog.csv) or FileNotFoundError naming a missing photo.
    """
    catalog_dir = Path(catalog_dir)
    frame = read_catalog(catalog_dir)
    digest = hashlib.sha256()
    table = catalog_csv(catalog_dir).read_bytes()
    digest.update(f"catalog.csv\0{len(table)}\0".encode() + table)
    for image_path in sorted(frame["image_path"].unique()):
        photo = resolve_image(catalog_dir, image_path)
        if not photo.is_file():
            raise FileNotFoundError(
                f"{photo}: named by {catalog_csv(catalog_dir)} but missing; the data version "
                "covers every photo, so restore it or fix image_path"
            )
        # The size makes each photo's bytes unambiguous in the stream.
        digest.update(f"\0{image_path}\0{photo.stat().st_size}\0".encode())
        with open(photo, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
