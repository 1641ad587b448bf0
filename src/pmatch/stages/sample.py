"""`pmatch sample`: writes the synthetic catalogue and its monitoring batches."""

from __future__ import annotations

from pathlib import Path

from pmatch.progress import progress_reporter
from pmatch.stages.common import add_params_argument, params_from, print_json, say


def add_arguments(parser) -> None:
    parser.add_argument("--products", type=int, help="products (default: sample.products)")
    parser.add_argument("--seed", type=int, help="random seed (default: sample.seed)")
    parser.add_argument(
        "--batch-pairs", type=int, help="pairs per monitoring batch (default: sample.batch_pairs)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="catalogue folder to write (replaced)"
    )
    parser.add_argument(
        "--inbox", type=Path, help="also write the dated deliveries into this inbox folder"
    )
    parser.add_argument(
        "--delivery-listings",
        type=int,
        help="listings per later delivery (default: sample.delivery_listings)",
    )
    add_params_argument(parser)


def run(args) -> None:
    from pmatch.sample import write_sample

    params = params_from(args)
    products = args.products if args.products is not None else params.sample.products
    seed = args.seed if args.seed is not None else params.sample.seed
    batch_pairs = args.batch_pairs if args.batch_pairs is not None else params.sample.batch_pairs
    if products < 2:
        raise ValueError(f"--products {products}: a catalogue needs at least 2 products")
    say(f"writing a {products}-product sample catalogue (seed {seed}) to {args.out}")
    with progress_reporter("products drawn") as progress:
        summary = write_sample(
            args.out,
            products=products,
            seed=seed,
            batch_pairs=batch_pairs,
            random_negatives=params.preprocess.random_negatives,
            hard_negatives=params.preprocess.hard_negatives,
            progress=progress,
            inbox=args.inbox,
            delivery_listings=args.delivery_listings or params.sample.delivery_listings,
        )
    print_json(summary)
