"""Throughput of `pmatch score`: pairs/s from cached embeddings against pair-by-pair scoring.

    .venv/bin/python benchmarks/score_throughput.py
    .venv/bin/python benchmarks/score_throughput.py --before 5bc8e55 --work ~/.cache/pmatch-bench/score
    .venv/bin/python benchmarks/score_throughput.py --model models/candidate --models scratch

Writes a seeded synthetic catalogue (pmatch.sample) with --images photos and a
pairs CSV of --pairs rows over those photos and their texts (each photo in --pairs/--images
rows: once with its own text, otherwise with a random one of the others), trains a small
model of each kind on a second, small catalogue (or takes --model), then measures:

- score_pairs_file end to end (read the CSV, decode and encode each distinct photo and text
  once, score the pairs from the cached embeddings, write the CSV): median pairs/s over
  --runs runs, each in a fresh process, with the seconds spent encoding photos, encoding
  texts and scoring pairs, and the process's peak RSS; once more on --small-pairs rows
  over the same photos, to show that memory follows the batch, not the number of pairs;
- the baseline: the full saved model (model.keras) called on one pair at a time, timed on
  --baseline-pairs pairs and extrapolated to the whole file;
- with --before REF: the same runs with the scoring code (SCORING_FILES) as it was at git
  REF, the rest of the package as in the working tree, and the largest score difference.

Prints one table and writes it, with every run, to benchmarks/results/<--name>.md and
.json (default name: score-throughput). Work files (catalogues, models, pairs) go to
--work, or a temporary folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_description, peak_rss_mb, write_results

ROOT = Path(__file__).resolve().parents[1]
KINDS = {
    "scratch": {"image_features": "pixels", "text_features": "tokens", "image_size": 64},
    "pretrained": {
        "image_features": "efficientnet_lite0",
        "text_features": "minilm",
        "image_size": 224,
    },
}
KIND_NAMES = {"scratch": "from scratch", "pretrained": "pretrained"}
WARM = "working tree, warm feature cache"
# The files `pmatch score` runs through; --before takes these from the given git revision.
# A file that a revision does not have is left out of its copy (score.py is newer than the
# others; before it, score_pairs_file lived in monitor.py).
SCORING_FILES = (
    "src/pmatch/score.py",
    "src/pmatch/monitor.py",
    "src/pmatch/model/inference.py",
    "src/pmatch/features/images.py",
    "src/pmatch/features/encoders.py",
    "src/pmatch/features/lite.py",
)
# A model folder written by train_model has no metrics.json; throughput does not depend on
# where the decision threshold lies, so such a model scores with this one.
DEFAULT_THRESHOLD = 0.5
WARMUP_PAIRS = 5
SECONDS = (
    "photo_encoding_seconds",
    "text_encoding_seconds",
    "pair_scoring_seconds",
    "other_seconds",
    "load_seconds",
)
ROWS_PER_PRODUCT = 1.3  # below the ~1.5 rows per product of the sample generator, for margin


def total_memory_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2
    return float("nan")


def write_catalogue(folder: Path, products: int, seed: int) -> int:
    """A sample catalogue of `products` products (kept if already there); returns its photos."""
    import pandas as pd

    from pmatch.sample import write_sample

    if not (folder / "catalog.csv").is_file():
        write_sample(folder, products=products, seed=seed, batch_pairs=1)
    return len(pd.read_csv(folder / "catalog.csv", usecols=["image_path"]))


def write_pairs(catalog: Path, photos: int, count: int, seed: int) -> Path:
    """catalog/pairs-<count>.csv: each of the first `photos` rows' photo in count/photos
    pairs, once with its own text and otherwise with a random other text; rows shuffled."""
    import pandas as pd

    from pmatch.catalog.format import item_text, read_catalog

    path = catalog / f"pairs-{count}.csv"
    if path.is_file():
        return path
    if count % photos:
        raise ValueError(f"--pairs and --small-pairs must be multiples of --images ({photos})")
    frame = read_catalog(catalog).iloc[:photos].reset_index(drop=True)
    texts = item_text(frame).to_numpy()
    rng = np.random.default_rng(seed)
    image_rows = np.repeat(np.arange(photos), count // photos)
    own = np.arange(count) % (count // photos) == 0
    text_rows = np.where(own, image_rows, rng.integers(0, photos, count))
    order = rng.permutation(count)
    pd.DataFrame(
        {
            "pair_id": np.arange(count),
            "image_path": frame["image_path"].to_numpy()[image_rows[order]],
            "text": texts[text_rows[order]],
        }
    ).to_csv(path, index=False)
    return path


def train(kind: str, catalog: Path, out: Path, epochs: int, inputs: dict | None = None) -> Path:
    """A small model of this kind trained on catalog (quality is beside the point here).
    inputs: preprocess settings that replace the kind's (image_size, max_tokens)."""
    from pmatch.artifacts import MODEL_FILE
    from pmatch.config import load_params
    from pmatch.features.dataset import build_dataset, load_dataset
    from pmatch.model.training import train_model

    if (out / MODEL_FILE).is_file():
        return out
    say(f"{KIND_NAMES[kind]}: training a small model on {catalog.name}")
    params = load_params(ROOT / "params.yaml")
    preprocessed = out.with_name(out.name + "-preprocessed")
    settings = {**KINDS[kind], **(inputs or {})}
    build_dataset(catalog, dataclasses.replace(params.preprocess, **settings), preprocessed)
    train_model(
        load_dataset(preprocessed),
        dataclasses.replace(params.train, num_epochs=epochs),
        out,
        verbose=0,
    )
    shutil.rmtree(preprocessed)
    return out


