"""Trains the matching model on a preprocessed dataset and saves what inference needs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pmatch.config import TrainParams
from pmatch.features.dataset import Dataset

MODEL_FILE = "model.keras"
PREPROCESSING_FILE = "preprocessing.json"
VOCABULARY_FILE = "vocab.json"


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and TensorFlow and asks TensorFlow for deterministic kernels."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def matched_rows(dataset: Dataset, split: str) -> dict[str, np.ndarray]:
    """Each catalogue row of a split as a matched (photo, text) example."""
    rows = dataset.items.index[dataset.items["split"] == split].to_numpy()
    return {
        "image": dataset.images[dataset.items["image_index"].to_numpy()[rows]],
        "tokens": dataset.tokens[rows],
    }


def train_model(
    dataset: Dataset, params: TrainParams, out_dir: str | Path, verbose: int = 2
) -> dict:
    """Trains the towers contrastively, calibrates the scorer, writes the model folder.

    1. The towers learn a shared space with symmetric InfoNCE over the train rows (in-batch
       negatives, learnable temperature), early-stopped on validation loss.
    2. The scorer's scale and bias are fitted by logistic regression on the cosine of the
       validation pairs (matches, random and hard negatives), so scores are probabilities.

    out_dir gets model.keras, vocab.json and preprocessing.json (what scoring needs),
    history.csv and training_curve.png. The model file is written under a temporary name
    and renamed, so a crash never leaves a half-written model. Returns a summary dict.
    """
    import keras

    from pmatch.model.matcher import (
        build_contrastive_trainer,
        build_matching_model,
        symmetric_info_nce,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(params.seed)
    image_size = int(dataset.images.shape[1])
    max_tokens = int(dataset.tokens.shape[1])
    model = build_matching_model(
        image_size, len(dataset.vocabulary), max_tokens, params.embedding_dim, params.projection_dim
    )
    trainer = build_contrastive_trainer(model)
    trainer.compile(optimizer=keras.optimizers.Adam(params.learning_rate), loss=symmetric_info_nce)

    train_rows, val_rows = matched_rows(dataset, "train"), matched_rows(dataset, "val")
    if len(train_rows["image"]) < 2 or len(val_rows["image"]) < 2:
        raise ValueError(
            "the train or val split has fewer than 2 rows; the catalogue needs more products "
            "(or change preprocess.val_fraction / preprocess.test_fraction)"
        )
    checkpoint = out_dir / "best.weights.h5"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(
            checkpoint, monitor="val_loss", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.CSVLogger(out_dir / "history.csv"),
    ]
    # fit() needs targets; the contrastive loss ignores them (the diagonal is the label).
    history = trainer.fit(
        train_rows,
        np.zeros(len(train_rows["image"]), dtype="float32"),
        validation_data=(val_rows, np.zeros(len(val_rows["image"]), dtype="float32")),
        epochs=params.num_epochs,
        batch_size=params.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    if checkpoint.exists():
        trainer.load_weights(checkpoint)
        checkpoint.unlink()
    calibration = calibrate_scorer(model, dataset, "val")

    temporary = out_dir / f"partial-{MODEL_FILE}"
    model.save(temporary)
    temporary.replace(out_dir / MODEL_FILE)
    dataset.vocabulary.save(out_dir / VOCABULARY_FILE)
    (out_dir / PREPROCESSING_FILE).write_text(
        json.dumps({"image_size": image_size, "max_tokens": max_tokens}, indent=2)
    )
    losses = history.history["val_loss"]
    best_epoch = int(np.argmin(losses)) + 1
    _plot_history(history.history, out_dir / "training_curve.png")
    summary = {
        "epochs_run": len(losses),
        "best_epoch": best_epoch,
        "best_val_contrastive_loss": round(float(losses[best_epoch - 1]), 5),
        "train_rows": int(len(train_rows["image"])),
        "val_rows": int(len(val_rows["image"])),
        "parameters": int(model.count_params()),
        **calibration,
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def calibrate_scorer(model, dataset: Dataset, split: str) -> dict:
    """Fits the scorer's sigmoid(scale * cosine + bias) to the split's labelled pairs."""
    from sklearn.linear_model import LogisticRegression

    pairs = dataset.split_pairs(split)
    inputs = dataset.pair_inputs(pairs)
    image_embeddings = model.get_layer("image_encoder").predict(inputs["image"], verbose=0)
    text_embeddings = model.get_layer("text_encoder").predict(inputs["tokens"], verbose=0)
    cosine = np.sum(image_embeddings * text_embeddings, axis=1, keepdims=True)
    regression = LogisticRegression(C=100.0).fit(cosine, pairs["label"].to_numpy())
    scale, bias = float(regression.coef_[0, 0]), float(regression.intercept_[0])
    model.get_layer("scorer").get_layer("match_probability").set_weights(
        [np.array([[scale]], dtype="float32"), np.array([bias], dtype="float32")]
    )
    return {
        "calibration_pairs": int(len(pairs)),
        "score_scale": round(scale, 4),
        "score_bias": round(bias, 4),
    }


def _plot_history(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["loss"]) + 1)
    axis.plot(epochs, history["loss"], label="train")
    axis.plot(epochs, history["val_loss"], label="validation")
    axis.set_xlabel("epoch")
    axis.set_ylabel("symmetric InfoNCE loss")
    axis.set_title("Training curve")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
