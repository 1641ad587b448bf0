"""`pmatch monitor`: watches one delivery with the production model and prints its verdict."""

from __future__ import annotations

from pmatch.stages.common import print_json


def run_date(text: str) -> str:
    """A --run-date value: an ISO date or time (YYYY-MM-DD[THH:MM[:SS]][+00:00]), as given."""
    import argparse
    from datetime import datetime

    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date; give the run's date as YYYY-MM-DD (or an ISO time)"
        ) from None
    return text


def add_arguments(parser) -> None:
    parser.add_argument(
        "--delivery",
        required=True,
        help="delivery folder (catalog.csv, optional label column: 1 match, 0 not, and its "
        "photos), or an s3://bucket/prefix holding one",
    )
    parser.add_argument(
        "--run-id", default="manual", help="names the report folder (default: manual)"
    )
    parser.add_argument(
        "--run-date",
        type=run_date,
        help="the run's date (YYYY-MM-DD), against which persistence and cooldown are read "
        "(default: now)",
    )
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")


def run(args) -> None:
    import contextlib
    import sys

    from pmatch.pipeline import monitor

    # The pipeline's progress lines go to stderr: stdout holds the verdict's JSON alone.
    with contextlib.redirect_stdout(sys.stderr):
        verdict = monitor(args.delivery, args.run_id, args.project, run_date=args.run_date)
    print_json(verdict)
