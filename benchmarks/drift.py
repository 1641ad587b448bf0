"""Drift monitoring on deliveries the model never saw: false alarms, detection, and harm.

    .venv/bin/python benchmarks/drift.py
    .venv/bin/python benchmarks/drift.py --work ~/.cache/pmatch-bench/drift --unshifted 30 --per-shift 10

Trains a model on the 1,000-product sample catalogue under --work once (pmatch sample,
preprocess, train and evaluate, which writes monitoring's reference; reused when there),
then writes one pool of listings per shift (pmatch.sample.shifts.write_delivery, products
the catalogue does not have; every shift from the same seed, so text-only shifts show the
same photos) and describes each pool once with the model (scores, statistics, embeddings;
the frozen features land in the feature cache). Deliveries are draws without replacement
from a pool: --unshifted unshifted ones and --per-shift per shift, at each size in
--sizes. Each delivery's signals are computed with params.yaml's monitor section, as
`pmatch monitor` computes them, without labels (detection) and with them (the labelled F1
decides). Prints the false-alarm table (unshifted deliveries flagged, per signal too) and
the detection table with each shift's labelled F1 next to it, and writes
benchmarks/results/drift.md and .json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import machine_description, write_results

ROOT = Path(__file__).resolve().parents[1]
CATALOG_PRODUCTS = 1000
CATALOG_SEED = 7


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pmatch(*arguments: str) -> None:
    command = [sys.executable, "-m", "pmatch.cli", *arguments]
    say("$ pmatch " + " ".join(arguments))
    subprocess.run(command, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)


def ensure_model(work: Path) -> None:
    """The sample catalogue, its model and its evaluation (with the reference) under work."""
    if not (work / "catalog" / "catalog.csv").is_file():
        pmatch(
            "sample", "--products", str(CATALOG_PRODUCTS), "--seed", str(CATALOG_SEED),
            "--out", str(work / "catalog"),
        )  # fmt: skip
    if not (work / "preprocessed" / "items.csv").is_file():
        pmatch(
            "preprocess", "--catalog", str(work / "catalog"), "--out", str(work / "preprocessed")
        )
    if not (work / "model" / "model.keras").is_file():
        pmatch("train", "--data", str(work / "preprocessed"), "--out", str(work / "model"))
    if not (work / "evaluate" / "reference_listings.csv").is_file():
        pmatch(
            "evaluate", "--model", str(work / "model"), "--data", str(work / "preprocessed"),
            "--catalog", str(work / "catalog"), "--out", str(work / "evaluate"),
        )  # fmt: skip


def described_pool(matcher, work: Path, shift: str, listings: int, seed: int):
    """The pool of a shift, written and described once (kept under work/pools)."""
    import pandas as pd

    from pmatch.catalog.format import read_catalog
    from pmatch.monitor.reference import LISTING_COLUMNS, Listings, describe_listings
    from pmatch.sample.shifts import write_delivery

    folder = work / "pools" / f"{shift}-{listings}-{seed}"
    described = folder.with_name(folder.name + ".described")
    if (described / "listings.csv").is_file():
        frame = pd.read_csv(
            described / "listings.csv",
            dtype={column: str for column in LISTING_COLUMNS},
            keep_default_na=False,
        )
        with np.load(described / "embeddings.npz") as arrays:
            return Listings(frame, arrays["image"], arrays["text"])
    if not (folder / "catalog.csv").is_file():
        say(f"writing the {shift} pool ({listings} listings)")
        write_delivery(folder, shift=shift, listings=listings, seed=seed)
    say(f"describing the {shift} pool")
    pool = describe_listings(matcher, folder, read_catalog(folder))
    described.mkdir(parents=True, exist_ok=True)
    pool.frame.to_csv(described / "listings.csv", index=False)
    np.savez(described / "embeddings.npz", image=pool.image_embeddings, text=pool.text_embeddings)
    return pool


def delivery_f1(listings, threshold: float) -> float:
    from pmatch.evaluate import classification_metrics

    labels = listings.frame["label"].astype(int).to_numpy()
    return classification_metrics(labels, listings.frame["score"].to_numpy(), threshold)["f1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache/pmatch-bench/drift")
    parser.add_argument("--unshifted", type=int, default=100, help="unshifted deliveries per size")
    parser.add_argument("--per-shift", type=int, default=10, help="deliveries per shift and size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 50, 100, 200, 360])
    parser.add_argument("--unshifted-pool", type=int, default=3000)
    parser.add_argument("--shifted-pool", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()

    from pmatch.config import load_params
    from pmatch.features.store import open_default_store
    from pmatch.model.inference import Matcher
    from pmatch.monitor.decide import run_drift
    from pmatch.monitor.reference import load_reference
    from pmatch.monitor.signals import compute_signals
    from pmatch.sample.shifts import SHIFTS

    params = load_params(ROOT / "params.yaml").monitor
    ensure_model(args.work)
    metrics = json.loads((args.work / "evaluate" / "metrics.json").read_text())
    matcher = Matcher.load(
        args.work / "model", threshold=metrics["threshold"], feature_store=open_default_store()
    )
    reference = load_reference(args.work / "evaluate")
    rows = []
    for shift in SHIFTS:
        pool_size = args.unshifted_pool if shift == "none" else args.shifted_pool
        pool = described_pool(matcher, args.work, shift, pool_size, args.seed)
        count = args.unshifted if shift == "none" else args.per_shift
        for size in args.sizes:
            rng = np.random.default_rng([args.seed, SHIFTS.index(shift), size])
            for draw in range(count):
                delivery = pool.subset(np.sort(rng.choice(len(pool.frame), size, replace=False)))
                labelled = compute_signals(reference, delivery, params, metrics)
                # Without labels the same signals, less the labelled F1.
                unlabelled = {name: each for name, each in labelled.items() if name != "labels_f1"}
                drift, fired = run_drift(unlabelled, params)
                labelled_drift, _ = run_drift(labelled, params)
                rows.append(
                    {
                        "shift": shift,
                        "size": size,
                        "draw": draw,
                        # Below min_listings there is no verdict, so no alarm.
                        "drift": bool(drift) and size >= params.min_listings,
                        "labelled_drift": bool(labelled_drift) and size >= params.min_listings,
                        # What the signals alone say, as if there were no minimum size.
                        "signals_drift": bool(drift),
                        "fired": fired,
                        "f1": delivery_f1(delivery, metrics["threshold"]),
                        "values": {name: signal["value"] for name, signal in unlabelled.items()},
                    }
                )
    payload = summarize(rows, params, args)
    payload["seconds"] = round(time.perf_counter() - started, 1)
    text = render(payload)
    print(text)
    write_results("drift", text, payload)


def summarize(rows: list[dict], params, args) -> dict:
    import pandas as pd

    frame = pd.DataFrame(rows)
    unshifted_f1 = frame.loc[(frame["shift"] == "none") & (frame["size"] == 360), "f1"].mean()
    table = []
    for (shift, size), group in frame.groupby(["shift", "size"], sort=False):
        fired = pd.Series([name for names in group["fired"] for name in names]).value_counts()
        table.append(
            {
                "shift": shift,
                "size": int(size),
                "deliveries": len(group),
                "flagged": round(float(group["drift"].mean()), 3),
                "flagged_with_labels": round(float(group["labelled_drift"].mean()), 3),
                "flagged_without_minimum": round(float(group["signals_drift"].mean()), 3),
                "f1": round(float(group["f1"].mean()), 3),
                "f1_drop": round(float(unshifted_f1 - group["f1"].mean()), 3),
                "signals_fired": {name: int(count) for name, count in fired.items()},
            }
        )
    unshifted = frame[(frame["shift"] == "none") & (frame["size"] == 360)]
    values = pd.DataFrame(list(unshifted["values"]))
    calibration = {
        name: {
            "threshold": params.thresholds[name],
            "unshifted_p95": round(float(values[name].quantile(0.95)), 4),
            "unshifted_max": round(float(values[name].max()), 4),
            "unshifted_fired": int((values[name] > params.thresholds[name]).sum()),
        }
        for name in values.columns
    }
    values = pd.DataFrame(
        [{"shift": row["shift"], "size": row["size"], **row["values"]} for row in rows]
    )
    # Each signal's spread per shift and size (min, median, 95th percentile, max): what
    # the thresholds were set from, without every run's numbers.
    spread = {
        f"{shift} {size}": {
            name: [round(float(group[name].quantile(q)), 4) for q in (0, 0.5, 0.95, 1)]
            for name in group.columns.drop(["shift", "size"])
        }
        for (shift, size), group in values.groupby(["shift", "size"], sort=False)
    }
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_description(),
        "command": "benchmarks/drift.py " + " ".join(sys.argv[1:]),
        "params": {
            "min_listings": params.min_listings,
            "drift_method": params.drift_method,
            "thresholds": dict(params.thresholds),
            "min_signals": params.min_signals,
            "max_f1_drop": params.max_f1_drop,
        },
        "pools": {"unshifted": args.unshifted_pool, "shifted": args.shifted_pool},
        "unshifted_f1": round(float(unshifted_f1), 3),
        "table": table,
        "calibration": calibration,
        "signal_spread": spread,
    }


def render(payload: dict) -> str:
    lines = [
        f"Drift monitoring, {payload['date']}, {payload['machine']}",
        f"command: {payload['command']}",
        f"deliveries drawn from pools of {payload['pools']['unshifted']} unshifted and "
        f"{payload['pools']['shifted']} listings per shift; min_listings "
        f"{payload['params']['min_listings']} (smaller: no verdict); unshifted F1 at 360: "
        f"{payload['unshifted_f1']}",
        "",
        "| shift | size | deliveries | flagged | flagged with labels | labelled F1 | F1 drop "
        "| flagged without a minimum size | signals fired (count) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["table"]:
        fired = ", ".join(f"{name} {count}" for name, count in row["signals_fired"].items())
        if row["size"] < payload["params"]["min_listings"]:
            flagged = labelled = "no verdict"
        else:
            flagged, labelled = f"{row['flagged']:.0%}", f"{row['flagged_with_labels']:.0%}"
        lines.append(
            f"| {row['shift']} | {row['size']} | {row['deliveries']} | {flagged} | "
            f"{labelled} | {row['f1']:.3f} | {row['f1_drop']:+.3f} | "
            f"{row['flagged_without_minimum']:.0%} | {fired or '-'} |"
        )
    lines += [
        "",
        "signals fired: counted whatever the size, also where min_listings gives no verdict.",
        "",
        "Unshifted 360-listing deliveries, per signal (value vs threshold):",
        "",
        "| signal | threshold | p95 | max | fired |",
        "|---|---|---|---|---|",
    ]
    for name, row in payload["calibration"].items():
        lines.append(
            f"| {name} | {row['threshold']} | {row['unshifted_p95']} | {row['unshifted_max']} "
            f"| {row['unshifted_fired']} |"
        )
    lines.append(f"\n{payload['seconds']} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
