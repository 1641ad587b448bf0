"""The matching model's parts: heads over frozen features, towers, the match scorer, the saved model."""

from __future__ import annotations

import keras
from keras import layers, ops


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
    train_features, projection_dim: int, name: str, input_name: str
) -> keras.Model:
    """A projection head over frozen pretrained features, to unit-length embeddings.

    train_features: the train split's features; the head standardises its input with their
    mean and variance (kept in the saved model). input_name: its input's name.
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
    text_inputs = fresh_inputs(text_encoder)
    score = scorer([image_encoder(image), text_encoder(text_inputs)])
    inputs = {"image": image}
    inputs.update(text_inputs if isinstance(text_inputs, dict) else {"tokens": text_inputs})
    return keras.Model(inputs, score, name="matching_model")


def frozen_backbones(preprocessing: dict) -> tuple:
    """The frozen pretrained networks inference_encoders puts before the towers, for the
    dataset's preprocessing.json: (image backbone or None, text backbone or None), None where
    the towers read pixels or tokens themselves. Building them takes seconds (training does
    it while other processes finish their members)."""
    from pmatch.features.encoders import image_feature_encoder, text_feature_encoder

    image = None
    if preprocessing["image_features"] == "efficientnet_lite0":
        image = image_feature_encoder(preprocessing["image_size"])
    text = None
    if preprocessing["text_features"] == "minilm":
        text, _ = text_feature_encoder(preprocessing["max_tokens"])
    return image, text


def inference_encoders(
    image_side, text_side, preprocessing: dict, colour_mentions=None, backbones=None
):
    """Encoders that read photos and text ids: the towers the scorer was trained with,
    behind the frozen pretrained networks when they were trained on their features.

    image_side / text_side: the trained towers with their colour columns (build_image_tower,
    build_text_tower, or stack_members' for an ensemble); preprocessing: the dataset's
    preprocessing.json. colour_mentions: the ColourMentions layer that fed the text tower in
    training (None when the towers carry no colour), applied here to the text's ids.
    backbones: frozen_backbones(preprocessing) when already built (None: built here).
    """
    image_backbone, text_backbone = backbones or frozen_backbones(preprocessing)
    if image_backbone is not None:
        image = keras.Input(shape=image_backbone.input_shape[1:], dtype="uint8", name="image")
        image_encoder = keras.Model(image, image_side(image_backbone(image)), name="image_encoder")
    else:
        image = keras.Input(shape=image_side.input_shape[1:], dtype="uint8", name="image")
        image_encoder = keras.Model(image, image_side(image), name="image_encoder")

    if text_backbone is not None:
        text = {
            name: keras.Input(shape=(preprocessing["max_tokens"],), dtype="int32", name=name)
            for name in ("input_ids", "attention_mask")
        }
        ids, features, feature_name = text["input_ids"], text_backbone(text), "text_features"
    else:
        text = keras.Input(shape=(preprocessing["max_tokens"],), dtype="int32", name="tokens")
        ids, features, feature_name = text, text, "tokens"
    if colour_mentions is None:
        embedding = text_side(features)
    else:
        embedding = text_side({feature_name: features, "colour_mentions": colour_mentions(ids)})
    return image_encoder, keras.Model(text, embedding, name="text_encoder")


def fresh_inputs(model: keras.Model):
    """New Input tensors shaped like model's inputs (a dict when it takes several)."""
    if isinstance(model.input, dict):
        return {
            name: keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
            for name, tensor in model.input.items()
        }
    return keras.Input(shape=model.input_shape[1:], dtype=model.input.dtype, name=model.input.name)


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
