"""`pmatch train`: fits the matching model on a preprocessed dataset."""

from __future__ import annotations

from pathlib import Path

from pmatch.stages.common import add_params_argument, params_from, print_json, say


def add_arguments(parser) -> None:
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset folder")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    add_params_argument(parser)


def run(args) -> None:
    from pmatch.features.dataset import load_dataset
    from pmatch.model.training import train_model

    params = params_from(args)
    say(f"training on {args.data} (up to {params.train.num_epochs} epochs)")
    print_json(train_model(load_dataset(args.data), params.train, args.out))
