"""What the stage adapters share: params loading, messages on stderr, JSON on stdout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pmatch.config import Params, load_params


def add_params_argument(parser) -> None:
    parser.add_argument(
        "--params",
        default="params.yaml",
        type=Path,
        help="params file (default: params.yaml in the current folder)",
    )


def params_from(args) -> Params:
    return load_params(args.params)


def say(message: str) -> None:
    """Progress and results for people, on stderr so stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


def print_json(document: dict) -> None:
    print(json.dumps(document, indent=2, default=str))
