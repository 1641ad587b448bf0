"""The Great Expectations contract a catalogue must meet before pmatch trains on it."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from pmatch.catalog.format import (
    REQUIRED_COLUMNS,
    CatalogError,
    CatalogTable,
    catalog_csv,
    image_location_problem,
    read_catalog_table,
)
from pmatch.config import ValidateParams

SUITE_NAME = "catalog_contract"
# Failing rows the error message shows for each expectation; the HTML page shows more.
EXAMPLE_ROWS = 5
PAGE_ROWS = 200
RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "result.html"
# The side of the colour thumbnails two near-identical photos are compared on.
THUMBNAIL_SIDE = 16
# Photo checks this process keeps, by the file's content (its SHA-256) and the limits: an
# ingest checks the catalogue's photos before and after the merge, and `pmatch run` ingests
# delivery after delivery, so most photos would be decoded again unchanged. 20,000
# checks hold about 60 MB of thumbnails.
CHECKED_PHOTOS_KEPT = 20_000
_CHECKED: OrderedDict[tuple, PhotoCheck] = OrderedDict()

# The columns the expectations check that are derived from catalog.csv, and the column of
# catalog.csv a person edits to fix them.
DERIVED_COLUMNS = {
    "product_id_trimmed": "product_id",
    "title_trimmed": "title",
    "image_path_trimmed": "image_path",
    "row_key": "product_id",
    "image_status": "image_path",
    "same_photo_as": "image_path",
}

# What a person should do about each problem a photo can have.
PHOTO_FIXES = {
    "missing": "put the photo at image_path inside the catalogue folder, or correct image_path",
    "outside_catalog": (
        "copy the photo into the catalogue folder and name it relative to that folder "
        "(images/...); paths with '..', absolute paths and symlinks pointing outside are refused"
    ),
    "unreadable": "make image_path name a readable file (it is a folder or cannot be read)",
    "not_an_image": "replace the file with a JPEG or PNG photo (Pillow cannot tell what it is)",
    "undecodable": "export the photo again (the file is truncated or corrupt)",
    "too_small": "use a photo at least validate.min_image_side pixels on its shorter side",
    "too_many_pixels": (
        "downscale the photo to at most validate.max_image_pixels pixels (width x height)"
    ),
}


class CatalogValidationError(ValueError):
    """The catalogue broke its contract; the message lists expectations and example rows."""


@dataclass(frozen=True)
class PhotoCheck:
    """What the contract learnt about one photo file.

    status: 'ok' or the problem (a key of PHOTO_FIXES). For an 'ok' photo: sha256 of its
    bytes, difference_hash (64 bits) and thumbnail (THUMBNAIL_SIDE^2 RGB, float) to find
    the same photo under another name.
    """

    status: str
    sha256: str = ""
    difference_hash: int = 0
    thumbnail: np.ndarray | None = None


@dataclass(frozen=True)
class ValidationOutcome:
    success: bool
    evaluated: int
    failed: list[dict]
    result_path: Path
    summary_path: Path
    report_path: Path | None = None

    def message(self, catalog: Path) -> str:
        if self.success:
            return f"{catalog_csv(catalog)}: all {self.evaluated} expectations met"
        lines = [
            f"{catalog_csv(catalog)} failed {len(self.failed)} of {self.evaluated} expectations "
            f"(full Great Expectations result: {self.result_path}; page: {self.report_path}):"
        ]
        for failure in self.failed:
            where = f", column {failure['catalog_column']}" if failure["catalog_column"] else ""
            lines.append(
                f"- {failure['expectation']}({failure['column']}){where}: {failure['problem']}"
            )
            for example in failure["examples"]:
                lines.append(f"    {example}")
            lines.append(f"    fix: {failure['fix']}")
        return "\n".join(lines)


def difference_hash(image: Image.Image) -> int:
    """A 64-bit perceptual hash: whether each pixel of an 8x9 greyscale thumbnail is darker
    than its right neighbour. Re-encoding or resizing a photo changes few of its bits."""
    grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR), dtype=np.int16)
    bits = (grey[:, :-1] < grey[:, 1:]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def check_photo(path: Path, min_side: int, max_pixels: int) -> PhotoCheck:
    """Opens one photo and says whether a model may train on it.

    path: the photo file. min_side: the shortest side allowed, in pixels. max_pixels: the
    most pixels (width x height) allowed; larger photos are refused from their header,
    before a single pixel is decoded.
    """
    if not path.exists():
        return PhotoCheck("missing")
    try:
        data = path.read_bytes()
    except OSError:  # A folder, or permissions that forbid reading.
        return PhotoCheck("unreadable")
    key = (hashlib.sha256(data).hexdigest(), min_side, max_pixels)
    if key in _CHECKED:
        _CHECKED.move_to_end(key)
        return _CHECKED[key]
    _CHECKED[key] = _check_photo_bytes(data, key[0], min_side, max_pixels)
    if len(_CHECKED) > CHECKED_PHOTOS_KEPT:
        _CHECKED.popitem(last=False)
    return _CHECKED[key]


def _check_photo_bytes(data: bytes, sha256: str, min_side: int, max_pixels: int) -> PhotoCheck:
    """check_photo for a file's bytes (sha256: their digest)."""
    try:
        # Pillow warns about (or refuses) huge images when it opens them; the contract
        # refuses them itself, from the header, so the warning would only repeat it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return PhotoCheck("too_many_pixels")
                image.load()
                if min(width, height) < min_side:
                    return PhotoCheck("too_small")
                rgb = image.convert("RGB")
                thumbnail = rgb.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
                pixels = np.array(thumbnail, dtype=np.float32)
                pixels.flags.writeable = False  # Kept in _CHECKED, shared by later checks.
                return PhotoCheck(
                    "ok", sha256=sha256, difference_hash=difference_hash(rgb), thumbnail=pixels
                )
    except Image.DecompressionBombError:
        return PhotoCheck("too_many_pixels")
    except UnidentifiedImageError:
        return PhotoCheck("not_an_image")
    except Exception:  # Pillow raises many types for broken files; all mean the same here.
        return PhotoCheck("undecodable")


