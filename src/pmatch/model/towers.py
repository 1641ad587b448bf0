"""Image and text encoders that map a photo or a title into the shared embedding space."""

from __future__ import annotations

import keras
from keras import layers


def build_image_encoder(image_size: int, projection_dim: int) -> keras.Model:
    """A small CNN: uint8 photos in, unit-length projection_dim embeddings out.

    The strided first convolution keeps it cheap on CPU; global average pooling keeps
    colour and pattern statistics while the stacked convolutions see shape. Inputs stay
    uint8 so cached image arrays feed it directly.
    """
    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    features = layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    features = layers.Conv2D(32, 3, strides=2, padding="same", activation="relu", name="conv1")(
        features
    )
    for index, filters in enumerate((64, 96, 128), start=2):
        features = layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"conv{index}"
        )(features)
        features = layers.MaxPooling2D(name=f"pool{index}")(features)
    features = layers.GlobalAveragePooling2D(name="global_pool")(features)
    features = layers.Dense(projection_dim * 2, activation="relu", name="hidden")(features)
    embedding = layers.Dense(projection_dim, name="projection")(features)
    embedding = layers.UnitNormalization(name="unit_norm")(embedding)
    return keras.Model(image, embedding, name="image_encoder")


def build_text_encoder(
    vocabulary_size: int, max_tokens: int, embedding_dim: int, projection_dim: int
) -> keras.Model:
    """Word embeddings averaged over the text (padding masked), projected to unit length."""
    tokens = keras.Input(shape=(max_tokens,), dtype="int32", name="tokens")
    words = layers.Embedding(vocabulary_size, embedding_dim, mask_zero=True, name="word_embedding")(
        tokens
    )
    features = layers.GlobalAveragePooling1D(name="mean_words")(words)
    features = layers.Dense(projection_dim * 2, activation="relu", name="hidden")(features)
    embedding = layers.Dense(projection_dim, name="projection")(features)
    embedding = layers.UnitNormalization(name="unit_norm")(embedding)
    return keras.Model(tokens, embedding, name="text_encoder")
