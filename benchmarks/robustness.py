"""The default params on altered copies of a real catalogue: what an unseen catalogue may do.

    .venv/bin/python benchmarks/robustness.py
    .venv/bin/python benchmarks/robustness.py --catalog ../shared/data/luma --variants "as is" "cut-out PNGs"

Writes each variant of --catalog (default: ../shared/data/luma) under --work (photos are
linked, or rewritten where the variant changes them), then runs `pmatch validate`,
`preprocess`, `train` and `evaluate` on it with the project's params.yaml, each stage in
its own process as `dvc repro` would. Prints one table (F1, hard- and random-negative F1,
ROC-AUC, wall time; or the stage that refused the catalogue and its first error line) and
writes benchmarks/results/robustness-<catalogue>.md and .json.

Variants: the catalogue as is; without descriptions; without categories; with titles that
name no colour (colour column emptied, variants renamed v1, v2...); with large photos in
mixed formats (1200 px RGBA PNG, palette PNG, CMYK JPEG, 900x1200 JPEG); and as cut-out
PNGs whose near-white background is transparent (the transparent pixels hide black).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import machine_description, write_results
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("f1", "f1_hard_negatives", "f1_random_negatives", "roc_auc")
STAGES = ("validate", "preprocess", "train", "evaluate")
# A pixel at least this bright in every channel is background in the cut-out variant.
CUTOUT_BACKGROUND = 240


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def no_colour_words(frame: pd.DataFrame) -> pd.DataFrame:
    from pmatch.features.colour import COLOUR_TERMS

    words = re.compile(r"\b(" + "|".join(COLOUR_TERMS) + r")\b", re.IGNORECASE)
    frame = frame.copy()
    frame["title"] = (
        frame["title"]
        .str.replace(words, "", regex=True)
        .str.replace(r"\s+-\s*$", "", regex=True)
        .str.replace(r"\s{2,}", " ", regex=True)
        .str.strip()
    )
    frame["color"] = ""
    frame["variant"] = "v" + (frame.groupby("product_id").cumcount() + 1).astype(str)
    return frame


def large_mixed(source: Path, target_dir: Path, index: int) -> str:
    """The photo at source in one of four formats, chosen by index."""
    with Image.open(source) as image:
        image = image.convert("RGB")
        kind = index % 4
        if kind == 0:
            converted, suffix = image.resize((1200, 1200)).convert("RGBA"), "png"
        elif kind == 1:
            converted, suffix = image.resize((900, 1200)), "jpg"
        elif kind == 2:
            converted, suffix = image.convert("CMYK"), "jpg"
        else:
            converted, suffix = image.convert("P"), "png"
        name = f"images/{source.stem}.{suffix}"
        converted.save(target_dir / name)
    return name


def cutout(source: Path, target_dir: Path, index: int) -> str:
    """The photo as an RGBA PNG whose near-white background is transparent black."""
    with Image.open(source) as image:
        pixels = np.asarray(image.convert("RGB"))
    background = (pixels >= CUTOUT_BACKGROUND).all(axis=-1)
    rgba = np.dstack([pixels, np.full(background.shape, 255, dtype=np.uint8)])
    rgba[background] = 0
    name = f"images/{source.stem}.png"
    Image.fromarray(rgba, "RGBA").save(target_dir / name)
    return name


VARIANTS = {
    "as is": (lambda frame: frame, None),
    "no descriptions": (lambda frame: frame.assign(description=""), None),
    "no categories": (lambda frame: frame.assign(category=""), None),
    "titles name no colour": (no_colour_words, None),
    "large photos, mixed formats": (lambda frame: frame, large_mixed),
    "cut-out PNGs": (lambda frame: frame, cutout),
}


def write_variant(catalog: Path, name: str, target: Path) -> Path:
    """The variant's catalogue folder (kept if already written)."""
    if (target / "catalog.csv").is_file():
        return target
    transform, rewrite = VARIANTS[name]
    frame = transform(pd.read_csv(catalog / "catalog.csv", keep_default_na=False, dtype=str))
    shutil.rmtree(target, ignore_errors=True)
    (target / "images").mkdir(parents=True)
    written: dict[str, str] = {}
    paths = []
    for index, image_path in enumerate(frame["image_path"]):
        if image_path not in written:
            if rewrite is None:
                (target / image_path).symlink_to((catalog / image_path).resolve())
                written[image_path] = image_path
            else:
                written[image_path] = rewrite(catalog / image_path, target, index)
        paths.append(written[image_path])
    frame = frame.assign(image_path=paths)
    frame.to_csv(target / "catalog.partial.csv", index=False)
    os.replace(target / "catalog.partial.csv", target / "catalog.csv")
    return target