def _same_photo_pairs(checks: list[PhotoCheck], params: ValidateParams) -> list[tuple]:
    """(first, second, how) for files (indexes into checks) holding the same photo: how is
    'byte-identical' (equal sha256) or 'near-identical' (difference hashes at most
    near_duplicate_bits apart and thumbnails at most near_duplicate_difference apart)."""
    pairs = []
    hashes = np.array([check.difference_hash for check in checks], dtype=np.uint64)
    thumbnails = np.stack([check.thumbnail for check in checks]) if checks else None
    # Compared in blocks of files so memory stays small for large catalogues.
    block = 512
    for start in range(0, len(checks), block):
        distances = np.bitwise_count(hashes[start : start + block, None] ^ hashes[None, :])
        for offset, other in zip(*np.nonzero(distances <= params.near_duplicate_bits), strict=True):
            first = start + int(offset)
            if int(other) <= first:
                continue
            if checks[first].sha256 == checks[other].sha256:
                pairs.append((first, int(other), "byte-identical"))
                continue
            difference = float(np.abs(thumbnails[first] - thumbnails[other]).mean())
            if difference <= params.near_duplicate_difference:
                pairs.append((first, int(other), "near-identical"))
    return pairs


def _photo_columns(
    catalog: Path, table: CatalogTable, product_ids: pd.Series, params: ValidateParams
) -> tuple[list, list]:
    """Each row's image_status, and which other product's row holds the same photo (or None).

    A photo file named by several rows is checked once. Rows of one product may share a
    photo (the split keeps a product's rows together); the same photo in two files under
    two products may not, since the split could put one in train and the other in test.
    A single file named by several products is left alone: catalogue.csv says so openly
    (the Luma catalogue's sizes of one ball do), and the split can see it.
    """
    statuses, files = [], []
    checks: dict[Path, PhotoCheck] = {}
    for value in table.frame["image_path"]:
        image_path = value.strip()
        if not image_path:
            # An empty image_path fails the not-null expectation already.
            statuses.append(None)
            files.append(None)
            continue
        if image_location_problem(catalog, image_path):
            statuses.append("outside_catalog")
            files.append(None)
            continue
        path = (catalog / image_path).resolve()
        if path not in checks:
            checks[path] = check_photo(path, params.min_image_side, params.max_image_pixels)
        statuses.append(checks[path].status)
        files.append(path if checks[path].status == "ok" else None)

    good_files = [path for path, check in checks.items() if check.status == "ok"]
    rows_of = {path: [] for path in good_files}
    for row, path in enumerate(files):
        if path is not None:
            rows_of[path].append(row)
    same_photo_as: list[str | None] = [None] * len(files)
    pairs = _same_photo_pairs([checks[path] for path in good_files], params)
    for first, second, how in pairs:
        for row in rows_of[good_files[first]]:
            for other in rows_of[good_files[second]]:
                if product_ids[row] == product_ids[other]:
                    continue
                for this, that in ((row, other), (other, row)):
                    if same_photo_as[this] is None:
                        same_photo_as[this] = (
                            f"line {table.line(that)} (product {product_ids[that]!r}, "
                            f"{table.frame['image_path'][that].strip()}): {how} photo"
                        )
    return statuses, same_photo_as