def load_matcher(model_dir: Path):
    from pmatch.model.inference import Matcher

    try:
        from pmatch.features.store import open_default_store
    except ImportError:  # --before code older than the feature cache
        matcher = Matcher.load(model_dir)
    else:
        # PMATCH_FEATURE_CACHE, set by child(): 'off' for cold runs, a file for warm ones.
        matcher = Matcher.load(model_dir, feature_store=open_default_store())
    if matcher.threshold is None:
        matcher.threshold = DEFAULT_THRESHOLD
    return matcher


def measure_score(model_dir: Path, pairs_csv: Path, out_csv: Path, chunk_rows: int) -> dict:
    """One score_pairs_file run (in a child process), with where its time went."""
    try:
        from pmatch.score import score_pairs_file
    except ImportError:  # --before code older than pmatch.score
        from pmatch.monitor import score_pairs_file

    started = time.perf_counter()
    matcher = load_matcher(model_dir)
    load_seconds = time.perf_counter() - started
    seconds = {"photo_encoding": 0.0, "text_encoding": 0.0, "pair_scoring": 0.0}

    def timed(part, method):
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[part] += time.perf_counter() - started

        return call

    matcher.embed_images = timed("photo_encoding", matcher.embed_images)
    matcher.embed_texts = timed("text_encoding", matcher.embed_texts)
    matcher.score_embeddings = timed("pair_scoring", matcher.score_embeddings)
    started = time.perf_counter()
    summary = score_pairs_file(matcher, pairs_csv, out_csv, chunk_rows=chunk_rows)
    total = time.perf_counter() - started
    return {
        "pairs": summary["pairs"],
        "seconds": round(total, 3),
        "pairs_per_second": round(summary["pairs"] / total, 1),
        **{f"{part}_seconds": round(value, 3) for part, value in seconds.items()},
        # Photo decoding, CSV reading and writing, cache look-ups.
        "other_seconds": round(total - sum(seconds.values()), 3),
        "load_seconds": round(load_seconds, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def measure_pair_by_pair(model_dir: Path, pairs_csv: Path, count: int) -> dict:
    """The full saved model called on one (photo, text) pair at a time (in a child process)."""
    import keras
    import pandas as pd

    from pmatch.artifacts import MODEL_FILE
    from pmatch.features.images import load_image

    matcher = load_matcher(model_dir)  # Registers the custom layers; has the tokenizers.
    model = keras.saving.load_model(model_dir / MODEL_FILE, safe_mode=True)
    names = {tensor.name for tensor in model.inputs}
    known = {"image", "tokens", "input_ids", "attention_mask"}
    if not names <= known:
        raise RuntimeError(f"{model_dir}: model inputs {sorted(names - known)} are not handled")
    pairs = pd.read_csv(pairs_csv, dtype=str, keep_default_na=False, nrows=WARMUP_PAIRS + count)

    def score(row) -> float:
        inputs = {"image": load_image(pairs_csv.parent / row.image_path, matcher.image_size)[None]}
        if matcher.wordpiece is None:
            inputs["tokens"] = matcher.vocabulary.encode([row.text], matcher.max_tokens)
        else:
            ids, mask = matcher.wordpiece.encode([row.text], matcher.max_tokens)
            inputs.update(input_ids=ids, attention_mask=mask)
        return float(np.asarray(model(inputs, training=False)).reshape(-1)[0])

    for row in pairs.iloc[:WARMUP_PAIRS].itertuples():
        score(row)
    started = time.perf_counter()
    scores = [score(row) for row in pairs.iloc[WARMUP_PAIRS:].itertuples()]
    seconds = time.perf_counter() - started
    return {
        "pairs": len(scores),
        "seconds": round(seconds, 3),
        "pairs_per_second": round(len(scores) / seconds, 2),
        "pair_ids": pairs["pair_id"].iloc[WARMUP_PAIRS:].astype(int).tolist(),
        "scores": scores,
        "peak_rss_mb": peak_rss_mb(),
    }


def child(
    arguments: list[str],
    memory_limit_mb: float,
    pythonpath: Path | None = None,
    feature_cache: Path | None = None,
) -> dict:
    """Runs this script's --child mode in a fresh process; returns its JSON result.

    feature_cache: the frozen-feature cache file it uses (None: none, every photo and text
    is encoded).

    The child is stopped once its resident memory passes memory_limit_mb, before it can
    exhaust the machine's; the result then says {"stopped": true, "rss_mb", "seconds"}.
    """
    environment = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PMATCH_FEATURE_CACHE": str(feature_cache) if feature_cache else "off",
    }
    if pythonpath is not None:
        environment["PYTHONPATH"] = str(pythonpath)
    started = time.perf_counter()
    # Files, not pipes: a child that fills a pipe while no one reads it would hang.
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, __file__, "--child", *arguments],
            stdout=stdout,
            stderr=stderr,
            text=True,
            env=environment,
        )
        while process.poll() is None:
            rss = resident_mb(process.pid)
            if rss > memory_limit_mb:
                process.kill()
                process.wait()
                return {
                    "stopped": True,
                    "rss_mb": round(rss, 1),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            time.sleep(0.1)
        stdout.seek(0)
        stderr.seek(0)
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(arguments)} failed:\n{stderr.read()[-3000:]}")
        return json.loads(stdout.read().strip().splitlines()[-1])


