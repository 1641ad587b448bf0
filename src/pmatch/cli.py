"""The `pmatch` command: one subcommand per stage, plus `run`, the main job."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "sample": "write the synthetic sample catalogue and monitoring batches",
    "ingest": "merge a delivery of listings into the catalogue: contract, quarantine, new data version",
    "validate": "check a catalogue against the data contract (Great Expectations)",
    "preprocess": "split, build pairs, cache photos, fit the vocabulary",
    "train": "train the matching model",
    "evaluate": "measure the model on the test split, choose the threshold",
    "gate": "decide whether the candidate may replace production",
    "deploy": "publish the candidate to the S3 registry and promote it",
    "score": "score a CSV of image-text pairs",
    "monitor": "score an incoming batch and report drift (Evidently)",
    "retrain-check": "whether data version, params or code differ from production's (else no retraining)",
    "models": "list the registry's versions, show one, promote one, roll production back",
    "run": "the main job: sample, retrain DAG, monitor DAG on two batches, summary",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pmatch", description=__doc__)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the full traceback of an error (also: PMATCH_DEBUG=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"pmatch.stages.{name.replace('-', '_')}")
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def _explained(error: BaseException) -> bool:
    """Whether the error's message is meant for the operator (names the input and the fix).

    S3 faults that reach here untranslated (botocore's own errors) are one line too.
    """
    if isinstance(error, (ValueError, OSError, RuntimeError)):
        return True
    module = type(error).__module__ or ""
    return module.startswith(("botocore", "boto3"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except Exception as error:
        # Errors pmatch raises name the input and the fix; a traceback would bury that.
        if args.debug or os.environ.get("PMATCH_DEBUG") or not _explained(error):
            raise
        print(f"pmatch {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