def _checked_frame(catalog: Path, table: CatalogTable, params: ValidateParams) -> pd.DataFrame:
    """catalog.csv as written, plus the derived columns the expectations look at.

    Values are trimmed first: a title of spaces is an empty title, and spaces do not count
    toward its length. Empty trimmed values become None, which GX's null checks see.
    """
    frame = table.frame.copy()
    trimmed = {}
    for column in (*REQUIRED_COLUMNS, "variant"):
        if column in frame.columns:
            trimmed[column] = frame[column].str.strip()
    for column in REQUIRED_COLUMNS:
        if column in trimmed:
            frame[f"{column}_trimmed"] = trimmed[column].where(trimmed[column] != "", None)
    if "product_id" in trimmed:
        variant = trimmed.get("variant", pd.Series("", index=frame.index))
        key = trimmed["product_id"].where(variant == "", trimmed["product_id"] + "/" + variant)
        frame["row_key"] = key.where(trimmed["product_id"] != "", None)
    if "image_path" in frame.columns:
        product_ids = trimmed.get("product_id", pd.Series("", index=frame.index))
        frame["image_status"], frame["same_photo_as"] = _photo_columns(
            catalog, table, product_ids, params
        )
    return frame


def build_suite(params: ValidateParams):
    """The catalogue's expectation suite, built from params."""
    import great_expectations as gx

    expectations = gx.expectations
    suite = gx.ExpectationSuite(name=SUITE_NAME)
    suite.add_expectation(expectations.ExpectTableRowCountToBeBetween(min_value=1))
    for column in REQUIRED_COLUMNS:
        suite.add_expectation(expectations.ExpectColumnToExist(column=column))
    for column in REQUIRED_COLUMNS:
        suite.add_expectation(
            expectations.ExpectColumnValuesToNotBeNull(column=f"{column}_trimmed")
        )
    suite.add_expectation(expectations.ExpectColumnValuesToBeUnique(column="row_key"))
    suite.add_expectation(
        expectations.ExpectColumnValueLengthsToBeBetween(
            column="title_trimmed", min_value=params.min_title_chars
        )
    )
    suite.add_expectation(
        expectations.ExpectColumnValuesToBeInSet(column="image_status", value_set=["ok"])
    )
    suite.add_expectation(expectations.ExpectColumnValuesToBeNull(column="same_photo_as"))
    return suite


def _run_suite(frame: pd.DataFrame, params: ValidateParams):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("catalog").add_dataframe_asset(name="catalog_rows")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole_catalog")
    suite = context.suites.add(build_suite(params))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="catalog_validation", data=batch_definition, suite=suite)
    )
    return definition.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")


def _exception_message(info: dict) -> str | None:
    """GX 1.x keeps an expectation's error either at the top or under each metric's id."""
    if info.get("exception_message"):
        return info["exception_message"]
    for value in info.values():
        if isinstance(value, dict) and value.get("exception_message"):
            return value["exception_message"]
    return None


def _fix(kind: str, column: str, statuses: list[str], params: ValidateParams) -> str:
    """What a person should do about a failed expectation (statuses: the failing rows'
    image_status values, for the photo expectation)."""
    if kind == "expect_table_row_count_to_be_between":
        return "add one row per listing under the header line"
    if kind == "expect_column_to_exist":
        return "add the column to the header line (line 1) of catalog.csv"
    if kind == "expect_column_values_to_not_be_null":
        return {
            "product_id_trimmed": "give every row a product_id (spaces alone do not count)",
            "title_trimmed": "write a title for every row (spaces alone do not count)",
        }.get(column, "name every row's photo in image_path, relative to the catalogue folder")
    if kind == "expect_column_values_to_be_unique":
        return (
            "give every row its own product_id (or product_id + variant for colour variants); "
            "remove repeated rows"
        )
    if kind == "expect_column_value_lengths_to_be_between":
        return (
            f"write a real title of at least {params.min_title_chars} characters "
            "(spaces at either end do not count)"
        )
    if kind == "expect_column_values_to_be_in_set":
        return "; ".join(
            f"{status}: {PHOTO_FIXES.get(status, 'see the full result')}"
            for status in sorted(set(statuses))
        )
    return (
        "give each product its own photo, or remove the copy: the same photo under two "
        "products can land in train and in test, so the test score counts photos it has seen"
    )


