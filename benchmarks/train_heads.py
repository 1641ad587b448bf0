"""Training the heads on frozen pretrained features: wall time on a 5,000-product catalogue.

    .venv/bin/python benchmarks/train_heads.py
    .venv/bin/python benchmarks/train_heads.py --products 5000 --runs 3 --work ~/.cache/pmatch-bench
    .venv/bin/python benchmarks/train_heads.py --members 1 --name train-heads-1-member

Writes a seeded synthetic catalogue of --products products (pmatch.sample) and
preprocesses it once with build_dataset: EfficientNet-Lite0 features of every photo at
--image-size px and MiniLM features of every text (params.yaml's preprocess section with
those feature settings). The extraction is timed (photos/s) and the dataset is kept under
--work with its timing, so reruns skip both unless the code that builds it changed.
Then trains the two-tower model on those features with train_model (params.yaml's train
section, kind two_tower; --members overrides train.ensemble_members) --runs times, each in
a fresh process: wall time (median), epochs run and peak RSS. Prints a table and writes benchmarks/results/train-heads.md and .json.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_description, peak_rss_mb, write_results

ROOT = Path(__file__).resolve().parents[1]
# What build_dataset runs: a cached dataset built by other versions of these is rebuilt.
DATASET_SOURCES = ("src/pmatch/catalog", "src/pmatch/features")
EXTRACTION_FILE = "benchmark-extraction.json"
TARGET_SECONDS = 120


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def source_fingerprint() -> str:
    """A hash of the source files that build the dataset."""
    digest = hashlib.sha256()
    for name in DATASET_SOURCES:
        path = ROOT / name
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(file.relative_to(ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def preprocess_params(image_size: int):
    from pmatch.config import load_params

    return dataclasses.replace(
        load_params(ROOT / "params.yaml").preprocess,
        image_features="efficientnet_lite0",
        text_features="minilm",
        image_size=image_size,
    )


def prepare(work: Path, products: int, seed: int, image_size: int) -> tuple[Path, dict]:
    """The preprocessed dataset under work (built unless a matching one is there) and the
    timing of its feature extraction."""
    from pmatch.features.dataset import build_dataset
    from pmatch.sample import write_sample

    catalog = work / f"catalog-{products}-{seed}"
    dataset_dir = work / f"features-{products}-{seed}-{image_size}"
    params = preprocess_params(image_size)
    fingerprint = source_fingerprint()
    timing_file = dataset_dir / EXTRACTION_FILE
    if timing_file.is_file():
        timing = json.loads(timing_file.read_text())
        if timing["fingerprint"] == fingerprint and timing["params"] == dataclasses.asdict(params):
            say(f"reusing {dataset_dir} (features extracted on {timing['date']})")
            return dataset_dir, timing
        say(f"{dataset_dir}: built by other code or settings; rebuilding")
    if not (catalog / "catalog.csv").is_file():
        say(f"writing a {products}-product sample catalogue to {catalog}")
        write_sample(catalog, products=products, seed=seed, batch_pairs=1)

    # build_dataset reports photo progress; the last report marks the end of the photos.
    photos_done = {}

    def progress(done: int, total: int) -> None:
        photos_done.update(done=done, total=total, at=time.perf_counter())
        if done == total or done % 1024 == 0:
            say(f"  photo features: {done}/{total}")

    say(f"extracting features (EfficientNet-Lite0 at {image_size} px, MiniLM) into {dataset_dir}")
    started = time.perf_counter()
    summary = build_dataset(catalog, params, dataset_dir, progress=progress)
    seconds = time.perf_counter() - started
    photos_seconds = photos_done["at"] - started if photos_done else float("nan")
    timing = {
        "date": time.strftime("%Y-%m-%d"),
        "fingerprint": fingerprint,
        "params": dataclasses.asdict(params),
        "photos": summary["images"],
        "texts": summary["rows"],
        "seconds": round(seconds, 1),
        "photo_seconds": round(photos_seconds, 1),
        "photos_per_second": round(summary["images"] / photos_seconds, 1),
        "text_and_rest_seconds": round(seconds - photos_seconds, 1),
        "texts_per_second": round(summary["rows"] / (seconds - photos_seconds), 1),
        "summary": summary,
    }
    timing_file.write_text(json.dumps(timing, indent=2))
    return dataset_dir, timing


def train_once(dataset_dir: Path, members: int) -> dict:
    """One training run (in a child process): train_model on the prepared features, with
    members ensemble members (0: params.yaml's train.ensemble_members)."""
    from pmatch.config import load_params
    from pmatch.features.dataset import load_dataset
    from pmatch.model.training import train_model

    started = time.perf_counter()
    dataset = load_dataset(dataset_dir)
    load_seconds = time.perf_counter() - started
    params = dataclasses.replace(load_params(ROOT / "params.yaml").train, kind="two_tower")
    if members:
        params = dataclasses.replace(params, ensemble_members=members)
    with tempfile.TemporaryDirectory(prefix="pmatch-heads-") as out:
        started = time.perf_counter()
        summary = train_model(dataset, params, out, verbose=0)
        seconds = time.perf_counter() - started
    return {
        "train_seconds": round(seconds, 1),
        "dataset_load_seconds": round(load_seconds, 1),
        "peak_rss_mb": peak_rss_mb(),
        "summary": summary,
    }


def run_child(dataset_dir: Path, members: int) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", str(dataset_dir), "--members", str(members)],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if output.returncode != 0:
        raise RuntimeError(f"training on {dataset_dir} failed:\n{output.stderr[-3000:]}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def markdown(header: str, row: dict, timing: dict, runs: list[dict]) -> str:
    summary = runs[0]["summary"]
    extraction = timing["summary"]
    train = summary.get("train_rows", 0)
    return "\n".join(
        [
            header,
            "",
            "| products | catalogue rows | train rows | ensemble members | train s (median) "
            "| train s (runs) | contrastive epochs | match-head epochs | peak RSS MB | under 2 min |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {row['products']:,} | {extraction['rows']:,} | {train:,} "
            f"| {summary.get('ensemble_members', 1)} "
            f"| {row['train_seconds']:.1f} | {', '.join(f'{run:.1f}' for run in row['runs'])} "
            f"| {summary.get('epochs_run')} | {summary.get('match_head_epochs')} "
            f"| {row['peak_rss_mb']:,.0f} | {'yes' if row['train_seconds'] < TARGET_SECONDS else 'no'} |",
            "",
            f"Feature extraction (preprocess, build_dataset; {timing['date']}): "
            f"{timing['photos']:,} photos with EfficientNet-Lite0 at "
            f"{timing['params']['image_size']} px in {timing['photo_seconds']:.0f} s = "
            f"**{timing['photos_per_second']:.1f} photos/s** (loading the network included); "
            f"{timing['texts']:,} texts with MiniLM and the rest of preprocess in "
            f"{timing['text_and_rest_seconds']:.0f} s ({timing['texts_per_second']:.1f} texts/s); "
            f"{timing['seconds'] / 60:.1f} min in all.",
            "",
            "train s: train_model's wall time (contrastive heads, colour head and match head of "
            "each ensemble member, saving the model folder with the frozen backbones), each run "
            "in a fresh process, same seed; the epochs are the first member's; the "
            "features are loaded before the clock starts "
            f"({runs[0]['dataset_load_seconds']:.1f} s). Best validation AUC of the match head: "
            f"{summary.get('match_head_val_auc')}.",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=17, help="the sample catalogue's seed")
    parser.add_argument(
        "--image-size", type=int, default=224, help="EfficientNet input size (224 in pmatch)"
    )
    parser.add_argument("--runs", type=int, default=3, help="training runs (median)")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("~/.cache/pmatch-bench"),
        help="where the catalogue and its features are kept between runs",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=0,
        help="train.ensemble_members for the runs (default: params.yaml's)",
    )
    parser.add_argument("--name", default="train-heads", help="results file name")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(train_once(args.child, args.members)))
        return

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    work = args.work.expanduser().resolve() / "train-heads"
    work.mkdir(parents=True, exist_ok=True)
    dataset_dir, timing = prepare(work, args.products, args.seed, args.image_size)
    runs = []
    for run in range(args.runs):
        runs.append(run_child(dataset_dir, args.members))
        say(
            f"run {run + 1}/{args.runs}: {runs[-1]['train_seconds']:.1f} s, "
            f"{runs[-1]['summary'].get('epochs_run')} + "
            f"{runs[-1]['summary'].get('match_head_epochs')} epochs, "
            f"{runs[-1]['peak_rss_mb']:.0f} MB"
        )
    seconds = sorted(run["train_seconds"] for run in runs)
    row = {
        "products": args.products,
        "train_seconds": seconds[(len(seconds) - 1) // 2],
        "runs": [run["train_seconds"] for run in runs],
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
    }
    machine = machine_description()
    header = f"Training the heads on frozen features ({time.strftime('%Y-%m-%d')}, {machine})"
    text = markdown(header, row, timing, runs)
    wall = time.perf_counter() - started
    text += (
        f"\n\nLoad average before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}; "
        f"benchmark wall time {wall / 60:.1f} min."
    )
    print(text)
    write_results(
        args.name,
        text,
        {
            "machine": machine,
            "date": time.strftime("%Y-%m-%d"),
            "settings": {
                "products": args.products,
                "seed": args.seed,
                "image_size": args.image_size,
                "runs": args.runs,
                "members": args.members,
            },
            "load_average": {"before": load_before, "after": os.getloadavg()[0]},
            "wall_seconds": round(wall, 1),
            "result": row,
            "feature_extraction": timing,
            "runs": runs,
        },
    )


if __name__ == "__main__":
    main()
