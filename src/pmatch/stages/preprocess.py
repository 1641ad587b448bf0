"""`pmatch preprocess`: splits, pairs, image cache and token ids for training."""

from __future__ import annotations

from pathlib import Path

from pmatch.stages.common import add_params_argument, params_from, print_json, progress_printer, say


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
    summary = build_dataset(
        catalog,
        params.preprocess,
        args.out,
        progress=progress_printer(
            "photos encoded"
            if params.preprocess.image_features == "efficientnet_lite0"
            else "photos loaded"
        ),
        feature_store=store,
        text_progress=progress_printer("texts encoded"),
    )
    print_json({**summary, "feature_cache": str(store.path) if store else "off"})
