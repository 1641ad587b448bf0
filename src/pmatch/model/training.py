"""Trains the matching model on a preprocessed dataset and saves what inference needs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import (
    MINILM_VOCABULARY_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    TRAIN_SUMMARY_FILE,
    TRAINING_CURVE_FILE,
    VOCABULARY_FILE,
)
from pmatch.config import TrainParams
from pmatch.features.dataset import Dataset

# The top blocks are fine-tuned at this fraction of train.learning_rate.
FINE_TUNE_LEARNING_RATE_FACTOR = 0.05
# Training steps per call into TensorFlow: the heads are small, so per-step Python overhead
# weighs; the batches and updates are the same (so are the results), about 1.4x faster.
STEPS_PER_EXECUTION = 32


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and asks TensorFlow for deterministic kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def matched_rows(dataset: Dataset, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each catalogue row of a split as a matched (photo, text) example, as the towers read
    it, and each row's product as a number (the contrastive loss's labels)."""
    rows = dataset.items.index[dataset.items["split"] == split].to_numpy()
    products = pd.factorize(dataset.items["product_id"])[0].astype("float32")
    inputs = {
        dataset.image_input_name: dataset.image_inputs(
            dataset.items["image_index"].to_numpy()[rows]
        ),
        dataset.text_input_name: dataset.text_inputs(rows),
    }
    return inputs, products[rows]


def build_towers(dataset: Dataset, params: TrainParams):
    """The trainable towers for this dataset: a CNN or a head over frozen image features,
    a word-embedding tower or a head over frozen text features."""
    from pmatch.model.matcher import build_feature_head, build_locked_text_head
    from pmatch.model.towers import build_image_encoder, build_text_encoder

    train_rows = dataset.items.index[dataset.items["split"] == "train"].to_numpy()
    if dataset.images is not None:
        image_tower = build_image_encoder(int(dataset.images.shape[1]), params.projection_dim)
    else:
        train_images = np.unique(dataset.items["image_index"].to_numpy()[train_rows])
        image_tower = build_feature_head(
            dataset.image_features[train_images],
            params.projection_dim,
            "image_head",
            "image_features",
            front=unfrozen_front(dataset),
        )
    if dataset.tokens is not None and params.text_head == "locked":
        raise ValueError(
            "train.text_head locked projects frozen MiniLM features, but this dataset holds "
            "word ids (preprocess.text_features tokens); use train.text_head learned or "
            "preprocess.text_features minilm"
        )
    if dataset.tokens is not None:
        text_tower = build_text_encoder(
            len(dataset.vocabulary),
            int(dataset.tokens.shape[1]),
            params.embedding_dim,
            params.projection_dim,
        )
    elif params.text_head == "locked":
        text_tower = build_locked_text_head(
            dataset.text_features[train_rows], params.projection_dim, "text_head"
        )
    else:
        text_tower = build_feature_head(
            dataset.text_features[train_rows], params.projection_dim, "text_head", "text_features"
        )
    return image_tower, text_tower


def unfrozen_front(dataset: Dataset):
    """With preprocess.unfrozen_blocks > 0, the EfficientNet-Lite0 top blocks the image head
    sits on (pmatch.features.encoders.unfrozen_image_features), frozen until train_model
    fine-tunes them; else None."""
    from pmatch.features.encoders import unfrozen_image_features

    blocks = unfrozen_blocks(dataset.preprocessing)
    if not blocks:
        return None
    front = unfrozen_image_features(
        int(dataset.preprocessing["image_size"]), blocks, dataset.image_features
    )
    front.trainable = False
    return front


def unfrozen_blocks(preprocessing: dict | None) -> int:
    return int((preprocessing or {}).get("unfrozen_blocks", 0))


