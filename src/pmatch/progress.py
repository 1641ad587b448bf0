"""Progress of long stages on stderr: a tqdm bar on a terminal, a line every few seconds in logs."""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

# Logs (Airflow, CI, `dvc repro`) get at most one progress line this often.
LOG_EVERY_SECONDS = 5.0


class ProgressReporter:
    """What progress_reporter returns: a callable(done, total=None) for library code,
    shown with tqdm on stderr.

    On a terminal it draws a live bar. Elsewhere (logs) it prints whole lines, with the
    count, the rate and the time left: the first report, the last (done == total) and
    otherwise at most one every `every` seconds. A count that reaches its total ends its
    bar; a later report (a total that grew) starts the next one. Use it as a context
    manager, or call close(), so a count without a total ends cleanly too.
    """

    def __init__(
        self,
        what: str,
        unit: str | None = None,
        every: float = LOG_EVERY_SECONDS,
        count_from_now: bool = False,
        file=None,
        clock=time.monotonic,
    ):
        """what: what is counted, as people read it ('photos encoded'). unit: the rate's
        unit (default the first word of what). every: seconds between log lines.
        count_from_now: the rate counts from now rather than from the first report, which
        otherwise leaves out loading a network before the first batch. file: default
        stderr, so stdout stays machine-readable. clock: seconds, for tests."""
        self.what = what
        self.unit = unit or what.split()[0]
        self.every = every
        self.file = file
        self.clock = clock
        # The (time, count) the rate counts from: set by the first report unless given.
        self.origin = (clock(), 0) if count_from_now else None
        self.bar: _Bar | None = None

    def __call__(self, done: int, total: int | None = None) -> None:
        if self.bar is None:
            if self.origin is None:
                self.origin = (self.clock(), done)
            file = self.file or sys.stderr
            terminal = bool(getattr(file, "isatty", lambda: False)())
            self.bar = _Bar(
                log_lines=not terminal,
                origin=self.origin,
                done=done,
                clock=self.clock,
                desc=self.what,
                unit=self.unit,
                total=total,
                file=file,
                # On a terminal the bar is redrawn in place, as often as tqdm likes.
                mininterval=0.1 if terminal else self.every,
            )
        else:
            self.bar.total = total
            self.bar.update(done - self.bar.n)
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        """Shows the last count if it is not shown yet and ends the bar."""
        if self.bar is None:
            return
        if self.bar.n != self.bar.last_print_n:
            self.bar.refresh()
        self.bar.close()
        self.bar = None

    def __enter__(self) -> ProgressReporter:
        return self

    def __exit__(self, *exception) -> None:
        self.close()


def progress_reporter(what: str, unit: str | None = None, **options) -> ProgressReporter:
    """The progress callable(done, total=None) stages hand to library code; what, unit
    and options as for ProgressReporter."""
    return ProgressReporter(what, unit, **options)


class _Bar(tqdm):
    """One tqdm count; with log_lines, each display is a whole line (log_line), not a
    bar redrawn in place, and mininterval spaces the lines."""

    # tqdm's monitor thread only helps bars driven by iteration; these are driven by calls.
    monitor_interval = 0

    def __init__(self, *, log_lines: bool, origin: tuple, done: int, clock, **options):
        self.log_lines = log_lines
        started, counted = origin
        # The first display waits until the clock and counts are set (delay).
        super().__init__(initial=counted, miniters=1, smoothing=0, delay=math.inf, **options)
        self.delay = 0
        self._time = clock
        self.start_t = started
        self.n = self.last_print_n = done
        self.last_print_t = clock()
        self.refresh()

    def display(self, msg=None, pos=None):
        if not self.log_lines:
            return super().display(msg, pos)
        # An empty message asks to clear the bar on close: a log line stays.
        if msg == "":
            return False
        self.fp.write(log_line(self.format_dict) + "\n")
        self.fp.flush()
        return True

    def close(self):
        if self.log_lines:
            # tqdm's close would show the count again; the reporter has shown the last one.
            self.leave = False
        super().close()


def log_line(meter: dict) -> str:
    """A progress line for logs from tqdm's format_dict: '  photos encoded: 1,064/7,455
    (100 photos/s, 01:04 left)'; the rate counts from the meter's start, the time left
    appears until the total is reached."""
    done, total, elapsed = meter["n"], meter["total"], meter["elapsed"]
    line = f"  {meter['prefix']}: {done:,}" + (f"/{total:,}" if total else "")
    counted = done - meter["initial"]
    if elapsed > 0 and counted > 0:
        rate = counted / elapsed
        shown = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"
        line += f" ({shown} {meter['unit']}/s"
        if total and done < total:
            line += f", {tqdm.format_interval((total - done) / rate)} left"
        line += ")"
    return line
