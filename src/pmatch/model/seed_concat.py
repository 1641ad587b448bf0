"""The seed project's design, kept as a baseline (train.kind: seed_concat).

A VGG16-style image tower (no pretrained weights), an Embedding + LSTM text tower, tanh
Dense alignment layers, concatenation and a sigmoid classifier trained with binary
cross-entropy on labelled pairs. It exposes the same image_encoder / text_encoder / scorer
sub-models as the two-tower model, so scoring, evaluation and monitoring treat it alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmatch.config import TrainParams
from pmatch.features.dataset import Dataset

ALIGNMENT_DIM = 256


def build_seed_concat(image_size: int, vocabulary_size: int, max_tokens: int, embedding_dim: int):
    """(image_encoder, text_encoder, scorer) of the seed design."""
    import keras
    from keras import layers

    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    features = layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    # VGG16's layout: 2-2-3-3-3 convolutions of 64-128-256-512-512 filters, max pooling after each block.
    for block, (filters, convolutions) in enumerate(
        ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1
    ):
        for index in range(1, convolutions + 1):
            features = layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"block{block}_conv{index}"
            )(features)
        features = layers.MaxPooling2D(name=f"block{block}_pool")(features)
    features = layers.Flatten(name="flatten")(features)
    image_embedding = layers.Dense(ALIGNMENT_DIM, activation="tanh", name="align")(features)
    image_encoder = keras.Model(image, image_embedding, name="image_encoder")

    tokens = keras.Input(shape=(max_tokens,), dtype="int32", name="tokens")
    words = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name="word_embedding")(
        tokens
    )
    sequence = layers.LSTM(128, name="lstm")(words)
    text_embedding = layers.Dense(ALIGNMENT_DIM, activation="tanh", name="align")(sequence)
    text_encoder = keras.Model(tokens, text_embedding, name="text_encoder")

    image_input = keras.Input(shape=(ALIGNMENT_DIM,), name="image_embedding")
    text_input = keras.Input(shape=(ALIGNMENT_DIM,), name="text_embedding")
    joined = layers.Concatenate(name="concatenate")([image_input, text_input])
    score = layers.Dense(1, activation="sigmoid", name="match_probability")(joined)
    scorer = keras.Model(
        [image_input, text_input], layers.Flatten(name="score")(score), name="scorer"
    )
    return image_encoder, text_encoder, scorer


def train_seed_concat(
    dataset: Dataset, params: TrainParams, out_dir: Path, verbose: int = 2
) -> dict:
    """Trains the seed design with binary cross-entropy on the train pairs, early-stopped on
    the validation pairs' loss, and writes the same model folder as the two-tower model."""
    from pmatch.model.fitting import fit_on_pairs
    from pmatch.model.folder import save_model_folder
    from pmatch.model.matcher import assemble_matching_model

    if dataset.images is None or dataset.tokens is None:
        raise ValueError(
            "train.kind seed_concat needs preprocess.image_features pixels and text_features tokens"
        )
    image_encoder, text_encoder, scorer = build_seed_concat(
        int(dataset.images.shape[1]),
        len(dataset.vocabulary),
        int(dataset.tokens.shape[1]),
        params.embedding_dim,
    )
    model = assemble_matching_model(image_encoder, text_encoder, scorer)
    history = fit_on_pairs(
        model,
        dataset,
        Path(out_dir),
        verbose,
        learning_rate=params.learning_rate,
        epochs=params.num_epochs,
        batch_size=params.batch_size,
        patience=params.early_stopping_patience,
    )
    train_pairs, val_pairs = dataset.split_pairs("train"), dataset.split_pairs("val")
    summary = {
        "kind": "seed_concat",
        "train_pairs": int(len(train_pairs)),
        "val_pairs": int(len(val_pairs)),
        "trainable_parameters": int(model.count_params()),
        "best_val_auc": round(float(np.max(history.history["val_auc"])), 5),
    }
    return save_model_folder(
        model, dataset, dataset.preprocessing, history.history, summary, Path(out_dir)
    )
