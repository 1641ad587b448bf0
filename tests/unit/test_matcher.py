"""Tests for pmatch.model.matcher's heads over frozen features."""

from __future__ import annotations

import numpy as np
import pytest


def test_a_locked_text_head_is_the_train_texts_principal_directions_and_never_trains():
    import keras

    from pmatch.model.matcher import build_locked_text_head

    generator = np.random.default_rng(3)
    # 40 train "sentence embeddings" of width 12, spread most along the first axes.
    train = generator.normal(size=(40, 12)) * np.linspace(3, 0.1, 12) + 5.0
    head = build_locked_text_head(train, projection_dim=4)

    new = generator.normal(size=(6, 12)) + 5.0
    embedded = np.asarray(head.predict_on_batch(new.astype("float32")))
    mean = train.mean(axis=0)
    _, _, directions = np.linalg.svd(train - mean, full_matrices=False)
    expected = (new - mean) @ directions[:4].T
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    # Principal directions are defined up to sign; compare each column up to it.
    signs = np.sign((embedded * expected).sum(axis=0))
    np.testing.assert_allclose(embedded, expected * signs, atol=1e-5)

    assert head.trainable_weights == []
    before = [weights.copy() for weights in head.get_weights()]
    head.compile(optimizer=keras.optimizers.Adam(0.1), loss="mse")
    head.fit(new.astype("float32"), np.zeros((6, 4), "float32"), epochs=2, verbose=0)
    for weights, original in zip(head.get_weights(), before, strict=True):
        np.testing.assert_array_equal(weights, original)


def test_a_locked_text_head_with_fewer_train_texts_than_directions_still_gives_unit_vectors():
    from pmatch.model.matcher import build_locked_text_head

    train = np.random.default_rng(5).normal(size=(3, 10))
    head = build_locked_text_head(train, projection_dim=6)
    embedded = np.asarray(head.predict_on_batch(train.astype("float32") + 0.5))
    np.testing.assert_allclose(np.linalg.norm(embedded, axis=1), 1.0, atol=1e-5)


def test_a_locked_text_head_wider_than_its_features_names_the_param():
    from pmatch.model.matcher import build_locked_text_head

    with pytest.raises(ValueError, match=r"train\.projection_dim must be in \[1, 8\], got 9"):
        build_locked_text_head(np.zeros((20, 8)), projection_dim=9)


def _softmax_rows(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_info_nce_with_distinct_products_is_clips_loss():
    from pmatch.model.matcher import symmetric_info_nce

    logits = np.random.default_rng(7).normal(size=(5, 5)).astype("float32") * 3
    loss = np.asarray(symmetric_info_nce(np.arange(5, dtype="float32"), logits))

    # CLIP: cross-entropy of each row (image -> texts) and column (text -> images) against
    # the diagonal, averaged.
    image_to_text = -np.log(np.diag(_softmax_rows(logits)))
    text_to_image = -np.log(np.diag(_softmax_rows(logits.T)))
    np.testing.assert_allclose(loss, (image_to_text + text_to_image) / 2, rtol=1e-5)


def test_info_nce_counts_a_products_colour_variants_as_positives():
    from pmatch.model.matcher import symmetric_info_nce

    logits = np.random.default_rng(8).normal(size=(4, 4)).astype("float32")
    # Rows 0 and 1 are colour variants of one product.
    products = np.array([3, 3, 5, 9], dtype="float32")
    loss = np.asarray(symmetric_info_nce(products, logits))

    positives = products[:, None] == products[None, :]
    image_to_text = -np.log((_softmax_rows(logits) * positives).sum(axis=1))
    text_to_image = -np.log((_softmax_rows(logits.T) * positives).sum(axis=1))
    np.testing.assert_allclose(loss, (image_to_text + text_to_image) / 2, rtol=1e-5)
    # Not CLIP's loss: there, text 1 is a negative of image 0.
    clip = np.asarray(symmetric_info_nce(np.arange(4, dtype="float32"), logits))
    assert loss[0] < clip[0] and loss[1] < clip[1]
    np.testing.assert_allclose(loss[2:], clip[2:], rtol=1e-5)
