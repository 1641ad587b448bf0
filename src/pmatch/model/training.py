"""Trains the matching model on a preprocessed dataset and saves what inference needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


def compile_matching_model(model, learning_rate: float) -> None:
    """The matching model's own loss and metrics: binary cross-entropy on match labels."""
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )


def train_model(dataset: Dataset, params: TrainParams, out_dir: str | Path, verbose: int = 2) -> dict:
    """Fits the model with early stopping on validation loss and writes the model folder.

    out_dir gets model.keras (the best epoch's weights), vocab.json and preprocessing.json
    (what scoring needs to turn photos and text into inputs), history.csv and
    training_curve.png. The model file is written under a temporary name and renamed, so a
    crash never leaves a half-written model. Returns a summary dict.
    """
    import keras

    from pmatch.model.matcher import build_matching_model

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(params.seed)
    image_size = int(dataset.images.shape[1])
    max_tokens = int(dataset.tokens.shape[1])
    model = build_matching_model(
        image_size, len(dataset.vocabulary), max_tokens, params.embedding_dim, params.projection_dim
    )
    compile_matching_model(model, params.learning_rate)

    train_pairs, val_pairs = dataset.split_pairs("train"), dataset.split_pairs("val")
    if train_pairs.empty or val_pairs.empty:
        raise ValueError(
            "the train or val split has no pairs; the catalogue needs at least 3 products "
            "(check preprocess.val_fraction / preprocess.test_fraction)"
        )
    checkpoint = out_dir / "best.weights.h5"
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=params.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True,
                                        save_weights_only=True),
        keras.callbacks.CSVLogger(out_dir / "history.csv"),
    ]
    history = model.fit(
        dataset.pair_inputs(train_pairs),
        train_pairs["label"].to_numpy("float32"),
        validation_data=(dataset.pair_inputs(val_pairs), val_pairs["label"].to_numpy("float32")),
        epochs=params.num_epochs,
        batch_size=params.batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )
    if checkpoint.exists():
        model.load_weights(checkpoint)
        checkpoint.unlink()

    temporary = out_dir / f"partial-{MODEL_FILE}"
    model.save(temporary)
    temporary.replace(out_dir / MODEL_FILE)
    dataset.vocabulary.save(out_dir / VOCABULARY_FILE)
    (out_dir / PREPROCESSING_FILE).write_text(
        json.dumps({"image_size": image_size, "max_tokens": max_tokens}, indent=2)
    )
    losses = history.history["val_loss"]
    best_epoch = int(min(range(len(losses)), key=losses.__getitem__)) + 1
    _plot_history(history.history, out_dir / "training_curve.png")
    summary = {
        "epochs_run": len(losses),
        "best_epoch": best_epoch,
        "best_val_loss": round(float(losses[best_epoch - 1]), 5),
        "best_val_auc": round(float(history.history["val_auc"][best_epoch - 1]), 5),
        "train_pairs": int(len(train_pairs)),
        "val_pairs": int(len(val_pairs)),
        "parameters": int(model.count_params()),
    }
    (out_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _plot_history(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = range(1, len(history["loss"]) + 1)
    for axis, metric in zip(axes, ("loss", "auc"), strict=True):
        axis.plot(epochs, history[metric], label="train")
        axis.plot(epochs, history[f"val_{metric}"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def copy_model_folder(source: str | Path, destination: str | Path) -> None:
    """Copies a trained model folder (used when bundling a model for deployment)."""
    shutil.copytree(source, destination, dirs_exist_ok=True)
