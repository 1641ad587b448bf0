"""What the benchmark scripts share: the machine they ran on, peak memory, result files."""

from __future__ import annotations

import json
import os
import platform
import resource
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine_description() -> str:
    """Architecture, CPU model (from /proc/cpuinfo where there is one), cores, Python: the
    same code ran 2x slower on one day's "x86_64, 2 cores" than on another's."""
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = " " + line.partition(":")[2].strip()
                break
    return (
        f"{platform.machine()}{model}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, unlike ru_maxrss, starts afresh at exec,
    so a child process does not report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def write_results(stem: str, text: str, payload: dict) -> None:
    """benchmarks/results/<stem>.md (the printed table) and <stem>.json (every number)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text + "\n")
    (RESULTS / f"{stem}.json").write_text(json.dumps(payload, indent=2))
