"""Trains the matching model on a preprocessed dataset: its members, their ensemble, the folder.

A member's phases, each in its module: the towers' contrastive phase (contrastive), the
colour head (colour_head), the match head (match_head). The seed's design trains
elsewhere (seed_concat); the model folder is written by folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pmatch.artifacts import TRAIN_SUMMARY_FILE
from pmatch.config import TrainParams
from pmatch.features.dataset import Dataset
from pmatch.features.lite import available_cores
from pmatch.model.fitting import seed_everything
from pmatch.model.folder import save_model_folder


def train_model(
    dataset: Dataset, params: TrainParams, out_dir: str | Path, verbose: int = 2
) -> dict:
    """Trains train.ensemble_members two-tower members (train_member) and writes the model
    folder; the seed_concat kind instead trains the seed's design.

    Member k (from 0) trains with seed train.seed + k and logs to out_dir (k = 0) or
    out_dir/member-<k+1>. Several members are saved as one model of the same shape (see
    pmatch.model.matcher.stack_members): scoring reads the same towers and scorer, and the
    score is the members' mean.

    out_dir gets model.keras, vocab.json and preprocessing.json (what scoring needs),
    history.csv and training_curve.png (the first member's). The model file is written
    under a temporary name and renamed, so a crash never leaves a half-written model.
    Returns a summary dict (the first member's figures, and ensemble_members).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if params.kind == "seed_concat":
        from pmatch.model.seed_concat import train_seed_concat

        seed_everything(params.seed)
        return train_seed_concat(dataset, params, out_dir, verbose)
    return train_two_tower(dataset, params, out_dir, verbose)


def train_two_tower(dataset: Dataset, params: TrainParams, out_dir: Path, verbose: int) -> dict:
    """train_model for the two-tower kind: the members, stacked into one saved model.

    With several members and a spare core, members 2, 3, ... train in other processes
    (spawned, each seeded as it would be here, so the model is the same) while this one
    trains member 1: a member's training keeps about one core busy.
    """
    count = params.ensemble_members
    log_dirs = [
        out_dir if index == 0 else out_dir / f"member-{index + 1}" for index in range(count)
    ]
    for log_dir in log_dirs:
        log_dir.mkdir(exist_ok=True)
    suffixes = ["" if count == 1 else f"_{index + 1}" for index in range(count)]
    seeded = [dataclasses.replace(params, seed=params.seed + index) for index in range(count)]
    members: list[Member] = []
    backbones = None
    with contextlib.ExitStack() as stack:
        workers = min(count - 1, available_cores() - 1)
        elsewhere = {}
        if workers > 0:
            import multiprocessing
            import tempfile
            from concurrent.futures import ProcessPoolExecutor

            handover = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="members-")))
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            # Not waiting for the workers to exit: their results are read before this block
            # ends (an error here still waits for a running member, as Python exits).
            stack.callback(pool.shutdown, wait=False, cancel_futures=True)
            # Submitted before this process imports TensorFlow (below), so the workers
            # import it at the same time.
            for index in range(1, count):
                elsewhere[index] = pool.submit(
                    _train_member_elsewhere,
                    dataset,
                    seeded[index],
                    log_dirs[index],
                    suffixes[index],
                    handover / f"member-{index + 1}",
                )
        from pmatch.model.matcher import (
            assemble_matching_model,
            frozen_backbones,
            inference_encoders,
            stack_members,
        )

        for index in range(count):
            if count > 1 and verbose:
                where = " (in another process)" if index in elsewhere else ""
                print(f"ensemble member {index + 1}/{count}{where}", flush=True)
            if index in elsewhere:
                if backbones is None:
                    # While the other members finish: the frozen networks the model wraps.
                    backbones = frozen_backbones(dataset.preprocessing)
                members.append(_member_from(elsewhere[index].result()))
            else:
                members.append(
                    train_member(dataset, seeded[index], log_dirs[index], verbose, suffixes[index])
                )
            if index > 0:
                summary_file = log_dirs[index] / TRAIN_SUMMARY_FILE
                summary_file.write_text(json.dumps(members[-1].summary, indent=2))
    image_side, text_side, scorer = stack_members(members)
    first = members[0]
    image_encoder, text_encoder = inference_encoders(
        image_side, text_side, dataset.preprocessing, first.colour_mentions, backbones
    )
    model = assemble_matching_model(image_encoder, text_encoder, scorer)
    summary = {**first.summary, "ensemble_members": len(members)}
    if len(members) > 1:
        summary["trainable_parameters"] = sum(
            member.summary["trainable_parameters"] for member in members
        )
    return save_model_folder(model, dataset, dataset.preprocessing, first.history, summary, out_dir)


# The parts of a Member that another process hands back as model files.
MEMBER_MODELS = ("image_side", "text_side", "scorer")


def _train_member_elsewhere(
    dataset: Dataset, params: TrainParams, log_dir: Path, suffix: str, handover: Path
) -> dict:
    """train_member in a spawned process, quietly (the first member shows the epochs); its
    models are saved under handover for _member_from."""
    member = train_member(dataset, params, log_dir, verbose=0, suffix=suffix)
    handover.mkdir(parents=True)
    for name in MEMBER_MODELS:
        getattr(member, name).save(handover / f"{name}.keras")
    print(
        f"ensemble member with seed {params.seed}: best validation contrastive loss "
        f"{member.summary['best_val_contrastive_loss']}, match head epochs "
        f"{member.summary.get('match_head_epochs', '-')}",
        flush=True,
    )
    return {"handover": str(handover), "history": member.history, "summary": member.summary}


