"""`pmatch preprocess`: splits, pairs, image cache and token ids for training."""

from __future__ import annotations

from pathlib import Path

from pmatch.progress import progress_reporter
from pmatch.stages.common import add_params_argument, params_from, print_json, say


def add_arguments(parser) -> None:
    parser.add_argument("--catalog", type=Path, help="catalogue folder (default: data.catalog)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to write")
    add_params_argument(parser)


def run(args) -> None:
    from pmatch.features.dataset import build_dataset
    from pmatch.features.store import open_default_store

    params = params_from(args)
    catalog = args.catalog or Path(params.data.catalog)
    say(f"preprocessing {catalog} into {args.out}")
    pretrained = (
        params.preprocess.image_features == "efficientnet_lite0"
        or params.preprocess.text_features == "minilm"
    )
    store = open_default_store() if pretrained else None
    if store is not None:
        say(f"  frozen features cached in {store.path} (PMATCH_FEATURE_CACHE=off disables)")
    photos = (
        "photos encoded"
        if params.preprocess.image_features == "efficientnet_lite0"
        else "photos loaded"
    )
    with (
        progress_reporter(photos) as photo_progress,
        progress_reporter("texts encoded") as text_progress,
    ):
        summary = build_dataset(
            catalog,
            params.preprocess,
            args.out,
            progress=photo_progress,
            feature_store=store,
            text_progress=text_progress,
        )
    print_json({**summary, "feature_cache": str(store.path) if store else "off"})
