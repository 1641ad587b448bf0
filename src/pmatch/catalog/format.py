"""The catalogue format: a folder with catalog.csv and the product photos it names."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pmatch.artifacts import CATALOG_FILE

REQUIRED_COLUMNS = ("product_id", "title", "image_path")
OPTIONAL_COLUMNS = ("variant", "name", "color", "category", "description")


class CatalogError(ValueError):
    """A catalogue folder cannot be read; the message names the file and the fix."""


def catalog_csv(folder: str | Path) -> Path:
    return Path(folder) / CATALOG_FILE


def read_catalog(folder: str | Path) -> pd.DataFrame:
    """Reads catalog.csv as strings, adds the optional columns empty, and a row key.

    The row key is product_id, plus '/variant' when the row has a variant: colour
    variants of one product share a product_id and differ by variant.
    Raises CatalogError when the file is missing or a required column is absent.
    """
    path = catalog_csv(folder)
    if not path.exists():
        raise CatalogError(
            f"{path}: no catalog.csv; a catalogue is a folder with catalog.csv "
            f"(columns {', '.join(REQUIRED_COLUMNS)}) and its images"
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise CatalogError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}"
        )
    for column in OPTIONAL_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    for column in frame.columns:
        frame[column] = frame[column].astype(str).str.strip()
    frame["row_key"] = frame["product_id"].where(
        frame["variant"] == "", frame["product_id"] + "/" + frame["variant"]
    )
    return frame


def top_category(category: pd.Series) -> pd.Series:
    """The first element of a '|'-separated category path ('' stays '')."""
    return category.str.split("|").str[0].str.strip()


def item_text(frame: pd.DataFrame) -> pd.Series:
    """The text a model reads for each row: title, then description when present."""
    return (frame["title"] + ". " + frame["description"]).str.strip(" .")


def resolve_image(folder: str | Path, image_path: str) -> Path:
    path = Path(image_path)
    return path if path.is_absolute() else Path(folder) / path
