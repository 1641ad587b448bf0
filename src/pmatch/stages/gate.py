"""`pmatch gate`: decides whether the evaluated candidate may be deployed."""

from __future__ import annotations

from pmatch.stages.common import print_json


def add_arguments(parser) -> None:
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")


def run(args) -> None:
    from pmatch.pipeline import gate

    print_json(gate(args.project))
