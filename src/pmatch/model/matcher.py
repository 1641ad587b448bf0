"""The matching model: two towers, a contrastive objective, and a calibrated match scorer."""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from pmatch.model.towers import build_image_encoder, build_text_encoder

MAX_LOGIT_SCALE = math.log(100.0)


@keras.saving.register_keras_serializable(package="pmatch")
class PairFeatures(layers.Layer):
    """What the match head compares: the element-wise product and absolute difference of
    two embeddings, and their cosine (dot product of unit vectors)."""

    def call(self, inputs):
        image_embedding, text_embedding = inputs
        product = image_embedding * text_embedding
        return ops.concatenate(
            [
                product,
                ops.abs(image_embedding - text_embedding),
                ops.sum(product, axis=-1, keepdims=True),
            ],
            axis=-1,
        )

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], 2 * input_shape[0][-1] + 1)


def build_scorer(projection_dim: int) -> keras.Model:
    """The match head: a small MLP over PairFeatures of two embeddings, score in [0, 1].

    It reads only embeddings, so a batch can be scored from cached tower outputs. It is
    trained with binary cross-entropy on labelled pairs, hard negatives included.
    """
    image_embedding = keras.Input(shape=(projection_dim,), name="image_embedding")
    text_embedding = keras.Input(shape=(projection_dim,), name="text_embedding")
    features = PairFeatures(name="pair_features")([image_embedding, text_embedding])
    hidden = layers.Dense(64, activation="relu", name="hidden")(features)
    hidden = layers.Dropout(0.2, name="dropout")(hidden)
    score = layers.Dense(1, activation="sigmoid", name="match_probability")(hidden)
    score = layers.Flatten(name="score")(score)
    return keras.Model([image_embedding, text_embedding], score, name="scorer")


def build_feature_head(
    train_features, projection_dim: int, name: str, input_name: str
) -> keras.Model:
    """A projection head over frozen pretrained features, to unit-length embeddings.

    train_features: the train split's features; the head standardises its input with their
    mean and variance (kept in the saved model).
    """
    features = keras.Input(shape=(train_features.shape[1],), name=input_name)
    normalise = layers.Normalization(name="standardise")
    normalise.adapt(train_features)
    hidden = layers.Dropout(0.2, name="input_dropout")(normalise(features))
    hidden = layers.Dense(projection_dim * 2, activation="relu", name="hidden")(hidden)
    hidden = layers.Dropout(0.1, name="dropout")(hidden)
    embedding = layers.Dense(projection_dim, name="projection")(hidden)
    embedding = layers.UnitNormalization(name="unit_norm")(embedding)
    return keras.Model(features, embedding, name=name)


def assemble_matching_model(
    image_encoder: keras.Model, text_encoder: keras.Model, scorer: keras.Model
) -> keras.Model:
    """Photo and text inputs in, match score out; encoders and scorer are named sub-models."""
    image = keras.Input(shape=image_encoder.input_shape[1:], dtype="uint8", name="image")
    text_inputs = _fresh_inputs(text_encoder)
    score = scorer([image_encoder(image), text_encoder(text_inputs)])
    inputs = {"image": image}
    inputs.update(text_inputs if isinstance(text_inputs, dict) else {"tokens": text_inputs})
    return keras.Model(inputs, score, name="matching_model")


def _fresh_inputs(model: keras.Model):
    """New Input tensors shaped like model's inputs (a dict when it takes several)."""
    if isinstance(model.input, dict):
        return {
            name: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
            for name, tensor in model.input.items()
        }
    return keras.Input(shape=model.input_shape[1:], dtype=model.input.dtype, name=model.input.name)


def build_matching_model(
    image_size: int, vocabulary_size: int, max_tokens: int, embedding_dim: int, projection_dim: int
) -> keras.Model:
    """The from-scratch matching model: a CNN and a word-embedding tower."""
    return assemble_matching_model(
        build_image_encoder(image_size, projection_dim),
        build_text_encoder(vocabulary_size, max_tokens, embedding_dim, projection_dim),
        build_scorer(projection_dim),
    )


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


def build_contrastive_trainer(image_tower: keras.Model, text_tower: keras.Model) -> keras.Model:
    """Wraps two towers for contrastive training on matched rows; it shares their weights
    and is never saved (only the matching model is)."""
    image = _fresh_inputs(image_tower)
    text = _fresh_inputs(text_tower)
    logits = BatchSimilarity(name="batch_similarity")([image_tower(image), text_tower(text)])
    return keras.Model({image.name: image, text.name: text}, logits, name="contrastive_trainer")