def inference_encoders(image_side, text_side, preprocessing: dict, colour_mentions=None):
    """Encoders that read photos and text ids: the towers the scorer was trained with,
    behind the frozen pretrained networks when they were trained on their features.

    colour_mentions: the ColourMentions layer that fed the text tower in training (None
    when the towers carry no colour), applied here to the text's ids.
    """
    import keras

    from pmatch.features.encoders import image_feature_encoder, text_feature_encoder

    if preprocessing["image_features"] == "efficientnet_lite0":
        backbone = image_feature_encoder(
            preprocessing["image_size"], unfrozen_blocks(preprocessing)
        )
        image = keras.Input(shape=backbone.input_shape[1:], dtype="uint8", name="image")
        image_encoder = keras.Model(image, image_side(backbone(image)), name="image_encoder")
    else:
        image = keras.Input(shape=image_side.input_shape[1:], dtype="uint8", name="image")
        image_encoder = keras.Model(image, image_side(image), name="image_encoder")

    if preprocessing["text_features"] == "minilm":
        backbone, _ = text_feature_encoder(preprocessing["max_tokens"])
        text = {
            name: keras.Input(shape=(preprocessing["max_tokens"],), dtype="int32", name=name)
            for name in ("input_ids", "attention_mask")
        }
        ids, features, feature_name = text["input_ids"], backbone(text), "text_features"
    else:
        text = keras.Input(shape=(preprocessing["max_tokens"],), dtype="int32", name="tokens")
        ids, features, feature_name = text, text, "tokens"
    if colour_mentions is None:
        embedding = text_side(features)
    else:
        embedding = text_side({feature_name: features, "colour_mentions": colour_mentions(ids)})
    return image_encoder, keras.Model(text, embedding, name="text_encoder")


def colour_features(dataset: Dataset):
    """A layer picking a photo's colour features from what the image tower reads: the
    histogram of its pixels, or the histogram columns of its frozen features."""
    from pmatch.features.colour import COLOUR_FEATURE_DIM, ColourHistogram, ColumnSlice

    if dataset.images is not None:
        return ColourHistogram(name="colour_histogram")
    width = int(dataset.image_features.shape[1])
    return ColumnSlice(width - COLOUR_FEATURE_DIM, width, name="colour_columns")


def train_colour_head(dataset: Dataset, params: TrainParams, out_dir: Path, verbose: int):
    """Fits the colour head: photo colour features -> the colours the photo's own title
    names, on the train rows that name one, early-stopped on the validation rows.

    Returns the head and a summary (rows used, validation accuracy).
    """
    import keras

    from pmatch.features.colour import build_colour_head

    picker = colour_features(dataset)
    image_index = dataset.items["image_index"].to_numpy()
    named = dataset.colour_mentions.sum(axis=1) > 0
    splits = dataset.items["split"].to_numpy()
    examples = {}
    for split in ("train", "val"):
        rows = np.flatnonzero((splits == split) & named)
        inputs = dataset.image_inputs(image_index[rows])
        features = (
            np.concatenate(
                [
                    np.asarray(picker(inputs[start : start + 256]))
                    for start in range(0, len(rows), 256)
                ]
            )
            if len(rows)
            else np.zeros((0, 1), dtype="float32")
        )
        targets = dataset.colour_mentions[rows]
        examples[split] = (features, targets / targets.sum(axis=1, keepdims=True))
    if len(examples["train"][0]) < 2 or len(examples["val"][0]) < 1:
        return None, {"colour_head": "off: too few titles name a colour"}
    head = build_colour_head(examples["train"][0])
    head.compile(
        steps_per_execution=STEPS_PER_EXECUTION,
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    history = head.fit(
        *examples["train"],
        validation_data=examples["val"],
        epochs=200,
        batch_size=32,
        shuffle=True,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=20, restore_best_weights=True
            ),
            keras.callbacks.CSVLogger(out_dir / "history-colour_head.csv"),
        ],
    )
    best = int(np.argmin(history.history["val_loss"]))
    summary = {
        "colour_head_rows": {split: len(examples[split][0]) for split in examples},
        "colour_head_epochs": len(history.history["val_loss"]),
        "colour_head_val_accuracy": round(float(history.history["val_accuracy"][best]), 4),
    }
    if verbose:
        print(f"colour head: {summary}", flush=True)
    return head, summary


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
    import dataclasses

    from pmatch.model.matcher import assemble_matching_model, stack_members

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preprocessing = dataset.preprocessing
    if preprocessing is None:  # A dataset written before preprocessing.json existed.
        preprocessing = {
            "image_size": int(dataset.images.shape[1]),
            "max_tokens": int(dataset.tokens.shape[1]),
            "image_features": "pixels",
            "text_features": "tokens",
        }
    if params.kind == "seed_concat":
        from pmatch.model.seed_concat import train_seed_concat

        seed_everything(params.seed)
        return train_seed_concat(dataset, params, preprocessing, out_dir, verbose)
    members: list[Member] = []
    for index in range(params.ensemble_members):
        log_dir = out_dir if index == 0 else out_dir / f"member-{index + 1}"
        log_dir.mkdir(exist_ok=True)
        if params.ensemble_members > 1 and verbose:
            print(f"ensemble member {index + 1}/{params.ensemble_members}", flush=True)
        members.append(
            train_member(
                dataset,
                dataclasses.replace(params, seed=params.seed + index),
                preprocessing,
                log_dir,
                verbose,
                suffix="" if params.ensemble_members == 1 else f"_{index + 1}",
            )
        )
        if index > 0:
            summary_file = log_dir / TRAIN_SUMMARY_FILE
            summary_file.write_text(json.dumps(members[-1].summary, indent=2))
    image_side, text_side, scorer = stack_members(members)
    first = members[0]
    image_encoder, text_encoder = inference_encoders(
        image_side, text_side, preprocessing, first.colour_mentions
    )
    model = assemble_matching_model(image_encoder, text_encoder, scorer)
    summary = {**first.summary, "ensemble_members": len(members)}
    if len(members) > 1:
        summary["trainable_parameters"] = sum(
            member.summary["trainable_parameters"] for member in members
        )
    return save_model_folder(model, dataset, preprocessing, first.history, summary, out_dir)


