"""Tests for the progress the stages show while they draw, load and encode photos and texts."""

from __future__ import annotations

import io

from pmatch.progress import LOG_EVERY_SECONDS, progress_reporter


class Clock:
    """Seconds that move only when the test says so."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(capsys) -> list[str]:
    printed = capsys.readouterr()
    assert printed.out == ""  # stdout is for the stages' JSON
    return printed.err.splitlines()


def test_a_log_line_shows_the_count_the_rate_and_the_time_left(capsys):
    clock = Clock()
    report = progress_reporter("photos encoded", every=0, clock=clock)

    report(64, 7455)
    clock.now += 10
    report(1064, 7455)
    clock.now += 90
    report(7455, 7455)

    assert lines(capsys) == [
        "  photos encoded: 64/7,455",
        "  photos encoded: 1,064/7,455 (100 photos/s, 01:03 left)",
        "  photos encoded: 7,455/7,455 (74 photos/s)",
    ]


def test_logs_get_at_most_one_line_every_few_seconds_but_always_the_last(capsys):
    clock = Clock()
    report = progress_reporter("texts encoded", "texts", clock=clock)

    for done in range(32, 321, 32):
        report(done, 320)
        clock.now += 1

    printed = lines(capsys)
    assert LOG_EVERY_SECONDS == 5
    assert [line.split(" (")[0] for line in printed] == [
        "  texts encoded: 32/320",
        "  texts encoded: 192/320",
        "  texts encoded: 320/320",
    ]
    assert printed[-1] == "  texts encoded: 320/320 (32 texts/s)"


def test_a_count_without_a_total_rates_from_when_it_was_made(capsys):
    clock = Clock()
    with progress_reporter("pairs scored", every=0, count_from_now=True, clock=clock) as report:
        clock.now += 4
        report(20_000)
        clock.now += 1
        report(25_000)

    assert lines(capsys) == [
        "  pairs scored: 20,000 (5,000 pairs/s)",
        "  pairs scored: 25,000 (5,000 pairs/s)",
    ]


def test_closing_shows_the_last_count_a_throttled_report_held_back(capsys):
    clock = Clock()
    with progress_reporter("pairs scored", clock=clock) as report:
        report(100)
        clock.now += 1
        report(200)

    assert lines(capsys) == ["  pairs scored: 100", "  pairs scored: 200 (100 pairs/s)"]


def test_a_total_that_grows_goes_on_counting_from_the_first_report(capsys):
    # Scoring a file chunk by chunk: each chunk brings new photos, so the total grows.
    clock = Clock()
    report = progress_reporter("photos encoded", every=0, clock=clock)

    report(100, 100)
    clock.now += 10
    report(300, 400)
    clock.now += 10
    report(400, 400)

    assert lines(capsys) == [
        "  photos encoded: 100/100",
        "  photos encoded: 300/400 (20 photos/s, 00:05 left)",
        "  photos encoded: 400/400 (15 photos/s)",
    ]


def test_a_terminal_gets_a_bar_redrawn_in_place_and_ended_with_a_new_line():
    clock = Clock()
    terminal = Terminal()
    report = progress_reporter("photos encoded", file=terminal, clock=clock)

    report(64, 640)
    clock.now += 1
    report(320, 640)
    clock.now += 1
    report(640, 640)

    shown = terminal.getvalue()
    assert shown.startswith("\rphotos encoded:  10%")
    assert "320/640 [00:01<00:01, 256.00photos/s]" in shown
    assert shown.endswith("\n") and shown.count("\n") == 1
    assert "640/640" in shown.splitlines()[-1].split("\r")[-1]
