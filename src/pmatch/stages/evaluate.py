"""`pmatch evaluate`: test metrics at the validation-chosen threshold, plots, reference scores."""

from __future__ import annotations

from pathlib import Path

from pmatch.stages.common import add_params_argument, params_from, print_json


def add_arguments(parser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="trained model folder")
    parser.add_argument("--data", type=Path, required=True, help="preprocessed dataset folder")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for metrics, plots, reference scores"
    )
    parser.add_argument(
        "--catalog",
        type=Path,
        help="the catalogue folder the dataset was built from: errors.html then shows the "
        "photos of the pairs decided wrongly (without it, their paths), and the canary pairs "
        "and the data version the gate and deployment need are written",
    )
    add_params_argument(parser)


def run(args) -> None:
    from pmatch.evaluate import evaluate_model

    params = params_from(args)
    print_json(
        evaluate_model(
            args.model,
            args.data,
            params.evaluate,
            args.out,
            args.catalog,
            canary_pairs=params.gate.canary_pairs,
        )
    )