@dataclass
class Member:
    """One trained two-tower model, before it is put behind the frozen networks.

    image_side / text_side: the towers with their colour columns; scorer: the match head.
    colour_mentions: the ColourMentions layer that fed text_side in training, or None.
    history: the contrastive stage's Keras history; summary: its figures.
    """

    image_side: object
    text_side: object
    scorer: object
    colour_mentions: object
    history: dict
    summary: dict


def train_member(
    dataset: Dataset,
    params: TrainParams,
    preprocessing: dict,
    log_dir: Path,
    verbose: int,
    suffix: str = "",
) -> Member:
    """Trains the towers contrastively, then the colour head and the match head.

    1. The towers learn a shared space with symmetric InfoNCE over the train rows (in-batch
       negatives, a product's colour variants as positives of each other, learnable
       temperature), early-stopped on validation loss. With frozen
       pretrained features only the projection heads train, in seconds. With
       preprocess.unfrozen_blocks > 0, EfficientNet-Lite0's top blocks are then fine-tuned
       with the heads at FINE_TUNE_LEARNING_RATE_FACTOR x the learning rate.
    2. With train.colour_head, a colour classifier learns photo -> the colour its title names.
    3. The match head (train_match_head) learns the [0, 1] score with binary cross-entropy
       on the train pairs (matches, random, hard and colour negatives), early-stopped on
       validation.

    suffix: appended to the names of the towers and scorer, which must differ between the
    members of one model. Histories and checkpoints go to log_dir.
    """
    from pmatch.model.matcher import (
        build_contrastive_trainer,
        build_image_tower,
        build_scorer,
        build_text_tower,
    )

    seed_everything(params.seed)
    image_tower, text_tower = build_towers(dataset, params)
    trainer = build_contrastive_trainer(image_tower, text_tower)

    train_rows, val_rows = matched_rows(dataset, "train"), matched_rows(dataset, "val")
    train_count, val_count = len(train_rows[1]), len(val_rows[1])
    if train_count < 2 or val_count < 2:
        raise ValueError(
            "the train or val split has fewer than 2 rows; the catalogue needs more products "
            "(or change preprocess.val_fraction / preprocess.test_fraction)"
        )
    history = fit_contrastive(
        trainer,
        train_rows,
        val_rows,
        params,
        params.learning_rate,
        log_dir / "history.csv",
        verbose,
    )
    fine_tune = {}
    front = find_front(image_tower)
    if front is not None:
        # The standard transfer-learning recipe: the heads first, on frozen features; then
        # the top blocks too, at a learning rate small enough to keep what ImageNet taught.
        front.trainable = True
        tuned = fit_contrastive(
            trainer,
            train_rows,
            val_rows,
            params,
            params.learning_rate * FINE_TUNE_LEARNING_RATE_FACTOR,
            log_dir / "history-fine_tune.csv",
            verbose,
        )
        front.trainable = False
        fine_tune = {
            "unfrozen_blocks": unfrozen_blocks(dataset.preprocessing),
            "fine_tune_epochs": len(tuned.history["val_loss"]),
            "fine_tune_best_val_loss": round(float(np.min(tuned.history["val_loss"])), 5),
        }
    colour_head, colour_summary, mentions = None, {"colour_head": "off"}, None
    if params.colour_head and dataset.colour_mentions is not None:
        colour_head, colour_summary = train_colour_head(dataset, params, log_dir, verbose)
    colour_classes = 0
    if colour_head is not None:
        from pmatch.features.colour import COLOUR_CLASSES
        from pmatch.features.dataset import colour_mentions_layer

        colour_classes = len(COLOUR_CLASSES)
        mentions = colour_mentions_layer(preprocessing["text_features"], dataset.vocabulary)
    image_side = build_image_tower(
        image_tower,
        colour_head,
        colour_features(dataset) if colour_head else None,
        name=f"image_tower{suffix}",
    )
    text_side = build_text_tower(text_tower, colour_classes, name=f"text_tower{suffix}")
    scorer = build_scorer(params.projection_dim, colour_classes, name=f"scorer{suffix}")
    match_head = train_match_head(
        image_tower, text_tower, image_side, text_side, scorer, dataset, params, log_dir, verbose
    )
    summary = {
        "kind": params.kind,
        "seed": params.seed,
        "train_rows": int(train_count),
        "val_rows": int(val_count),
        "trainable_parameters": int(
            image_tower.count_params()
            + (0 if params.text_head == "locked" else text_tower.count_params())
            + scorer.count_params()
        ),
        "best_val_contrastive_loss": round(float(np.min(history.history["val_loss"])), 5),
        **fine_tune,
        **colour_summary,
        **match_head,
    }
    return Member(image_side, text_side, scorer, mentions, history.history, summary)


