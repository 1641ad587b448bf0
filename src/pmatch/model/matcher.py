"""The matching model: two towers, a contrastive objective, and a calibrated match scorer."""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from pmatch.model.towers import build_image_encoder, build_text_encoder

MAX_LOGIT_SCALE = math.log(100.0)


def build_scorer(projection_dim: int) -> keras.Model:
    """Scores a pair of unit embeddings in [0, 1]: sigmoid(scale * cosine + bias).

    It reads only embeddings, so a batch can be scored from cached tower outputs. Scale
    and bias are calibrated after contrastive training (see training.calibrate_scorer).
    """
    image_embedding = keras.Input(shape=(projection_dim,), name="image_embedding")
    text_embedding = keras.Input(shape=(projection_dim,), name="text_embedding")
    cosine = layers.Dot(axes=1, name="cosine")([image_embedding, text_embedding])
    score = layers.Dense(
        1,
        activation="sigmoid",
        kernel_initializer=keras.initializers.Constant(10.0),
        name="match_probability",
    )(cosine)
    score = layers.Flatten(name="score")(score)
    return keras.Model([image_embedding, text_embedding], score, name="scorer")


def build_matching_model(
    image_size: int, vocabulary_size: int, max_tokens: int, embedding_dim: int, projection_dim: int
) -> keras.Model:
    """Photo and token ids in, match score out; the towers and scorer are named sub-models."""
    image_encoder = build_image_encoder(image_size, projection_dim)
    text_encoder = build_text_encoder(vocabulary_size, max_tokens, embedding_dim, projection_dim)
    scorer = build_scorer(projection_dim)
    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    tokens = keras.Input(shape=(max_tokens,), dtype="int32", name="tokens")
    score = scorer([image_encoder(image), text_encoder(tokens)])
    return keras.Model({"image": image, "tokens": tokens}, score, name="matching_model")


class BatchSimilarity(layers.Layer):
    """Cosine similarities of every image with every text in a batch, times a learnable
    inverse temperature (initialised to 1/0.07, capped at 100 as in CLIP)."""

    def build(self, input_shape):
        self.logit_scale = self.add_weight(
            shape=(),
            name="logit_scale",
            initializer=keras.initializers.Constant(math.log(1 / 0.07)),
        )

    def call(self, inputs):
        image_embeddings, text_embeddings = inputs
        scale = ops.exp(ops.minimum(self.logit_scale, MAX_LOGIT_SCALE))
        return ops.matmul(image_embeddings, ops.transpose(text_embeddings)) * scale


def symmetric_info_nce(unused_labels, logits):
    """InfoNCE both ways: row i's image must pick text i among the batch, and text i its image.

    The labels are implicit (the diagonal), so the targets passed to fit() are ignored.
    """
    targets = ops.arange(ops.shape(logits)[0])
    image_to_text = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    text_to_image = keras.losses.sparse_categorical_crossentropy(
        targets, ops.transpose(logits), from_logits=True
    )
    return (image_to_text + text_to_image) / 2


def build_contrastive_trainer(matching_model: keras.Model) -> keras.Model:
    """Wraps the towers of matching_model for contrastive training on matched rows.

    The trainer shares the towers' weights; only the matching model is saved.
    """
    image_encoder = matching_model.get_layer("image_encoder")
    text_encoder = matching_model.get_layer("text_encoder")
    image = keras.Input(shape=image_encoder.input_shape[1:], dtype="uint8", name="image")
    tokens = keras.Input(shape=text_encoder.input_shape[1:], dtype="int32", name="tokens")
    logits = BatchSimilarity(name="batch_similarity")([image_encoder(image), text_encoder(tokens)])
    return keras.Model({"image": image, "tokens": tokens}, logits, name="contrastive_trainer")
