"""Variant contrast: a pair's score weighed against its product's other colour variants.

A benchmark row only (benchmarks/quality.py, docs/results.md); pmatch's pipeline does not
use it. The match head scores one photo and one title alone. Where a catalogue lists a product's
colour variants, each can also be compared with its siblings: of the product's titles, does
this photo fit this one best, and of the product's photos, does this title fit this one
best? The adjusted logit is

    l + text_weight * log_softmax_k l(photo, text_k) + photo_weight * log_softmax_m l(photo_m, text)

with k over the titles of the text's product and m over the photos of the photo's product
(each including the pair's own). A product without other variants keeps its score: both
log-softmaxes are 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Scores are clipped this far from 0 and 1 before taking logits.
SCORE_EPSILON = 1e-6


def logit(scores: np.ndarray) -> np.ndarray:
    scores = np.clip(np.asarray(scores, dtype="float64"), SCORE_EPSILON, 1 - SCORE_EPSILON)
    return np.log(scores / (1 - scores))


def contrast_with_variants(
    score,
    pair_photos: np.ndarray,
    pair_texts: np.ndarray,
    photo_products: np.ndarray,
    text_products: np.ndarray,
    text_weight: float,
    photo_weight: float,
) -> np.ndarray:
    """Match scores in (0, 1) of the pairs (pair_photos[i], pair_texts[i]), each contrasted
    with the other variants of its product (module docstring).

    score(photos, texts): match scores of row-aligned photo and text indices.
    photo_products / text_products: the product of each photo and text index (one entry
        per index); the photos and texts of a product are its variants.
    """
    pair_photos, pair_texts = np.asarray(pair_photos), np.asarray(pair_texts)
    photo_products, text_products = np.asarray(photo_products), np.asarray(text_products)
    if len(pair_photos) == 0:
        return np.zeros(0)
    own = logit(score(pair_photos, pair_texts))
    if text_weight == 0 and photo_weight == 0:
        return 1 / (1 + np.exp(-own))
    texts_of = _members(text_products)
    photos_of = _members(photo_products)
    # Every (photo, sibling text) and (sibling photo, text) the pairs need, scored once.
    needed = set()
    for photo, text in zip(pair_photos.tolist(), pair_texts.tolist(), strict=True):
        needed.update((photo, sibling) for sibling in texts_of[text_products[text]])
        needed.update((sibling, text) for sibling in photos_of[photo_products[photo]])
    needed = sorted(needed)
    photos, texts = (np.array(column) for column in zip(*needed, strict=True))
    logits = dict(zip(needed, logit(score(photos, texts)).tolist(), strict=True))
    adjusted = own.copy()
    for index, (photo, text) in enumerate(
        zip(pair_photos.tolist(), pair_texts.tolist(), strict=True)
    ):
        over_texts = [logits[photo, sibling] for sibling in texts_of[text_products[text]]]
        over_photos = [logits[sibling, text] for sibling in photos_of[photo_products[photo]]]
        adjusted[index] += text_weight * (own[index] - _logsumexp(over_texts))
        adjusted[index] += photo_weight * (own[index] - _logsumexp(over_photos))
    return 1 / (1 + np.exp(-adjusted))


def _members(products: np.ndarray) -> dict:
    """{product: [the indices of its photos or texts]}."""
    members: dict = {}
    for index, product in enumerate(products.tolist()):
        members.setdefault(product, []).append(index)
    return members


def _logsumexp(values: list[float]) -> float:
    values = np.asarray(values)
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))


def score_pairs_with_variants(
    matcher, dataset, pairs: pd.DataFrame, text_weight: float, photo_weight: float
) -> np.ndarray:
    """pmatch.evaluate.score_pairs, each pair weighed against the other colour variants of
    its products: the catalogue rows sharing the photo's or the text's product_id.

    matcher: a loaded pmatch.model.inference.Matcher.
    dataset: the prepared pmatch.features.dataset.Dataset the pairs index into.
    pairs: a frame with image_row and text_row columns (catalogue rows of dataset).
    text_weight, photo_weight: the weights of the two log-softmax terms (module docstring).
    """
    from pmatch.evaluate import score_pairs

    products = dataset.items["product_id"].to_numpy()

    def score(image_rows, text_rows):
        return score_pairs(
            matcher, dataset, pd.DataFrame({"image_row": image_rows, "text_row": text_rows})
        )

    return contrast_with_variants(
        score,
        pairs["image_row"].to_numpy(),
        pairs["text_row"].to_numpy(),
        products,
        products,
        text_weight,
        photo_weight,
    )
