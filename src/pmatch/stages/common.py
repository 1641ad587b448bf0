"""What the stage adapters share: params loading, progress printing, JSON output."""

from __future__ import annotations

import json
import sys
import time
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


def progress_printer(
    what: str,
    unit: str | None = None,
    every: float = 5.0,
    started: float | None = None,
    clock=time.monotonic,
):
    """A progress callable(done, total=None) that prints `what: done/total` on stderr.

    It prints the first report, the last (done == total) and otherwise at most one line
    every `every` seconds, so batches of a few photos do not flood a log. A line adds the
    rate (unit per second, default the first word of what) and, until a known total is
    reached, about how long is left. The rate counts from `started` (a clock() reading)
    or else from the first report, so loading a network before the first batch does not
    count. clock: seconds, for tests.
    """
    # The (time, count) the rate counts from, and when the last line was printed.
    reference = None if started is None else (started, 0)
    last_printed = -float("inf")

    def report(done: int, total: int | None = None) -> None:
        nonlocal reference, last_printed
        now = clock()
        if reference is None:
            reference = (now, done)
        elif now - last_printed < every and done != total:
            return
        last_printed = now
        line = f"  {what}: {done:,}/{total:,}" if total else f"  {what}: {done:,}"
        since, done_since = reference
        if now > since and done > done_since:
            rate = (done - done_since) / (now - since)
            line += f" ({rate:,.0f} {unit or what.split()[0]}/s"
            if total and done < total:
                line += f", about {_duration((total - done) / rate)} left"
            line += ")"
        say(line)

    return report


def _duration(seconds: float) -> str:
    """seconds as people read it: 45 s, 3 min 20 s, 1 h 05 min."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def print_json(document: dict) -> None:
    print(json.dumps(document, indent=2, default=str))
