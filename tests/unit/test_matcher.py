"""Tests for the contrastive phase's loss (pmatch.model.contrastive)."""

from __future__ import annotations

import numpy as np


def _softmax_rows(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_info_nce_with_distinct_products_is_clips_loss():
    from pmatch.model.contrastive import symmetric_info_nce

    logits = np.random.default_rng(7).normal(size=(5, 5)).astype("float32") * 3
    loss = np.asarray(symmetric_info_nce(np.arange(5, dtype="float32"), logits))

    # CLIP: cross-entropy of each row (image -> texts) and column (text -> images) against
    # the diagonal, averaged.
    image_to_text = -np.log(np.diag(_softmax_rows(logits)))
    text_to_image = -np.log(np.diag(_softmax_rows(logits.T)))
    np.testing.assert_allclose(loss, (image_to_text + text_to_image) / 2, rtol=1e-5)


def test_info_nce_counts_a_products_colour_variants_as_positives():
    from pmatch.model.contrastive import symmetric_info_nce

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
