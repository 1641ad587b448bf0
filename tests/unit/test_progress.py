"""Tests for the progress lines the stages print while they encode photos and texts."""

from __future__ import annotations

from pmatch.stages.common import progress_printer


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_progress_shows_the_rate_and_the_time_left(capsys):
    clock = Clock()
    report = progress_printer("photos encoded", every=0, clock=clock)

    report(64, 7455)
    clock.now += 10
    report(1064, 7455)
    clock.now += 90
    report(7455, 7455)

    assert lines(capsys) == [
        "  photos encoded: 64/7,455",
        "  photos encoded: 1,064/7,455 (100 photos/s, about 1 min 04 s left)",
        "  photos encoded: 7,455/7,455 (74 photos/s)",
    ]


def test_progress_prints_at_most_one_line_every_few_seconds_but_always_the_last(capsys):
    clock = Clock()
    report = progress_printer("texts encoded", "texts", every=5, clock=clock)

    for done in range(32, 321, 32):
        report(done, 320)
        clock.now += 1

    printed = lines(capsys)
    assert [line.split(" (")[0] for line in printed] == [
        "  texts encoded: 32/320",
        "  texts encoded: 192/320",
        "  texts encoded: 320/320",
    ]
    assert printed[-1] == "  texts encoded: 320/320 (32 texts/s)"


def test_progress_without_a_total_counts_from_the_given_start(capsys):
    clock = Clock()
    report = progress_printer("pairs scored", every=0, started=clock.now, clock=clock)

    clock.now += 4
    report(20_000)
    clock.now += 1
    report(25_000)

    assert lines(capsys) == [
        "  pairs scored: 20,000 (5,000 pairs/s)",
        "  pairs scored: 25,000 (5,000 pairs/s)",
    ]
