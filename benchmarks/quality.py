"""Matching quality on one catalogue: pmatch's models side by side with baselines.

    .venv/bin/python benchmarks/quality.py --catalog data/sample --splits 1
    .venv/bin/python benchmarks/quality.py --catalog ../shared/data/luma --splits 3
    .venv/bin/python benchmarks/quality.py --catalog ../shared/data/luma \
        --rows "pmatch pretrained" --set preprocess.max_tokens=16 --name quality-luma-tokens16

Every row is measured on the same seeded splits (disjoint by product) with the same
protocol: per test item one match, one random and one hard negative; the threshold is
chosen on validation. Each (row, split) trains in its own process so peak RSS is its own.
Prints one table (mean +- standard deviation over splits) and writes it, with every
number, to benchmarks/results/quality-<catalogue>.json and .md.

--set SECTION.KEY=VALUE (repeatable) changes a preprocess or train param of params.yaml for
the pretrained pmatch rows only, after the row's own settings, so one row can be compared
with itself at another setting on the same splits (the baselines keep theirs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine_description, peak_rss_mb, write_results

ROOT = Path(__file__).resolve().parents[1]
ROWS = {
    "pmatch pretrained": {"features": "pretrained", "kind": "two_tower"},
    # train.colour_negatives 0: the match head sees random and hard negatives only.
    "pmatch pretrained, no colour negatives": {
        "features": "pretrained",
        "kind": "two_tower",
        "train": {"colour_negatives": 0.0},
    },
    # train.ensemble_members 1 and 3, around params.yaml's 2.
    "pmatch pretrained, 1 member": {
        "features": "pretrained",
        "kind": "two_tower",
        "train": {"ensemble_members": 1},
    },
    "pmatch pretrained, 3 members": {
        "features": "pretrained",
        "kind": "two_tower",
        "train": {"ensemble_members": 3},
    },
    # The default model, each pair's score weighed against the other colour variants of its
    # products (benchmarks/variants.py; text and photo weight 0.25 each). Scoring only.
    "pmatch pretrained, variant contrast": {
        "features": "pretrained",
        "kind": "two_tower",
        "variant_contrast": (0.25, 0.25),
    },
    "pmatch from scratch": {"features": "scratch", "kind": "two_tower"},
    "seed_concat": {"features": "scratch", "kind": "seed_concat"},
    "colour hist + TF-IDF GBM": {"features": "scratch", "kind": "gbm"},
    "always match": {"features": "scratch", "kind": "always_match"},
}
# EfficientNet-Lite0 reads 224 px photos; the from-scratch CNNs small ones (as in
# params.yaml's comment).
PRETRAINED_IMAGE_SIZE = 224
SCRATCH_IMAGE_SIZE = 64
COLUMNS = ("f1", "f1_hard_negatives", "roc_auc", "recall_at_5_image_to_text")


def parse_settings(settings: list[str]) -> dict[str, dict]:
    """--set's SECTION.KEY=VALUE strings as {section: {key: value}}, checked against
    pmatch.config (the error names the setting)."""
    import yaml

    from pmatch.config import ConfigError, parse_params

    changes: dict[str, dict] = {}
    for setting in settings:
        name, equals, value = setting.partition("=")
        section, dot, key = name.partition(".")
        if not (equals and dot and section in ("preprocess", "train")):
            raise SystemExit(
                f"--set {setting!r}: write preprocess.KEY=VALUE or train.KEY=VALUE, "
                "e.g. preprocess.max_tokens=16"
            )
        changes.setdefault(section, {})[key] = yaml.safe_load(value)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in changes.items():
        raw[section] = {**raw[section], **values}
    try:
        parse_params(raw)
    except ConfigError as error:
        raise SystemExit(f"--set: {error}") from None
    return changes


def build(
    catalog: Path, features: str, seed: int, out: Path, params, settings: dict | None = None
) -> float:
    """Preprocesses the catalogue for one split seed; returns feature extraction seconds.
    settings: parse_settings' preprocess values, applied to pretrained features."""
    from pmatch.features.dataset import build_dataset

    pretrained = features == "pretrained"
    preprocess = dataclasses.replace(
        params.preprocess,
        seed=seed,
        image_features="efficientnet_lite0" if pretrained else "pixels",
        text_features="minilm" if pretrained else "tokens",
        image_size=PRETRAINED_IMAGE_SIZE if pretrained else SCRATCH_IMAGE_SIZE,
    )
    if pretrained and settings:
        preprocess = dataclasses.replace(preprocess, **settings)
    started = time.perf_counter()
    build_dataset(catalog, preprocess, out)
    return time.perf_counter() - started