def _describe(result, table: CatalogTable, frame: pd.DataFrame, params: ValidateParams) -> dict:
    """One expectation's outcome for people: what failed, on which lines, and the fix."""
    config = result.expectation_config
    kind = config.type
    column = config.kwargs.get("column", "")
    catalog_column = DERIVED_COLUMNS.get(column, column)
    details = result.result or {}
    exception = _exception_message(result.exception_info or {})
    rows = []
    if result.success:
        problem = "met"
    elif exception:
        problem = f"could not be evaluated ({exception.splitlines()[0][:160]})"
    elif kind == "expect_table_row_count_to_be_between":
        problem = f"{table.path} has a header but no rows"
    elif kind == "expect_column_to_exist":
        problem = (
            f"column '{column}' is missing from the header (line 1); "
            f"found {', '.join(table.frame.columns)}"
        )
    else:
        indexes = [int(index) for index in details.get("unexpected_index_list") or []]
        problem = f"{details.get('unexpected_count', len(indexes))} row(s) fail"
        for index in indexes:
            row = frame.iloc[index]
            shown = {key: row[key] for key in ("product_id", "variant") if key in row}
            shown[catalog_column] = row[catalog_column]
            if column in ("image_status", "same_photo_as"):
                shown[column] = row[column]
            # Line numbers count the header as line 1, as an editor shows them.
            rows.append({"line": table.line(index), "values": shown})
    statuses = [row["values"].get("image_status") for row in rows]
    return {
        "expectation": kind,
        "column": column,
        "catalog_column": catalog_column,
        "success": bool(result.success),
        "problem": problem,
        "lines": [row["line"] for row in rows],
        "rows": rows,
        "examples": [
            f"line {row['line']}: {json.dumps(row['values'], ensure_ascii=False)}"
            for row in rows[:EXAMPLE_ROWS]
        ],
        "fix": "" if result.success else _fix(kind, column, statuses, params),
    }


def _write_page(path: Path, catalog: Path, success: bool, checks: list[dict], **context) -> None:
    from pmatch.templates import render_page

    path.write_text(
        render_page(
            "validate.html.j2",
            catalog=catalog_csv(catalog),
            success=success,
            checks=checks,
            page_rows=PAGE_ROWS,
            **context,
        ),
        encoding="utf-8",
    )


def _refuse_unreadable(catalog: Path, out_dir: Path, error: CatalogError) -> None:
    """Records why catalog.csv could not even be read as a table, then raises."""
    message = str(error)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RESULT_FILE).write_text(json.dumps({"success": False, "read_error": message}))
    summary = {"catalog": str(catalog), "success": False, "read_error": message, "failed": []}
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    _write_page(out_dir / REPORT_FILE, catalog, False, [], read_error=message, rows=None)
    raise CatalogValidationError(message) from error


def validate_catalog(
    catalog: str | Path, params: ValidateParams, out_dir: str | Path
) -> ValidationOutcome:
    """Runs the contract over a catalogue and saves the GX result, a summary and a page.

    catalog: the catalogue folder. params: the contract's thresholds. out_dir: where
    result.json (the full GX result), summary.json (pass/fail, failed expectations with
    their lines and fixes) and result.html (every expectation and failing row) are written.
    Raises CatalogValidationError when catalog.csv cannot be read as a table or any
    expectation fails; the files are written first (except when catalog.csv is absent).
    """
    catalog, out_dir = Path(catalog), Path(out_dir)
    if not catalog_csv(catalog).is_file():
        raise CatalogValidationError(
            f"{catalog_csv(catalog)}: no catalog.csv; set data.catalog in params.yaml to a "
            "catalogue folder (catalog.csv plus its images)"
        )
    try:
        table = read_catalog_table(catalog)
    except CatalogError as error:
        _refuse_unreadable(catalog, out_dir, error)
    frame = _checked_frame(catalog, table, params)
    result = _run_suite(frame, params)
    checks = [_describe(item, table, frame, params) for item in result.results]
    failed = [
        {key: value for key, value in check.items() if key != "rows"}
        for check in checks
        if not check["success"]
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = ValidationOutcome(
        success=bool(result.success) and not failed,
        evaluated=len(result.results),
        failed=failed,
        result_path=out_dir / RESULT_FILE,
        summary_path=out_dir / SUMMARY_FILE,
        report_path=out_dir / REPORT_FILE,
    )
    outcome.result_path.write_text(json.dumps(result.to_json_dict(), indent=2, sort_keys=True))
    summary = {
        "catalog": str(catalog),
        "rows": len(frame),
        "success": outcome.success,
        "expectations": outcome.evaluated,
        "failed": failed,
    }
    outcome.summary_path.write_text(json.dumps(summary, indent=2))
    _write_page(outcome.report_path, catalog, outcome.success, checks, rows=len(frame))
    if not outcome.success:
        raise CatalogValidationError(outcome.message(catalog))
    return outcome
