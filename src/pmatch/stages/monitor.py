"""`pmatch monitor`: scores an incoming batch with production and reports score drift."""

from __future__ import annotations

from pathlib import Path

from pmatch.stages.common import print_json


def run_date(text: str) -> str:
    """A --run-date value: an ISO date (YYYY-MM-DD), returned as given."""
    import argparse
    from datetime import date

    try:
        date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; give the run's date as YYYY-MM-DD"
        ) from None
    return text


def add_arguments(parser) -> None:
    parser.add_argument(
        "--batch", type=Path, required=True, help="batch folder with pairs.csv and its photos"
    )
    parser.add_argument(
        "--run-id", default="manual", help="names the report folder (default: manual)"
    )
    parser.add_argument(
        "--run-date",
        type=run_date,
        help="the run's date (YYYY-MM-DD) for the drift history (default: none; such runs "
        "are listed after the dated ones)",
    )
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")


def run(args) -> None:
    from pmatch.pipeline import monitor

    print_json(monitor(args.batch, args.run_id, args.project, run_date=args.run_date))
