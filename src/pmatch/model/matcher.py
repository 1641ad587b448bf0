"""The matching model: two towers and a scorer that turns their embeddings into a match score."""

from __future__ import annotations

import keras
from keras import layers

from pmatch.model.towers import build_image_encoder, build_text_encoder


def build_scorer(projection_dim: int) -> keras.Model:
    """Scores a pair of embeddings in [0, 1]: a weighted cosine similarity through a sigmoid.

    It reads only embeddings, so a batch can be scored from cached tower outputs.
    """
    image_embedding = keras.Input(shape=(projection_dim,), name="image_embedding")
    text_embedding = keras.Input(shape=(projection_dim,), name="text_embedding")
    agreement = layers.Multiply(name="agreement")([image_embedding, text_embedding])
    score = layers.Dense(1, activation="sigmoid", name="match_probability")(agreement)
    score = layers.Flatten(name="score")(score)
    return keras.Model([image_embedding, text_embedding], score, name="scorer")


def build_matching_model(
    image_size: int, vocabulary_size: int, max_tokens: int, embedding_dim: int, projection_dim: int
) -> keras.Model:
    """Photo and token ids in, match score out; the towers are named sub-models."""
    image_encoder = build_image_encoder(image_size, projection_dim)
    text_encoder = build_text_encoder(vocabulary_size, max_tokens, embedding_dim, projection_dim)
    scorer = build_scorer(projection_dim)
    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    tokens = keras.Input(shape=(max_tokens,), dtype="int32", name="tokens")
    score = scorer([image_encoder(image), text_encoder(tokens)])
    return keras.Model({"image": image, "tokens": tokens}, score, name="matching_model")
