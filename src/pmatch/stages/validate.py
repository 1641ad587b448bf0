"""`pmatch validate`: runs the catalogue contract; a failure exits non-zero with the reasons."""

from __future__ import annotations

from pathlib import Path

from pmatch.stages.common import add_params_argument, params_from, say


def add_arguments(parser) -> None:
    parser.add_argument("--catalog", type=Path, help="catalogue folder (default: data.catalog)")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for result.json and summary.json"
    )
    add_params_argument(parser)


def run(args) -> None:
    from pmatch.validate.contract import validate_catalog

    params = params_from(args)
    catalog = args.catalog or Path(params.data.catalog)
    outcome = validate_catalog(catalog, params.validate, args.out)
    say(outcome.message(catalog))
