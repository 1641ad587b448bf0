"""Writes the model folder: what scoring needs and what people look at."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pmatch.artifacts import (
    MINILM_VOCABULARY_FILE,
    MODEL_FILE,
    PREPROCESSING_FILE,
    TRAIN_SUMMARY_FILE,
    TRAINING_CURVE_FILE,
    VOCABULARY_FILE,
)
from pmatch.features.dataset import Dataset


def save_model_folder(
    model, dataset: Dataset, preprocessing: dict, history: dict, summary: dict, out_dir: Path
) -> dict:
    """Writes what scoring needs (model.keras, vocabularies, preprocessing.json) and what
    people look at (training_curve.png, train_summary.json); returns the summary.

    model: the matching model (photo and text in, score out); history: the Keras history
    the training curve shows; summary: training figures, written after the curve's.
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
    plot_training_curve(history, out_dir / TRAINING_CURVE_FILE)
    summary = {
        "epochs_run": len(losses),
        "best_epoch": best_epoch,
        "best_val_loss": round(float(losses[best_epoch - 1]), 5),
        **summary,
    }
    (out_dir / TRAIN_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def plot_training_curve(history: dict, path: Path) -> None:
    """Draws the train and validation loss per epoch of a Keras history to path (a PNG)."""
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
