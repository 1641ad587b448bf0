"""`pmatch gate`: decides whether the evaluated candidate may replace production."""

from __future__ import annotations

from pmatch.stages.common import print_json
from pmatch.stages.deploy import run_date_argument


def add_arguments(parser) -> None:
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")
    parser.add_argument("--run-id", default="manual", help="run id recorded in the decision")
    parser.add_argument(
        "--run-date",
        type=run_date_argument,
        help="the run's date, ISO 8601 (default: now, UTC); recorded as decided_at",
    )


def run(args) -> None:
    from pmatch.pipeline import gate

    print_json(gate(args.project, run_id=args.run_id, run_date=args.run_date))
