"""Variant contrast (benchmarks/variants.py): a score weighed against the product's variants."""

import sys
from pathlib import Path

import numpy as np
import pytest

# Variant contrast is a benchmark row, not part of pmatch: its module lives in benchmarks/.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from variants import contrast_with_variants, logit  # noqa: E402

# Photos and texts 0-2: product A in three colours; 3: product B, sold in one colour.
PRODUCTS = np.array(["A", "A", "A", "B"])
# SCORES[photo, text]: photo 0 fits its own text (0) and, a little less, text 1.
SCORES = np.array(
    [
        [0.80, 0.70, 0.10, 0.05],
        [0.30, 0.90, 0.20, 0.05],
        [0.10, 0.20, 0.90, 0.05],
        [0.05, 0.05, 0.05, 0.60],
    ]
)


def score(photos, texts):
    return SCORES[photos, texts]


def contrast(photos, texts, text_weight=0.25, photo_weight=0.25):
    return contrast_with_variants(
        score, np.array(photos), np.array(texts), PRODUCTS, PRODUCTS, text_weight, photo_weight
    )


def test_a_sibling_that_fits_less_well_than_the_own_title_loses_more_than_the_match():
    match, sibling = contrast([0, 0], [0, 1])
    assert sibling < SCORES[0, 1]
    assert SCORES[0, 0] - match < SCORES[0, 1] - sibling
    assert match > sibling


def test_a_product_without_other_variants_keeps_its_score():
    assert contrast([3], [3])[0] == pytest.approx(SCORES[3, 3])


def test_zero_weights_keep_every_score():
    photos, texts = [0, 1, 2, 3, 0], [0, 0, 2, 3, 3]
    np.testing.assert_allclose(contrast(photos, texts, 0, 0), SCORES[photos, texts], rtol=1e-6)


def test_the_adjusted_logit_is_the_weighted_log_softmax_over_the_product():
    text_weight, photo_weight = 0.5, 0.25
    adjusted = contrast([1], [0], text_weight, photo_weight)[0]
    logits = logit(SCORES)
    own = logits[1, 0]
    over_texts = own - np.log(np.exp(logits[1, :3]).sum())
    over_photos = own - np.log(np.exp(logits[:3, 0]).sum())
    expected = own + text_weight * over_texts + photo_weight * over_photos
    assert logit(adjusted) == pytest.approx(expected, rel=1e-5)


def test_no_pairs_give_no_scores():
    assert contrast([], []).shape == (0,)