def _member_from(result: dict) -> Member:
    """The Member another process trained (_train_member_elsewhere)."""
    from pmatch.model.inference import load_keras_file

    handover = Path(result["handover"])
    image_side, text_side, scorer = (
        load_keras_file(handover / f"{name}.keras") for name in MEMBER_MODELS
    )
    return Member(image_side, text_side, scorer, None, result["history"], result["summary"])


@dataclass
class Member:
    """One trained two-tower model, before it is put behind the frozen networks.

    image_side / text_side: the towers with their colour columns; scorer: the match head.
    colour_mentions: the ColourMentions layer that fed text_side in training, or None.
    history: the contrastive phase's Keras history; summary: its figures.
    """

    image_side: object
    text_side: object
    scorer: object
    colour_mentions: object
    history: dict
    summary: dict


def build_towers(dataset: Dataset, params: TrainParams):
    """The trainable towers for this dataset, and those of them that keep learning in the
    match head's phase.

    Over frozen pretrained features (the default) each tower is a projection head
    (pmatch.model.matcher.build_feature_head), cheap enough to keep learning with the match
    head. Over pixels or word ids (preprocess.image_features pixels, text_features tokens)
    it is a tower trained from scratch (pmatch.model.towers), left as the contrastive phase
    made it.
    """
    from pmatch.model.matcher import build_feature_head
    from pmatch.model.towers import build_image_encoder, build_text_encoder

    train_rows = dataset.items.index[dataset.items["split"] == "train"].to_numpy()
    if dataset.images is None:
        train_images = np.unique(dataset.items["image_index"].to_numpy()[train_rows])
        image_tower = build_feature_head(
            dataset.image_features[train_images],
            params.projection_dim,
            "image_head",
            "image_features",
        )
    else:
        image_tower = build_image_encoder(int(dataset.images.shape[1]), params.projection_dim)
    if dataset.tokens is None:
        text_tower = build_feature_head(
            dataset.text_features[train_rows], params.projection_dim, "text_head", "text_features"
        )
    else:
        text_tower = build_text_encoder(
            len(dataset.vocabulary),
            int(dataset.tokens.shape[1]),
            params.embedding_dim,
            params.projection_dim,
        )
    heads = [image_tower] if dataset.images is None else []
    heads += [text_tower] if dataset.tokens is None else []
    return image_tower, text_tower, heads


def train_member(
    dataset: Dataset, params: TrainParams, log_dir: Path, verbose: int, suffix: str = ""
) -> Member:
    """Trains the towers contrastively, then the colour head and the match head.

    1. The towers learn a shared space (pmatch.model.contrastive.train_towers).
    2. With train.colour_head, a colour classifier learns photo -> the colour its title
       names (pmatch.model.colour_head).
    3. The match head learns the [0, 1] score on labelled pairs
       (pmatch.model.match_head.train_match_head).

    suffix: appended to the names of the towers and scorer, which must differ between the
    members of one model. Histories and checkpoints go to log_dir.
    """
    from pmatch.model.colour_head import colour_features, train_colour_head
    from pmatch.model.contrastive import train_towers
    from pmatch.model.match_head import train_match_head
    from pmatch.model.matcher import build_image_tower, build_scorer, build_text_tower

    seed_everything(params.seed)
    image_tower, text_tower, heads = build_towers(dataset, params)
    history = train_towers(
        image_tower, text_tower, dataset, params, log_dir / "history.csv", verbose
    )
    colour_head, colour_summary, mentions = None, {"colour_head": "off"}, None
    if params.colour_head and dataset.colour_mentions is not None:
        colour_head, colour_summary = train_colour_head(dataset, params, log_dir, verbose)
    colour_classes = 0
    if colour_head is not None:
        from pmatch.features.colour import COLOUR_CLASSES
        from pmatch.features.dataset import colour_mentions_layer

        colour_classes = len(COLOUR_CLASSES)
        mentions = colour_mentions_layer(dataset.preprocessing["text_features"], dataset.vocabulary)
    image_side = build_image_tower(
        image_tower,
        colour_head,
        colour_features(dataset) if colour_head else None,
        name=f"image_tower{suffix}",
    )
    text_side = build_text_tower(text_tower, colour_classes, name=f"text_tower{suffix}")
    scorer = build_scorer(params.projection_dim, colour_classes, name=f"scorer{suffix}")
    match_head = train_match_head(
        image_side, text_side, scorer, heads, dataset, params, log_dir, verbose
    )
    splits = dataset.items["split"]
    summary = {
        "kind": params.kind,
        "seed": params.seed,
        "train_rows": int((splits == "train").sum()),
        "val_rows": int((splits == "val").sum()),
        "trainable_parameters": int(
            image_tower.count_params() + text_tower.count_params() + scorer.count_params()
        ),
        "best_val_contrastive_loss": round(float(np.min(history.history["val_loss"])), 5),
        **colour_summary,
        **match_head,
    }
    return Member(image_side, text_side, scorer, mentions, history.history, summary)
