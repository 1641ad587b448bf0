"""`pmatch score`: scores a CSV of (image_path, text) pairs with the production or a local model."""

from __future__ import annotations

import json
from pathlib import Path

from pmatch.progress import progress_reporter
from pmatch.stages.common import print_json, say


def add_arguments(parser) -> None:
    parser.add_argument(
        "--pairs",
        type=Path,
        required=True,
        help="CSV with image_path (relative to the CSV's folder) and text; other columns are kept",
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="CSV to write: the input plus score and match"
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="a local model folder (default: the production model from the registry)",
    )
    parser.add_argument(
        "--metrics",
        type=Path,
        default=Path("reports/evaluate/metrics.json"),
        help="metrics.json holding the threshold of a local --model without one",
    )
    parser.add_argument(
        "--threshold", type=float, help="decision threshold (overrides the model's)"
    )
    parser.add_argument("--project", help="project folder (default: PMATCH_PROJECT_DIR or .)")


def run(args) -> None:
    from pmatch.features.store import open_default_store
    from pmatch.model.inference import Matcher
    from pmatch.pipeline import project_settings, workspace
    from pmatch.score import score_pairs_file
    from pmatch.storage import open_registry, s3_settings

    threshold = args.threshold
    if args.model is not None:
        model_dir = args.model
        if (
            threshold is None
            and not (model_dir / "metrics.json").is_file()
            and args.metrics.is_file()
        ):
            threshold = json.loads(args.metrics.read_text())["threshold"]
    else:
        space = workspace(args.project)
        with s3_settings(project_settings(space)) as settings:
            _, model_dir = open_registry(settings).download_production(space.model_cache)
        say(f"scoring with production model {model_dir.name}")
    # Frozen features of photos and texts seen before come from the feature cache
    # (PMATCH_FEATURE_CACHE; 'off' disables it).
    matcher = Matcher.load(model_dir, threshold=threshold, feature_store=open_default_store())
    # A line after every chunk of pairs (thousands of rows), the rate counted from the start.
    with (
        progress_reporter("pairs scored", every=0, count_from_now=True) as progress,
        progress_reporter("photos encoded") as photo_progress,
        progress_reporter("texts encoded") as text_progress,
    ):
        summary = score_pairs_file(
            matcher,
            args.pairs,
            args.out,
            progress=progress,
            photo_progress=photo_progress,
            text_progress=text_progress,
        )
    print_json(summary)
