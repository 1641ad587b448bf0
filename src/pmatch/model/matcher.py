"""The matching model: two towers, a contrastive objective, and a calibrated match scorer."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from pmatch.model.towers import build_image_encoder, build_text_encoder

MAX_LOGIT_SCALE = math.log(100.0)


@keras.saving.register_keras_serializable(package="pmatch")
class PairFeatures(layers.Layer):
    """What the match head compares: the element-wise product and absolute difference of
    two embeddings, and their cosine (dot product of unit vectors).

    projection_dim: when set, each input is an embedding of this width followed by colour
    columns: the photo's colour probabilities and the text's colour mentions (both over
    pmatch.features.colour.COLOUR_CLASSES). Their agreement is added: the highest probability the
    photo gives a colour the title names, whether the title names one, and its log.
    """

    def __init__(self, projection_dim: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.projection_dim = projection_dim

    def call(self, inputs):
        image_embedding, text_embedding = inputs
        extra = []
        if self.projection_dim is not None:
            width = self.projection_dim
            colour_probabilities, mentions = image_embedding[:, width:], text_embedding[:, width:]
            image_embedding, text_embedding = image_embedding[:, :width], text_embedding[:, :width]
            names_colour = ops.max(mentions, axis=-1, keepdims=True)
            # The likeliest of the colours the title names ("navy blue" names two).
            agreement = ops.max(colour_probabilities * mentions, axis=-1, keepdims=True)
            extra = [agreement, names_colour, ops.sqrt(agreement) * names_colour]
        product = image_embedding * text_embedding
        return ops.concatenate(
            [
                product,
                ops.abs(image_embedding - text_embedding),
                ops.sum(product, axis=-1, keepdims=True),
                *extra,
            ],
            axis=-1,
        )

    def compute_output_shape(self, input_shape):
        if self.projection_dim is None:
            return (input_shape[0][0], 2 * input_shape[0][-1] + 1)
        return (input_shape[0][0], 2 * self.projection_dim + 4)

    def get_config(self):
        return {**super().get_config(), "projection_dim": self.projection_dim}


def build_scorer(projection_dim: int, colour_classes: int = 0, name: str = "scorer") -> keras.Model:
    """The match head: a small MLP over PairFeatures of two embeddings, score in [0, 1].

    It reads only embeddings, so a batch can be scored from cached tower outputs. It is
    trained with binary cross-entropy on labelled pairs, hard negatives included.
    colour_classes: width of the colour columns after each embedding (0: none).
    """
    width = projection_dim + colour_classes
    image_embedding = keras.Input(shape=(width,), name="image_embedding")
    text_embedding = keras.Input(shape=(width,), name="text_embedding")
    features = PairFeatures(projection_dim if colour_classes else None, name="pair_features")(
        [image_embedding, text_embedding]
    )
    hidden = layers.Dense(64, activation="relu", name="hidden")(features)
    hidden = layers.Dropout(0.2, name="dropout")(hidden)
    score = layers.Dense(1, activation="sigmoid", name="match_probability")(hidden)
    score = layers.Flatten(name="score")(score)
    return keras.Model([image_embedding, text_embedding], score, name=name)


def stack_members(members) -> tuple[keras.Model, keras.Model, keras.Model]:
    """The image tower, text tower and scorer of an ensemble, shaped as one member's.

    members: objects with image_side, text_side and scorer (pmatch.model.training.Member).
    Each tower puts the members' outputs side by side; the scorer gives member k its slice
    of each and averages their scores. So scoring from cached embeddings works as for one
    member. One member is returned as it is.
    """
    from pmatch.features.colour import ColumnSlice

    if len(members) == 1:
        return members[0].image_side, members[0].text_side, members[0].scorer
    towers = []
    for side, name in (("image_side", "image_tower"), ("text_side", "text_tower")):
        inputs = fresh_inputs(getattr(members[0], side))
        outputs = [getattr(member, side)(inputs) for member in members]
        towers.append(keras.Model(inputs, layers.Concatenate(name="members")(outputs), name=name))
    width = members[0].scorer.input_shape[0][-1]
    image_embedding = keras.Input(shape=(width * len(members),), name="image_embedding")
    text_embedding = keras.Input(shape=(width * len(members),), name="text_embedding")
    scores = []
    for index, member in enumerate(members):
        columns = (index * width, (index + 1) * width)
        scores.append(
            member.scorer(
                [
                    ColumnSlice(*columns, name=f"image_member_{index + 1}")(image_embedding),
                    ColumnSlice(*columns, name=f"text_member_{index + 1}")(text_embedding),
                ]
            )
        )
    score = layers.Average(name="score")(scores)
    scorer = keras.Model([image_embedding, text_embedding], score, name="scorer")
    return towers[0], towers[1], scorer


def build_feature_head(
    train_features, projection_dim: int, name: str, input_name: str, front=None
) -> keras.Model:
    """A projection head over frozen pretrained features, to unit-length embeddings.

    train_features: the train split's features; the head standardises its input with their
    mean and variance (kept in the saved model).
    front: an optional model between the input and the head (EfficientNet-Lite0's top blocks
    when they are fine-tuned); the statistics are then taken of its output.
    """
    features = keras.Input(shape=(train_features.shape[1],), name=input_name)
    inputs = features
    if front is not None:
        train_features = np.concatenate(
            [
                np.asarray(front(train_features[start : start + 256], training=False))
                for start in range(0, len(train_features), 256)
            ]
        )
        inputs = front(features)
    normalise = layers.Normalization(name="standardise")
    normalise.adapt(train_features)
    hidden = layers.Dropout(0.2, name="input_dropout")(normalise(inputs))
    hidden = layers.Dense(projection_dim * 2, activation="relu", name="hidden")(hidden)
    hidden = layers.Dropout(0.1, name="dropout")(hidden)
    embedding = layers.Dense(projection_dim, name="projection")(hidden)
    embedding = layers.UnitNormalization(name="unit_norm")(embedding)
    return keras.Model(features, embedding, name=name)


def build_locked_text_head(train_features, projection_dim: int, name: str = "text_head"):
    """A fixed text head over frozen sentence embeddings: centred on the train texts' mean,
    projected onto their projection_dim principal directions, unit length. Nothing in it
    trains (train.text_head: locked), so the shared space keeps MiniLM's geometry and only
    the image head learns to land in it, as in LiT's locked tower, with the roles swapped.

    On a catalogue of a few hundred products a learned text head fits its train titles'
    wording; a locked one keeps what MiniLM knows of products the train split does not show
    (docs/design.md; on Luma hard-negative F1 +0.025 over 9 runs, on the synthetic
    sample F1 -0.010).
    """
    train_features = np.asarray(train_features, dtype="float64")
    width = train_features.shape[1]
    if not 1 <= projection_dim <= width:
        raise ValueError(
            f"a locked text head keeps projection_dim of the text features' {width} principal "
            f"directions: train.projection_dim must be in [1, {width}], got {projection_dim}"
        )
    mean = train_features.mean(axis=0)
    _, _, directions = np.linalg.svd(train_features - mean, full_matrices=False)
    if len(directions) < projection_dim:
        # Fewer train texts than directions asked for: the rest span nothing the train
        # split shows; any orthonormal completion will do.
        basis = np.linalg.qr(np.concatenate([directions.T, np.eye(width)], axis=1))[0]
        directions = basis[:, :projection_dim].T
    directions = directions[:projection_dim].T
    features = keras.Input(shape=(width,), name="text_features")
    # (x - mean) @ directions, the centring folded into the bias.
    project = layers.Dense(projection_dim, name="projection", trainable=False)
    embedding = layers.UnitNormalization(name="unit_norm")(project(features))
    head = keras.Model(features, embedding, name=name)
    project.set_weights([directions.astype("float32"), (-mean @ directions).astype("float32")])
    head.trainable = False
    return head


def assemble_matching_model(
    image_encoder: keras.Model, text_encoder: keras.Model, scorer: keras.Model
) -> keras.Model:
    """Photo and text inputs in, match score out; encoders and scorer are named sub-models."""
    image = keras.Input(shape=image_encoder.input_shape[1:], dtype="uint8", name="image")
    text_inputs = fresh_inputs(text_encoder)
    score = scorer([image_encoder(image), text_encoder(text_inputs)])
    inputs = {"image": image}
    inputs.update(text_inputs if isinstance(text_inputs, dict) else {"tokens": text_inputs})
    return keras.Model(inputs, score, name="matching_model")


def fresh_inputs(model: keras.Model):
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


def symmetric_info_nce(product_ids, logits):
    """InfoNCE both ways: row i's image must pick its product's texts among the batch, and
    text i its product's images.

    product_ids: one id per row of the batch. Rows of one product (its colour variants) are
    positives of each other, as in supervised contrastive learning: their texts differ only
    in the colour word, which the colour head reads, so the shared space is not asked to
    pull them apart. With all ids distinct this is CLIP's loss (the diagonal is the label).
    """
    product_ids = ops.reshape(product_ids, (-1,))
    same_product = ops.equal(product_ids[:, None], product_ids[None, :])
    # log(1) on positives, a large negative number elsewhere (log(0) would give NaN grads).
    log_positive = ops.where(same_product, 0.0, -1e9)

    def pick_positives(rows):
        log_probability = rows - ops.logsumexp(rows, axis=1, keepdims=True)
        return -ops.logsumexp(log_probability + log_positive, axis=1)

    return (pick_positives(logits) + pick_positives(ops.transpose(logits))) / 2


def build_contrastive_trainer(image_tower: keras.Model, text_tower: keras.Model) -> keras.Model:
    """Wraps two towers for contrastive training on matched rows; it shares their weights
    and is never saved (only the matching model is)."""
    image = fresh_inputs(image_tower)
    text = fresh_inputs(text_tower)
    logits = BatchSimilarity(name="batch_similarity")([image_tower(image), text_tower(text)])
    return keras.Model({image.name: image, text.name: text}, logits, name="contrastive_trainer")


def build_image_tower(
    head: keras.Model, colour_head=None, colour_features=None, name: str = "image_tower"
) -> keras.Model:
    """What the scorer reads of a photo: the head's embedding, then (with a colour head) the
    colour probabilities of colour_features(photo input), a layer picking colour features."""
    inputs = fresh_inputs(head)
    embedding = head(inputs)
    if colour_head is not None:
        colours = colour_head(colour_features(inputs))
        embedding = layers.Concatenate(name="with_colour")([embedding, colours])
    return keras.Model(inputs, embedding, name=name)


def build_text_tower(
    head: keras.Model, colour_classes: int = 0, name: str = "text_tower"
) -> keras.Model:
    """What the scorer reads of a text: the head's embedding, then (colour_classes > 0) the
    colours its title names, an input computed by ColourMentions."""
    inputs = fresh_inputs(head)
    if not colour_classes:
        return keras.Model(inputs, head(inputs), name=name)
    mentions = keras.Input(shape=(colour_classes,), name="colour_mentions")
    embedding = layers.Concatenate(name="with_colour")([head(inputs), mentions])
    return keras.Model({inputs.name: inputs, "colour_mentions": mentions}, embedding, name=name)