def resident_mb(pid: int) -> float:
    """A process's resident memory now (0 once it has gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def source_at(revision: str, folder: Path) -> Path:
    """A copy of the working tree's src/ with SCORING_FILES as they were at revision."""
    known = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
    )
    if known.returncode != 0:
        raise SystemExit(f"--before {revision}: not a commit of this repository; name one")
    target = folder / "src"
    shutil.copytree(ROOT / "src", target, ignore=shutil.ignore_patterns("__pycache__"))
    for name in SCORING_FILES:
        shown = subprocess.run(
            ["git", "show", f"{revision}:{name}"], cwd=ROOT, capture_output=True, text=True
        )
        if shown.returncode != 0:
            # The file did not exist at revision: its code lived elsewhere then.
            (folder / name).unlink(missing_ok=True)
            continue
        (folder / name).write_text(shown.stdout)
    return target


def median_run(runs: list[dict]) -> dict:
    """The run with the median pairs/s (the middle one; the slower middle for even counts)."""
    ordered = sorted(runs, key=lambda run: run["pairs_per_second"])
    return ordered[(len(ordered) - 1) // 2]


def compare_scores(first: Path, second: Path) -> float:
    import pandas as pd

    return float(
        np.max(np.abs(pd.read_csv(first)["score"].to_numpy() - pd.read_csv(second)["score"]))
    )


def measure_model(
    label: str, model_dir: Path, files: dict, args, work: Path, code: dict
) -> tuple[list[dict], dict]:
    """Every measurement of one model, for each code version in `code` ({name: PYTHONPATH})."""
    import pandas as pd

    rows, details = [], {"model": str(model_dir), "code": {}}
    baseline = child(
        ["pair-by-pair", str(model_dir), str(files["pairs"]), str(args.baseline_pairs)],
        args.memory_limit_mb,
    )
    say(f"{label}: pair by pair {baseline['pairs_per_second']:.1f} pairs/s")
    outputs = {}
    variants = [(version, pythonpath, None) for version, pythonpath in code.items()]
    if args.feature_cache and label == KIND_NAMES["pretrained"]:
        # The working tree once more, with the frozen-feature cache filled by an untimed
        # first run: what monitoring sees when batches show photos and texts seen before.
        store = work / f"features-{model_dir.name}.sqlite"
        for stale in work.glob(f"{store.name}*"):
            stale.unlink()
        variants.append((WARM, None, store))
    for version, pythonpath, store in variants:
        row = {"model": label, "code": version}
        runs = []
        if store is not None:
            command = ["score", str(model_dir), str(files["pairs"]), str(work / "fill.csv")]
            filled = child([*command, str(args.chunk_rows)], args.memory_limit_mb, None, store)
            say(f"{label}: feature cache filled in {filled['seconds']:.0f} s")
        for run in range(args.runs):
            out = work / f"scores-{version}-{run}.csv"
            command = ["score", str(model_dir), str(files["pairs"]), str(out), str(args.chunk_rows)]
            runs.append(child(command, args.memory_limit_mb, pythonpath, store))
            if runs[-1].get("stopped"):
                say(f"{label} ({version}): stopped at {runs[-1]['rss_mb']:.0f} MB")
                break
            say(
                f"{label} ({version}) run {run + 1}/{args.runs}: "
                f"{runs[-1]['pairs_per_second']:.0f} pairs/s, {runs[-1]['peak_rss_mb']:.0f} MB"
            )
        details["code"][version] = {"runs": runs}
        if runs[-1].get("stopped"):
            rows.append({**row, "stopped": runs[-1]})
            continue
        outputs[version] = work / f"scores-{version}-0.csv"
        small = child(
            [
                "score",
                str(model_dir),
                str(files["small_pairs"]),
                str(work / f"scores-{version}-small.csv"),
                str(args.chunk_rows),
            ],
            args.memory_limit_mb,
            pythonpath,
            store,
        )
        details["code"][version]["small_pairs_run"] = small
        middle = median_run(runs)
        row.update({key: middle[key] for key in (*SECONDS, "pairs", "pairs_per_second")})
        row.update(
            {
                "peak_rss_mb": middle["peak_rss_mb"],
                "small_pairs": args.small_pairs,
                "small_pairs_peak_rss_mb": small.get("peak_rss_mb"),
                "pair_by_pair_per_second": baseline["pairs_per_second"],
                "speedup_over_pair_by_pair": round(
                    middle["pairs_per_second"] / baseline["pairs_per_second"], 1
                ),
            }
        )
        rows.append(row)
    details["pair_by_pair"] = {
        key: value for key, value in baseline.items() if key not in ("scores", "pair_ids")
    }
    warm = outputs.pop(WARM, None)
    # The cached path and the full model must agree on the pairs both scored.
    latest = outputs[list(outputs)[-1]]
    cached = pd.read_csv(latest).set_index("pair_id")["score"]
    details["pair_by_pair_max_score_difference"] = float(
        np.max(np.abs(cached.loc[baseline["pair_ids"]].to_numpy() - np.array(baseline["scores"])))
    )
    if len(outputs) == 2:
        before, after = list(outputs)
        details["before_after_max_score_difference"] = compare_scores(
            outputs[before], outputs[after]
        )
        after_row = next(row for row in rows if row["code"] == after)
        after_row["speedup_over_before"] = round(
            after_row["pairs_per_second"] / rows[0]["pairs_per_second"], 2
        )
    if warm is not None:
        details["warm_cold_max_score_difference"] = compare_scores(latest, warm)
        cold = next(row for row in rows if row["code"] == "working tree")
        if "pairs_per_second" in cold and "pairs_per_second" in rows[-1]:
            rows[-1]["speedup_over_cold"] = round(
                rows[-1]["pairs_per_second"] / cold["pairs_per_second"], 1
            )
    return rows, details


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def markdown(rows: list[dict], header: str, notes: list[str]) -> str:
    lines = [
        header,
        "",
        "| model | code | pairs/s | photo enc. s | text enc. s | pair scoring s | other s "
        "| load s | peak RSS MB | peak RSS MB, small file | pair-by-pair pairs/s | x pair-by-pair "
        "| x before |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "stopped" in row:
            stopped = row["stopped"]
            cells = [
                row["model"],
                row["code"],
                f"stopped: resident memory {stopped['rss_mb']:,.0f} MB after "
                f"{stopped['seconds']:.0f} s",
                *[""] * 10,
            ]
        else:
            cells = [
                row["model"],
                row["code"],
                f"{row['pairs_per_second']:,.0f}",
                *[f"{row[key]:.2f}" for key in SECONDS[:4]],
                f"{row['load_seconds']:.1f}",
                f"{row['peak_rss_mb']:,.0f}",
                f"{row['small_pairs_peak_rss_mb']:,.0f}",
                f"{row['pair_by_pair_per_second']:.1f}",
                f"{row['speedup_over_pair_by_pair']:,.0f}",
                f"{row['speedup_over_before']:.2f}"
                if "speedup_over_before" in row
                else (
                    f"{row['speedup_over_cold']:.1f} (x cold)" if "speedup_over_cold" in row else ""
                ),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *notes])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=2000, help="distinct photos in the pairs")
    parser.add_argument("--pairs", type=int, default=50_000, help="rows of the pairs file")
    parser.add_argument(
        "--small-pairs", type=int, default=10_000, help="rows of the memory-check pairs file"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per model (median)")
    parser.add_argument(
        "--baseline-pairs", type=int, default=300, help="pairs timed one by one (extrapolated)"
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=20_000, help="score_pairs_file's chunk_rows"
    )
    parser.add_argument(
        "--models", nargs="*", default=list(KINDS), choices=list(KINDS), help="model kinds"
    )
    parser.add_argument(
        "--model", type=Path, help="an existing model folder to measure instead of training one"
    )
    parser.add_argument("--train-products", type=int, default=300)
    parser.add_argument("--train-epochs", type=int, default=2)
    parser.add_argument(
        "--feature-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure the pretrained model with a warm frozen-feature cache",
    )
    parser.add_argument("--before", metavar="REF", help="also measure SCORING_FILES at git REF")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--memory-limit-mb",
        type=float,
        default=10_000,
        help="stop a scoring process whose resident memory passes this",
    )
    parser.add_argument(
        "--work", type=Path, help="folder for catalogues, models and pairs, kept for reruns"
    )
    parser.add_argument(
        "--image-size", type=int, help="the pretrained model's image_size (default 224)"
    )
    parser.add_argument(
        "--max-tokens", type=int, help="the pretrained model's max_tokens (default: params.yaml's)"
    )
    parser.add_argument(
        "--name", default="score-throughput", help="results file name (without extension)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, model_dir, *rest = args.child
        if mode == "score":
            result = measure_score(Path(model_dir), Path(rest[0]), Path(rest[1]), int(rest[2]))
        else:
            result = measure_pair_by_pair(Path(model_dir), Path(rest[0]), int(rest[1]))
        print(json.dumps(result))
        return
    if args.model is not None and len(args.models) != 1:
        parser.error("--model measures one model; name its kind with --models scratch|pretrained")
    if args.model is not None and (args.image_size or args.max_tokens):
        parser.error("--image-size and --max-tokens train a model; --model measures a given one")

    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="pmatch-bench-") as temporary:
        work = (args.work or Path(temporary)).expanduser().resolve()
        work.mkdir(parents=True, exist_ok=True)
        catalog = work / f"catalog-{args.images}-{args.seed}"
        photos = write_catalogue(catalog, math.ceil(args.images / ROWS_PER_PRODUCT), args.seed)
        if photos < args.images:
            raise RuntimeError(f"{catalog}: {photos} photos, fewer than --images {args.images}")
        files = {
            "pairs": write_pairs(catalog, args.images, args.pairs, args.seed),
            "small_pairs": write_pairs(catalog, args.images, args.small_pairs, args.seed),
        }
        code = {"working tree": None}
        if args.before:
            # Named by commit, so a results file that says HEAD still tells which one.
            args.before = subprocess.run(
                ["git", "rev-parse", "--short", args.before],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            code = {args.before: source_at(args.before, Path(temporary) / "before"), **code}
        rows, details = [], {}
        for kind in args.models:
            if args.model is not None:
                model_dir = args.model.resolve()
            else:
                training = work / f"train-catalog-{args.train_products}-{args.seed + 1}"
                write_catalogue(training, args.train_products, args.seed + 1)
                inputs = {}
                if kind == "pretrained":
                    given = {"image_size": args.image_size, "max_tokens": args.max_tokens}
                    inputs = {key: value for key, value in given.items() if value}
                suffix = "".join(f"-{key}-{value}" for key, value in inputs.items())
                model_dir = train(
                    kind, training, work / f"model-{kind}{suffix}", args.train_epochs, inputs
                )
            label = KIND_NAMES[kind]
            kind_rows, details[label] = measure_model(label, model_dir, files, args, work, code)
            rows += kind_rows
    machine = machine_description()
    header = (
        f"Score throughput: {args.pairs:,} pairs over {args.images:,} photos "
        f"({time.strftime('%Y-%m-%d')}, {machine})"
    )
    notes = [
        f"pairs/s: score_pairs_file end to end, median of {args.runs} runs, each in a fresh "
        f"process (chunk_rows {args.chunk_rows:,}); model loading (load s) not included. "
        "The seconds are the median run's: photo encoding (Matcher.embed_images), text "
        "encoding (embed_texts), pair scoring (score_embeddings), other (photo decoding, "
        "CSV reading and writing, cache look-ups).",
        f"peak RSS: the scoring process's VmHWM; 'small file' scores {args.small_pairs:,} "
        "pairs over the same photos.",
        f"pair-by-pair: the full model.keras called on one pair at a time (photo decoded, text "
        f"tokenized, model called), timed on {args.baseline_pairs} pairs after "
        f"{WARMUP_PAIRS} warm-up pairs and extrapolated; x pair-by-pair is the ratio.",
    ]
    for label, detail in details.items():
        note = (
            f"{label}: pair-by-pair and cached scores differ by at most "
            f"{detail['pair_by_pair_max_score_difference']:.1e}"
        )
        if "before_after_max_score_difference" in detail:
            note += (
                f"; {args.before} and working-tree scores by at most "
                f"{detail['before_after_max_score_difference']:.1e}"
            )
        if "warm_cold_max_score_difference" in detail:
            note += (
                "; scores with and without the feature cache by at most "
                f"{detail['warm_cold_max_score_difference']:.1e}"
            )
        notes.append(note + ".")
    if any("stopped" in row for row in rows):
        notes.append(
            f"stopped: the scoring process passed --memory-limit-mb ({args.memory_limit_mb:,.0f} "
            f"MB) and was killed before it could exhaust the machine's {total_memory_gb():.0f} GB."
        )
    if any("speedup_over_cold" in row for row in rows):
        notes.append(
            f"{WARM}: the frozen EfficientNet/MiniLM features come from the feature cache "
            "(PMATCH_FEATURE_CACHE), filled by one untimed run over the same file; photos are "
            "still decoded and hashed, texts tokenized, and the trained heads run. x cold "
            "(in the x before column) is its pairs/s over the uncached run's. Rows without it "
            "run with the cache off."
        )
    if args.before:
        notes.append(
            f"x before: pairs/s against the same runs with {', '.join(SCORING_FILES)} as at "
            f"{args.before}."
        )
    seconds = time.perf_counter() - started
    notes.append(
        f"Load average before / after: {load_before[0]:.1f} / {os.getloadavg()[0]:.1f}; "
        f"benchmark wall time {seconds / 60:.1f} min."
    )
    text = markdown(rows, header, notes)
    print(text)
    write_results(
        args.name,
        text,
        {
            "machine": machine,
            "date": time.strftime("%Y-%m-%d"),
            "settings": {
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(args).items()
                if key != "child"
            },
            "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
            "wall_seconds": round(seconds, 1),
            "table": rows,
            "details": details,
        },
    )


if __name__ == "__main__":
    main()