COLOUR_WORDS = (
    "black",
    "white",
    "gray",
    "grey",
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "pink",
    "brown",
    "beige",
    "navy",
    "teal",
    "olive",
    "lavender",
    "magenta",
)


def colour_histogram(images: np.ndarray) -> np.ndarray:
    """Foreground hue / grey-level shares of uint8 photos (pmatch.features.colour), without
    pmatch's colour-name shares: the baseline is a plain colour histogram."""
    from pmatch.features.colour import ColourHistogram

    layer = ColourHistogram(colour_names=False)
    return np.concatenate(
        [np.asarray(layer(images[start : start + 256])) for start in range(0, len(images), 256)]
    )


def colour_words(texts) -> np.ndarray:
    """Which basic colour names each text mentions (0/1 per name)."""
    from pmatch.features.text import tokenize

    words = [set(tokenize(text)) for text in texts]
    return np.array([[name in found for name in COLOUR_WORDS] for found in words], dtype="float32")


def gbm_scorer(dataset, seed: int):
    """The non-deep baseline: the photo's colour histogram, the text's TF-IDF (SVD) and the
    colour names it mentions, fed to gradient boosting on labelled pairs."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import TfidfVectorizer

    histograms = colour_histogram(dataset.images)
    texts = dataset.items["text"].to_numpy()
    train_rows = dataset.items.index[dataset.items["split"] == "train"].to_numpy()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True).fit(
        texts[train_rows]
    )
    components = min(64, len(vectorizer.vocabulary_) - 1)
    svd = TruncatedSVD(components, random_state=seed).fit(vectorizer.transform(texts[train_rows]))
    text_vectors = np.hstack([svd.transform(vectorizer.transform(texts)), colour_words(texts)])
    image_index = dataset.items["image_index"].to_numpy()

    def features(pairs):
        return np.hstack(
            [
                histograms[image_index[pairs["image_row"].to_numpy()]],
                text_vectors[pairs["text_row"].to_numpy()],
            ]
        )

    train_pairs = dataset.split_pairs("train")
    model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.08, random_state=seed)
    model.fit(features(train_pairs), train_pairs["label"].to_numpy())
    return lambda pairs: model.predict_proba(features(pairs))[:, 1]


def run_one(
    row: str, dataset_dir: Path, seed: int, num_epochs: int, settings: dict | None = None
) -> dict:
    """Trains and measures one row on one prepared split (runs in a child process)."""
    from variants import score_pairs_with_variants

    from pmatch.config import load_params
    from pmatch.evaluate import measure, score_pairs
    from pmatch.features.dataset import load_dataset

    params = load_params(ROOT / "params.yaml")
    dataset = load_dataset(dataset_dir)
    kind = ROWS[row]["kind"]
    started = time.perf_counter()
    if kind in ("two_tower", "seed_concat"):
        from pmatch.model.inference import Matcher
        from pmatch.model.training import train_model

        train = dataclasses.replace(
            params.train,
            kind=kind,
            seed=seed,
            num_epochs=num_epochs or params.train.num_epochs,
            **ROWS[row].get("train", {}),
        )
        if ROWS[row]["features"] == "pretrained" and settings:
            train = dataclasses.replace(train, **settings)
        with tempfile.TemporaryDirectory() as model_dir:
            train_model(dataset, train, model_dir, verbose=0)
            matcher = Matcher.load(model_dir)
        score = lambda pairs: score_pairs(matcher, dataset, pairs)  # noqa: E731
        if "variant_contrast" in ROWS[row]:
            weights = ROWS[row]["variant_contrast"]
            score = lambda pairs: score_pairs_with_variants(  # noqa: E731
                matcher, dataset, pairs, *weights
            )
    elif kind == "gbm":
        score = gbm_scorer(dataset, seed)
    else:
        score = lambda pairs: np.ones(len(pairs))  # noqa: E731
    train_seconds = time.perf_counter() - started
    metrics, test_pairs, _ = measure(score, dataset)
    started = time.perf_counter()
    for _ in range(3):
        score(test_pairs)
    pairs_per_second = 3 * len(test_pairs) / (time.perf_counter() - started)
    return {
        **{
            key: metrics[key]
            for key in (*COLUMNS, "precision", "recall", "pr_auc", "recall_at_5_text_to_image")
        },
        "train_seconds": round(train_seconds, 2),
        "pairs_per_second": round(pairs_per_second, 1),
        "peak_rss_mb": peak_rss_mb(),
    }


def summarise(results: dict) -> list[dict]:
    table = []
    for row, runs in results.items():
        entry = {"row": row, "splits": len(runs)}
        for key in (*COLUMNS, "train_seconds", "pairs_per_second", "peak_rss_mb"):
            values = np.array([run[key] for run in runs], dtype=float)
            entry[key] = {
                "mean": round(float(np.nanmean(values)), 4),
                "std": round(float(np.nanstd(values)), 4),
            }
        table.append(entry)
    return table


def markdown(table: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| model | F1 | hard-neg F1 | ROC-AUC | Recall@5 (img->txt) | train s | pairs/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in table:
        cells = [f"{entry[key]['mean']:.3f} ± {entry[key]['std']:.3f}" for key in COLUMNS]
        cells += [
            f"{entry[key]['mean']:.1f}"
            for key in ("train_seconds", "pairs_per_second", "peak_rss_mb")
        ]
        lines.append(f"| {entry['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, default=ROOT / "data/sample")
    parser.add_argument("--splits", type=int, default=3, help="seeded splits to average over")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), help="which rows (default: all)")
    parser.add_argument("--num-epochs", type=int, default=0, help="cap epochs (0: params.yaml)")
    parser.add_argument(
        "--seed-concat-epochs",
        type=int,
        default=5,
        help="epochs for seed_concat, the slow VGG16-style baseline",
    )
    parser.add_argument(
        "--name", help="results file name (default: quality-<catalogue folder name>)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change a preprocess or train param for the pretrained pmatch rows (repeatable)",
    )
    parser.add_argument(
        "--one", nargs=3, metavar=("ROW", "DATASET", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    settings = parse_settings(args.set)
    if args.one:
        row, dataset_dir, seed = args.one
        result = run_one(row, Path(dataset_dir), int(seed), args.num_epochs, settings.get("train"))
        print(json.dumps(result))
        return

    from pmatch.config import load_params

    params = load_params(ROOT / "params.yaml")
    results: dict[str, list] = {row: [] for row in args.rows}
    extraction = []
    with tempfile.TemporaryDirectory(prefix="pmatch-bench-") as work:
        for split in range(args.splits):
            seed = params.preprocess.seed + split
            prepared = {}
            for features in sorted({ROWS[row]["features"] for row in args.rows}):
                prepared[features] = Path(work) / f"{features}-{split}"
                seconds = build(
                    args.catalog,
                    features,
                    seed,
                    prepared[features],
                    params,
                    settings.get("preprocess"),
                )
                if features == "pretrained":
                    photos = len(np.load(prepared[features] / "image_features.npy", mmap_mode="r"))
                    extraction.append({"seconds": round(seconds, 1), "photos": photos})
                print(
                    f"split {split}: {features} features in {seconds:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
            for row in args.rows:
                epochs = (
                    args.seed_concat_epochs
                    if ROWS[row]["kind"] == "seed_concat"
                    else args.num_epochs
                )
                command = [
                    sys.executable,
                    __file__,
                    "--num-epochs",
                    str(epochs),
                    *[f"--set={setting}" for setting in args.set],
                    "--one",
                    row,
                    str(prepared[ROWS[row]["features"]]),
                    str(seed),
                ]
                output = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
                )
                if output.returncode != 0:
                    raise RuntimeError(f"{row} on split {split} failed:\n{output.stderr[-3000:]}")
                result = json.loads(output.stdout.strip().splitlines()[-1])
                results[row].append(result)
                print(
                    f"split {split}: {row}: F1 {result['f1']:.3f}, hard-neg F1 "
                    f"{result['f1_hard_negatives']:.3f}, ROC-AUC {result['roc_auc']:.3f}, "
                    f"train {result['train_seconds']:.1f} s",
                    file=sys.stderr,
                    flush=True,
                )
    table = summarise(results)
    name = args.catalog.resolve().name
    machine = machine_description()
    header = (
        f"Quality on `{name}` ({args.splits} seeded split(s), {time.strftime('%Y-%m-%d')}, "
        f"{machine})"
    )
    if args.set:
        header += "\n\nPretrained pmatch rows with " + ", ".join(f"`{item}`" for item in args.set)
    text = markdown(table, header)
    if extraction:
        photos = sum(item["photos"] for item in extraction)
        seconds = sum(item["seconds"] for item in extraction)
        size = settings.get("preprocess", {}).get("image_size", PRETRAINED_IMAGE_SIZE)
        text += (
            f"\n\nPretrained feature extraction (EfficientNet-Lite0 at {size} px + MiniLM, "
            f"photos and texts): {photos / seconds:.1f} photos/s including text, "
            f"{seconds / len(extraction):.1f} s per split."
        )
    print(text)
    write_results(
        args.name or f"quality-{name}",
        text,
        {
            "catalog": str(args.catalog),
            "splits": args.splits,
            "settings": args.set,
            "machine": machine,
            "table": table,
            "runs": results,
            "feature_extraction": extraction,
        },
    )


if __name__ == "__main__":
    main()
