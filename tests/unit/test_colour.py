"""The colour histogram sees the product's colour and ignores the white background."""

from __future__ import annotations

import numpy as np

from pmatch.model.colour import COLOUR_FEATURE_DIM, GREY_BINS, HUE_BINS, ColourHistogram


def test_red_product_on_white_votes_red_and_background_is_ignored():
    photo = np.full((1, 64, 64, 3), 255, dtype="uint8")
    photo[0, 16:48, 16:48] = (200, 20, 20)
    features = np.asarray(ColourHistogram()(photo))[0]
    assert features.shape == (COLOUR_FEATURE_DIM,)
    assert features[0] > 0.95  # hue bin 0 is red; the white border does not count
    assert features[HUE_BINS : HUE_BINS + GREY_BINS].sum() < 0.05


def test_black_and_blue_products_differ():
    black = np.full((1, 32, 32, 3), 255, dtype="uint8")
    black[0, 8:24, 8:24] = (15, 15, 15)
    blue = black.copy()
    blue[0, 8:24, 8:24] = (20, 40, 200)
    black_features, blue_features = (
        np.asarray(ColourHistogram()(image))[0] for image in (black, blue)
    )
    assert black_features[HUE_BINS] > 0.95  # darkest grey bin
    assert np.argmax(blue_features[:HUE_BINS]) in (7, 8)  # blue hues (~0.6-0.7)
    assert np.abs(black_features - blue_features).sum() > 1.0