def fit_contrastive(
    trainer, train_rows, val_rows, params: TrainParams, learning_rate, log: Path, verbose: int
):
    """Fits the contrastive trainer on the matched train rows, early-stopped on the
    validation rows' loss; the best epoch's weights are kept. Returns the Keras history.

    train_rows / val_rows: matched_rows' (inputs, product ids).
    """
    import keras

    from pmatch.model.matcher import symmetric_info_nce

    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=symmetric_info_nce,
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    checkpoint = log.with_name(f"best-{log.stem}.weights.h5")
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor="val_loss", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.CSVLogger(log),
    ]
    # The targets are the rows' products: colour variants in one batch are positives.
    history = trainer.fit(
        *train_rows,
        validation_data=val_rows,
        epochs=params.num_epochs,
        batch_size=params.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    if checkpoint.exists():
        trainer.load_weights(checkpoint)
        checkpoint.unlink()
    return history


def find_front(image_tower):
    """The fine-tunable EfficientNet top blocks inside an image tower, or None."""
    for layer in image_tower.layers:
        if layer.name == "unfrozen_image_features":
            return layer
    return None


def save_model_folder(
    model, dataset: Dataset, preprocessing: dict, history: dict, summary: dict, out_dir: Path
) -> dict:
    """Writes what scoring needs (model.keras, vocabularies, preprocessing.json) and what
    people look at (training_curve.png, train_summary.json); returns the summary.

    The model file is written under a temporary name and renamed, so a crash never leaves a
    half-written model.
    """
    temporary = out_dir / f"partial-{MODEL_FILE}"
    model.save(temporary)
    temporary.replace(out_dir / MODEL_FILE)
    dataset.vocabulary.save(out_dir / VOCABULARY_FILE)
    if preprocessing["text_features"] == "minilm":
        from pmatch.features.minilm import find_minilm_files

        # The model folder carries its tokenizer, so scoring needs nothing else.
        (out_dir / MINILM_VOCABULARY_FILE).write_bytes(find_minilm_files()["vocab"].read_bytes())
    (out_dir / PREPROCESSING_FILE).write_text(json.dumps(preprocessing, indent=2))
    losses = history["val_loss"]
    best_epoch = int(np.argmin(losses)) + 1
    _plot_history(history, out_dir / TRAINING_CURVE_FILE)
    summary = {
        "epochs_run": len(losses),
        "best_epoch": best_epoch,
        "best_val_loss": round(float(losses[best_epoch - 1]), 5),
        **summary,
    }
    (out_dir / TRAIN_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def train_match_head(
    image_tower,
    text_tower,
    image_side,
    text_side,
    scorer,
    dataset: Dataset,
    params: TrainParams,
    out_dir: Path,
    verbose: int,
) -> dict:
    """Trains the match head with binary cross-entropy on the train pairs (matches, random
    and hard negatives, plus train.colour_negatives: see pmatch.catalog.pairs.colour_negatives),
    early-stopped on the validation pairs.

    image_side / text_side: the towers with their colour columns (build_image_tower,
    build_text_tower). Heads over frozen features keep learning here (cheap); a CNN or word
    tower trained from scratch and the colour head stay frozen, so this costs seconds.
    """
    import keras

    from pmatch.model.matcher import fresh_inputs

    fine_tune = dataset.images is None or dataset.tokens is None
    for layer in image_side.layers + text_side.layers:
        layer.trainable = False
    image_tower.trainable = dataset.images is None
    # A locked text head (train.text_head) stays as it was built.
    text_tower.trainable = dataset.tokens is None and params.text_head != "locked"
    if find_front(image_tower) is not None:
        # The fine-tuned top blocks stay as the contrastive stage left them.
        find_front(image_tower).trainable = False
    image, text = fresh_inputs(image_side), fresh_inputs(text_side)
    inputs = {image.name: image, **(text if isinstance(text, dict) else {text.name: text})}
    pair_model = keras.Model(
        inputs, scorer([image_side(image), text_side(text)]), name="match_head_trainer"
    )
    extra_pairs = None
    if params.colour_negatives and dataset.colour_mentions is not None:
        from pmatch.catalog.pairs import colour_negatives

        train_pairs = dataset.split_pairs("train")
        extra_pairs = colour_negatives(
            dataset.items,
            dataset.colour_mentions,
            train_pairs.loc[train_pairs["label"] == 1, "image_row"],
            params.colour_negatives,
            params.seed,
        )
    # train.batch_size pairs per step at train.learning_rate: the same quality as half the
    # batch at half the rate (Luma over 9 runs, the sample over 3: docs/design.md),
    # in half the steps.
    history = fit_on_pairs(
        pair_model,
        dataset,
        out_dir,
        verbose,
        learning_rate=params.learning_rate,
        epochs=params.num_epochs * 2,
        batch_size=params.batch_size,
        patience=params.early_stopping_patience * 2,
        colour="colour_mentions" in inputs,
        extra_train_pairs=extra_pairs,
    )
    for layer in image_side.layers + text_side.layers:
        layer.trainable = True
    text_tower.trainable = params.text_head != "locked"
    best = int(np.argmin(history.history["val_loss"]))
    return {
        "match_head_epochs": len(history.history["val_loss"]),
        "match_head_val_loss": round(float(history.history["val_loss"][best]), 5),
        "match_head_val_auc": round(float(history.history["val_auc"][best]), 5),
        "colour_negative_pairs": 0 if extra_pairs is None else len(extra_pairs),
        "towers_fine_tuned": fine_tune,
    }


def fit_on_pairs(
    model,
    dataset: Dataset,
    out_dir: Path,
    verbose: int,
    *,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    patience: int,
    colour: bool = False,
    extra_train_pairs: pd.DataFrame | None = None,
):
    """Fits model (pair inputs -> match probability) with binary cross-entropy on the train
    pairs (and extra_train_pairs), early-stopped on the validation pairs' loss; the best
    epoch's weights are kept.

    Returns the Keras history.
    """
    import keras

    model.compile(
        steps_per_execution=STEPS_PER_EXECUTION,
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc")],
    )
    train_pairs, val_pairs = dataset.split_pairs("train"), dataset.split_pairs("val")
    if extra_train_pairs is not None and len(extra_train_pairs):
        train_pairs = pd.concat(
            [train_pairs, extra_train_pairs.assign(split="train")], ignore_index=True
        )
    checkpoint = out_dir / f"best-{model.name}.weights.h5"
    history = model.fit(
        dataset.pair_inputs(train_pairs, colour),
        train_pairs["label"].to_numpy("float32"),
        validation_data=(
            dataset.pair_inputs(val_pairs, colour),
            val_pairs["label"].to_numpy("float32"),
        ),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        verbose=verbose,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            ),
            keras.callbacks.ModelCheckpoint(
                checkpoint, monitor="val_loss", save_best_only=True, save_weights_only=True
            ),
            keras.callbacks.CSVLogger(out_dir / f"history-{model.name}.csv"),
        ],
    )
    if checkpoint.exists():
        model.load_weights(checkpoint)
        checkpoint.unlink()
    return history


def _plot_history(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["loss"]) + 1)
    axis.plot(epochs, history["loss"], label="train")
    axis.plot(epochs, history["val_loss"], label="validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.set_title("Training curve")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
