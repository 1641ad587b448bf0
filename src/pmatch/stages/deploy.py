"""`pmatch deploy`: ships the candidate the gate approved, smoke-tests it, rolls back on failure."""

from __future__ import annotations

from datetime import UTC, datetime

from pmatch.stages.common import print_json


def run_date_argument(text: str) -> datetime:
    """An ISO 8601 date from the command line; UTC when it names no zone."""
    date = datetime.fromisoformat(text)
    return date if date.tzinfo else date.replace(tzinfo=UTC)


def add_arguments(parser) -> None:
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")
    parser.add_argument("--run-id", default="manual", help="run id recorded in the manifest")
    parser.add_argument(
        "--run-date",
        type=run_date_argument,
        help="the run's date, ISO 8601 (default: now, UTC); recorded as created_at and as "
        "the promotion's time",
    )


def run(args) -> None:
    from pmatch.pipeline import deploy

    # At the command line the run is happening now; Airflow passes its logical date instead.
    run_date = args.run_date or datetime.now(UTC).replace(microsecond=0)
    print_json(deploy(args.run_id, run_date, args.project))
