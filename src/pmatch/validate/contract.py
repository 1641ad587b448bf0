"""The Great Expectations contract a catalogue must meet before pmatch trains on it."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from pmatch.catalog.format import REQUIRED_COLUMNS, catalog_csv, resolve_image
from pmatch.config import ValidateParams

SUITE_NAME = "catalog_contract"
EXAMPLE_ROWS = 5

# What a person should do about each kind of failed expectation.
FIXES = {
    "expect_column_to_exist": "add the column to catalog.csv",
    "expect_column_values_to_not_be_null": "fill in the empty values",
    "expect_column_values_to_be_unique": (
        "give every row its own product_id (or product_id + variant for colour variants)"
    ),
    "expect_column_value_lengths_to_be_between": "write a real title for these rows",
    "expect_column_values_to_be_in_set": (
        "make image_path point at a readable photo (JPEG/PNG, at least min_image_side px)"
    ),
}


class CatalogValidationError(ValueError):
    """The catalogue broke its contract; the message lists expectations and example rows."""


@dataclass(frozen=True)
class ValidationOutcome:
    success: bool
    evaluated: int
    failed: list[dict]
    result_path: Path
    summary_path: Path

    def message(self, catalog: Path) -> str:
        if self.success:
            return f"{catalog_csv(catalog)}: all {self.evaluated} expectations met"
        lines = [
            f"{catalog_csv(catalog)} failed {len(self.failed)} of {self.evaluated} expectations "
            f"(full Great Expectations result: {self.result_path}):"
        ]
        for failure in self.failed:
            lines.append(f"- {failure['expectation']}({failure['column']}): {failure['problem']}")
            for example in failure["examples"]:
                lines.append(f"    {example}")
            lines.append(f"    fix: {failure['fix']}")
        return "\n".join(lines)


def image_status(path: Path, min_side: int) -> str:
    """'ok', or why the photo cannot be used: missing, undecodable, too_small."""
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
    except Exception:  # Pillow raises many types for broken files; all mean the same here.
        return "undecodable"
    return "ok" if min(width, height) >= min_side else "too_small"


def _checked_frame(catalog: Path, params: ValidateParams) -> pd.DataFrame:
    """catalog.csv as read, plus derived columns the expectations look at."""
    frame = pd.read_csv(catalog_csv(catalog), dtype=str, keep_default_na=False)
    if "product_id" in frame.columns:
        variant = frame["variant"] if "variant" in frame.columns else ""
        frame["row_key"] = frame["product_id"] + "/" + variant
    if "image_path" in frame.columns:
        paths = [
            resolve_image(catalog, value) if value else Path("") for value in frame["image_path"]
        ]
        with ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(lambda path: image_status(path, params.min_image_side), paths))
        frame["image_status"] = statuses
    return frame


def build_suite(params: ValidateParams):
    """The catalogue's expectation suite, built from params."""
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=SUITE_NAME)
    for column in REQUIRED_COLUMNS:
        suite.add_expectation(gx.expectations.ExpectColumnToExist(column=column))
    for column in ("product_id", "title", "image_path"):
        suite.add_expectation(gx.expectations.ExpectColumnValuesToNotBeNull(column=column))
    suite.add_expectation(gx.expectations.ExpectColumnValuesToBeUnique(column="row_key"))
    suite.add_expectation(
        gx.expectations.ExpectColumnValueLengthsToBeBetween(
            column="title", min_value=params.min_title_chars
        )
    )
    suite.add_expectation(
        gx.expectations.ExpectColumnValuesToBeInSet(column="image_status", value_set=["ok"])
    )
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
    # Empty strings stand for missing values in catalog.csv; GX's null check needs NaN.
    checked = frame.replace({"": None})
    return definition.run(batch_parameters={"dataframe": checked}, result_format="COMPLETE")


def _exception_message(info: dict) -> str | None:
    """GX 1.x keeps an expectation's error either at the top or under each metric's id."""
    if info.get("exception_message"):
        return info["exception_message"]
    for value in info.values():
        if isinstance(value, dict) and value.get("exception_message"):
            return value["exception_message"]
    return None


def _describe_failure(result, frame: pd.DataFrame) -> dict:
    config = result.expectation_config
    kind = config.type
    column = config.kwargs.get("column", "")
    details = result.result or {}
    exception = _exception_message(result.exception_info or {})
    examples = []
    if exception:
        problem = f"could not be evaluated ({exception.splitlines()[0][:160]})"
    elif kind == "expect_column_to_exist":
        problem = f"column '{column}' is missing; found {', '.join(frame.columns)}"
    else:
        indexes = details.get("unexpected_index_list") or []
        problem = f"{details.get('unexpected_count', len(indexes))} row(s) fail"
        for index in indexes[:EXAMPLE_ROWS]:
            row = frame.iloc[int(index)]
            shown = {key: row[key] for key in ("product_id", "variant", column) if key in row}
            if column == "image_status" and "image_path" in row:
                shown["image_path"] = row["image_path"]
            # Line numbers count the header as line 1, as an editor shows them.
            examples.append(f"line {int(index) + 2}: {json.dumps(shown, ensure_ascii=False)}")
    return {
        "expectation": kind,
        "column": column,
        "problem": problem,
        "examples": examples,
        "fix": FIXES.get(kind, "see the full result"),
    }


def validate_catalog(
    catalog: str | Path, params: ValidateParams, out_dir: str | Path
) -> ValidationOutcome:
    """Runs the contract over a catalogue and saves the GX result and a summary.

    catalog: the catalogue folder. out_dir: where result.json (the full GX result) and
    summary.json (pass/fail, failed expectations with example rows) are written.
    Raises CatalogValidationError when any expectation fails; the files are written first.
    """
    catalog, out_dir = Path(catalog), Path(out_dir)
    if not catalog_csv(catalog).is_file():
        raise CatalogValidationError(
            f"{catalog_csv(catalog)}: no catalog.csv; set data.catalog in params.yaml to a "
            "catalogue folder (catalog.csv plus its images)"
        )
    frame = _checked_frame(catalog, params)
    result = _run_suite(frame, params)
    failed = [_describe_failure(item, frame) for item in result.results if not item.success]
    out_dir.mkdir(parents=True, exist_ok=True)
    outcome = ValidationOutcome(
        success=bool(result.success) and not failed,
        evaluated=len(result.results),
        failed=failed,
        result_path=out_dir / "result.json",
        summary_path=out_dir / "summary.json",
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
    if not outcome.success:
        raise CatalogValidationError(outcome.message(catalog))
    return outcome