def run_pipeline(variant: Path, out: Path, feature_cache: Path) -> dict:
    """validate, preprocess, train, evaluate on variant; the metrics or where it stopped."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pmatch = str(Path(sys.executable).parent / "pmatch")
    environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PMATCH_FEATURE_CACHE": str(feature_cache),
    }
    commands = {
        "validate": ["--catalog", str(variant), "--out", str(out / "validate")],
        "preprocess": ["--catalog", str(variant), "--out", str(out / "data")],
        "train": ["--data", str(out / "data"), "--out", str(out / "model")],
        "evaluate": [
            "--model",
            str(out / "model"),
            "--data",
            str(out / "data"),
            "--out",
            str(out / "evaluate"),
        ],
    }
    started = time.perf_counter()
    for stage in STAGES:
        arguments = [pmatch, stage, *commands[stage], "--params", str(ROOT / "params.yaml")]
        result = subprocess.run(arguments, capture_output=True, text=True, env=environment)
        (out / f"{stage}.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            first_error = next((line for line in lines if "error" in line.lower()), lines[-1])
            return {
                "stopped_at": stage,
                "error": first_error.strip()[:300],
                "seconds": round(time.perf_counter() - started, 1),
            }
    metrics = json.loads((out / "evaluate" / "metrics.json").read_text())
    return {
        **{key: round(float(metrics[key]), 4) for key in METRICS},
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(header: str, rows: dict[str, dict]) -> str:
    lines = [
        header,
        "",
        "| variant | F1 | hard-neg F1 | random-neg F1 | ROC-AUC | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        if "stopped_at" in row:
            lines.append(
                f"| {name} | refused by `{row['stopped_at']}`: {row['error']} | | | | "
                f"{row['seconds']:.0f} |"
            )
            continue
        values = " | ".join(f"{row[key]:.3f}" for key in METRICS)
        lines.append(f"| {name} | {values} | {row['seconds']:.0f} |")
    lines += [
        "",
        "One run per variant: `pmatch validate`, `preprocess`, `train`, `evaluate` with "
        "params.yaml (its default split seed and training seed). wall s includes the feature "
        "extraction; frozen features of unchanged photos and texts come from the run's own "
        "feature cache, so later variants encode only what they change.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, default=ROOT.parent / "shared/data/luma")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("~/.cache/pmatch-bench/robustness"),
        help="where the variant catalogues and the runs' outputs go",
    )
    args = parser.parse_args()
    catalog = args.catalog.expanduser().resolve()
    if not (catalog / "catalog.csv").is_file():
        raise SystemExit(f"{catalog} has no catalog.csv; pass --catalog a catalogue folder")
    work = args.work.expanduser().resolve() / catalog.name
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = {}
    for name in args.variants:
        folder = write_variant(catalog, name, work / "catalogues" / re.sub(r"\W+", "-", name))
        say(f"{name}: running validate, preprocess, train, evaluate on {folder}")
        rows[name] = run_pipeline(folder, work / "runs" / folder.name, work / "features.sqlite")
        say(f"{name}: {rows[name]}")
    machine = machine_description()
    date = time.strftime("%Y-%m-%d")
    text = markdown(f"Default params on variants of `{catalog.name}` ({date}, {machine})", rows)
    text += f"\n\nBenchmark wall time {(time.perf_counter() - started) / 60:.1f} min."
    print(text)
    write_results(
        f"robustness-{catalog.name}",
        text,
        {"catalog": os.path.relpath(catalog, ROOT), "machine": machine, "date": date, "rows": rows},
    )


if __name__ == "__main__":
    main()
