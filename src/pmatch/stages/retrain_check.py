"""`pmatch retrain-check`: says whether retraining has work to do (data, params or code changed)."""

from __future__ import annotations

from pmatch.stages.common import print_json


def add_arguments(parser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="say retrain even when nothing changed"
    )
    parser.add_argument("--reason", help="why this run (printed)")


def run(args) -> None:
    from pmatch.pipeline import retrain_check

    print_json(retrain_check(force=args.force, reason=args.reason))
