"""`pmatch monitor`: scores an incoming batch with production and reports score drift."""

from __future__ import annotations

from pathlib import Path

from pmatch.stages.common import print_json


def add_arguments(parser) -> None:
    parser.add_argument(
        "--batch", type=Path, required=True, help="batch folder with pairs.csv and its photos"
    )
    parser.add_argument(
        "--run-id", default="manual", help="names the report folder (default: manual)"
    )
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")


def run(args) -> None:
    from pmatch.pipeline import monitor

    print_json(monitor(args.batch, args.run_id, args.project))
