"""The colour head: a photo's colour features -> the colours its title names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmatch.config import TrainParams
from pmatch.features.dataset import Dataset
from pmatch.model.fitting import STEPS_PER_EXECUTION

# Colour features are picked from this many photos at a time.
PICK_BATCH = 256


def build_colour_head(train_colour_features: np.ndarray, name: str = "colour_head"):
    """Colour features in, a probability for each of COLOUR_CLASSES out (softmax).

    train_colour_features: the train photos' colour features; the head standardises its
    input with their mean and variance. A linear classifier with L2, since a catalogue has
    only hundreds of labelled photos.
    """
    import keras
    from keras import layers

    from pmatch.features.colour import COLOUR_CLASSES

    features = keras.Input(shape=(train_colour_features.shape[1],), name="colour_features")
    normalise = layers.Normalization(name="standardise")
    normalise.adapt(train_colour_features)
    hidden = layers.Dropout(0.2, name="dropout")(normalise(features))
    probabilities = layers.Dense(
        len(COLOUR_CLASSES),
        activation="softmax",
        kernel_regularizer=keras.regularizers.L2(1e-3),
        name="colour_probabilities",
    )(hidden)
    return keras.Model(features, probabilities, name=name)


def colour_features(dataset: Dataset):
    """A layer picking a photo's colour features from what the image tower reads: the
    histogram of its pixels, or the histogram columns of its frozen features."""
    from pmatch.features.colour import COLOUR_FEATURE_DIM, ColourHistogram, ColumnSlice

    if dataset.images is not None:
        return ColourHistogram(name="colour_histogram")
    width = int(dataset.image_features.shape[1])
    return ColumnSlice(width - COLOUR_FEATURE_DIM, width, name="colour_columns")


def colour_examples(dataset: Dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The colour features of a split's photos whose titles name a colour, and as targets
    the colours named (each title's mentions, summing to 1)."""
    picker = colour_features(dataset)
    named = dataset.colour_mentions.sum(axis=1) > 0
    rows = np.flatnonzero((dataset.items["split"].to_numpy() == split) & named)
    inputs = dataset.image_inputs(dataset.items["image_index"].to_numpy()[rows])
    if not len(rows):
        return np.zeros((0, 1), dtype="float32"), dataset.colour_mentions[rows]
    features = np.concatenate(
        [
            np.asarray(picker(inputs[start : start + PICK_BATCH]))
            for start in range(0, len(rows), PICK_BATCH)
        ]
    )
    targets = dataset.colour_mentions[rows]
    return features, targets / targets.sum(axis=1, keepdims=True)


def train_colour_head(dataset: Dataset, params: TrainParams, out_dir: Path, verbose: int):
    """Fits the colour head on the train rows whose titles name a colour, early-stopped on
    the validation rows (train.colour_head_learning_rate, _epochs, _batch_size, _patience).

    The history goes to out_dir/history-colour_head.csv. Returns the head (None when too
    few titles name a colour) and a summary (rows used, epochs, validation accuracy).
    """
    import keras

    examples = {split: colour_examples(dataset, split) for split in ("train", "val")}
    if len(examples["train"][0]) < 2 or len(examples["val"][0]) < 1:
        return None, {"colour_head": "off: too few titles name a colour"}
    head = build_colour_head(examples["train"][0])
    head.compile(
        steps_per_execution=STEPS_PER_EXECUTION,
        optimizer=keras.optimizers.Adam(params.colour_head_learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    history = head.fit(
        *examples["train"],
        validation_data=examples["val"],
        epochs=params.colour_head_epochs,
        batch_size=params.colour_head_batch_size,
        shuffle=True,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=params.colour_head_patience,
                restore_best_weights=True,
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
