"""The catalogue format: a folder with catalog.csv and the product photos it names."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pmatch.artifacts import CATALOG_FILE

REQUIRED_COLUMNS = ("product_id", "title", "image_path")
OPTIONAL_COLUMNS = ("variant", "name", "color", "category", "description")
# The most ragged lines an error lists one by one; the rest are counted.
LISTED_LINES = 20


class CatalogError(ValueError):
    """A catalogue folder cannot be read; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class CatalogTable:
    """catalog.csv as written: every value a string, untrimmed.

    frame: one row per listing, indexed 0..n-1. lines: the line of catalog.csv each row
    starts on (the header is line 1; a quoted value may span several lines). path: the file.
    """

    frame: pd.DataFrame
    lines: list[int]
    path: Path

    def line(self, row: int) -> int:
        """The line of catalog.csv that row `row` (a position in frame) starts on."""
        return self.lines[row]


def catalog_csv(folder: str | Path) -> Path:
    return Path(folder) / CATALOG_FILE


def _decoded(path: Path, data: bytes) -> str:
    """The file's text; bytes that are not UTF-8 raise CatalogError naming the line and column."""
    try:
        # utf-8-sig drops the byte-order mark spreadsheet programs put before the header.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        position = error.start
    line = data.count(b"\n", 0, position) + 1
    line_start = data.rfind(b"\n", 0, position) + 1
    # Which field holds the bad byte: parse the line up to it (ignoring quoting across lines,
    # which is rare) and count the fields begun so far.
    before = data[line_start:position].decode("utf-8", errors="replace")
    fields_begun = len(next(csv.reader([before]), [""])) if before else 1
    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff")
    header = next(csv.reader([first_line]), [])
    column = (
        f"column {header[fields_begun - 1].strip()!r}"
        if line > 1 and fields_begun <= len(header)
        else f"field {fields_begun}"
    )
    raise CatalogError(
        f"{path}: line {line}, {column}: byte 0x{data[position]:02x} is not UTF-8 (the file was "
        "probably saved as Latin-1 or Windows-1252); save catalog.csv as UTF-8 (in a spreadsheet: "
        "'CSV UTF-8') and run again"
    )


def read_catalog_table(folder: str | Path) -> CatalogTable:
    """Reads catalog.csv exactly as written, refusing what cannot be a catalogue table.

    folder: the catalogue folder. Raises CatalogError, naming the file, the line and the fix,
    when catalog.csv is missing or empty, is not UTF-8, repeats a header name, or has rows
    with more or fewer fields than the header (every such line is named: no row is dropped).
    Required columns and values are not checked here; read_catalog and the contract do that.
    """
    path = catalog_csv(folder)
    if not path.is_file():
        raise CatalogError(
            f"{path}: no catalog.csv; a catalogue is a folder with catalog.csv "
            f"(columns {', '.join(REQUIRED_COLUMNS)}) and its images"
        )
    text = _decoded(path, path.read_bytes())
    if not text.strip():
        raise CatalogError(
            f"{path}: is empty; a catalogue needs a header line with "
            f"{', '.join(REQUIRED_COLUMNS)} and one row per listing"
        )
    reader = csv.reader(io.StringIO(text, newline=""))
    records, lines = [], []
    try:
        while True:
            start = reader.line_num + 1
            try:
                record = next(reader)
            except StopIteration:
                break
            # Blank lines carry no listing; pandas skipped them too.
            if record and any(value.strip() for value in record):
                records.append(record)
                lines.append(start)
    except csv.Error as error:
        raise CatalogError(
            f"{path}: line {reader.line_num}: {error}; close the quote that opens on this line "
            "(a value containing commas or line breaks goes in double quotes, and a double quote "
            'inside it is written twice: "")'
        ) from error
    header, header_line = [name.strip() for name in records[0]], lines[0]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise CatalogError(
            f"{path}: line {header_line}: the header names column(s) {', '.join(repeated)} "
            "more than once; give every column its own name"
        )
    ragged = [
        (line, len(record))
        for line, record in zip(lines[1:], records[1:], strict=True)
        if len(record) != len(header)
    ]
    if ragged:
        listed = "; ".join(f"line {line}: {count} fields" for line, count in ragged[:LISTED_LINES])
        more = f"; and {len(ragged) - LISTED_LINES} more" if len(ragged) > LISTED_LINES else ""
        raise CatalogError(
            f"{path}: {len(ragged)} row(s) do not have the header's {len(header)} fields "
            f"({', '.join(header)}): {listed}{more}; put values that contain commas in double "
            "quotes, and give every row one value per column (empty values stay as ,,)"
        )
    frame = pd.DataFrame(records[1:], columns=header, dtype=str)
    return CatalogTable(frame=frame, lines=lines[1:], path=path)


def read_catalog(folder: str | Path) -> pd.DataFrame:
    """Reads catalog.csv as trimmed strings, adds the optional columns empty, and a row key.

    The row key is product_id, plus '/variant' when the row has a variant: colour
    variants of one product share a product_id and differ by variant.
    Raises CatalogError when the file is missing, empty or unreadable (see
    read_catalog_table), a required column is absent, or there are no rows.
    """
    table = read_catalog_table(folder)
    frame, path = table.frame, table.path
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise CatalogError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}; "
            "add the column(s) to the header line (line 1)"
        )
    if frame.empty:
        raise CatalogError(
            f"{path}: has a header but no rows; add one row per listing under line 1"
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


def image_location_problem(folder: str | Path, image_path: str) -> str | None:
    """Why image_path may not be used as a photo of the catalogue in folder, or None.

    A photo must lie inside the catalogue folder, so that the folder is the whole data
    version: an absolute path, a '..' that climbs out, or a symlink (of the photo or a folder
    on the way) that points outside all name files the catalogue does not hold.
    """
    path = Path(image_path)
    if path.is_absolute():
        return "is an absolute path"
    if ".." in path.parts:
        return "climbs out of the catalogue folder with '..'"
    root = Path(folder).resolve()
    if not (root / path).resolve().is_relative_to(root):
        return "is a symlink (or lies in a linked folder) pointing outside the catalogue folder"
    return None


def resolve_image(folder: str | Path, image_path: str) -> Path:
    """The photo file that image_path (relative to the catalogue folder) names.

    folder: the catalogue folder. Raises CatalogError when the path leaves the folder
    (absolute, '..', or a symlink pointing outside), which the contract refuses too.
    """
    problem = image_location_problem(folder, image_path)
    if problem:
        raise CatalogError(
            f"{catalog_csv(folder)}: image_path {image_path!r} {problem}; copy the photo into "
            "the catalogue folder and name it relative to that folder (images/...)"
        )
    return Path(folder) / image_path
