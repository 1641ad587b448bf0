"""Monitoring's signals on tiny synthetic listings, and the listing statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pmatch.monitor.reference import (
    PHOTO_STATISTICS,
    TITLE_STATISTICS,
    Listings,
    load_reference,
    photo_statistics,
    title_statistics,
    write_reference,
)
from pmatch.monitor.signals import (
    SIGNALS,
    compute_signals,
    expected_f1,
    labelled_rows,
)


def listings(count: int, seed: int, brightness: float = 0.6, labels=None) -> Listings:
    """count listings drawn like a catalogue's: scores mostly high, statistics around
    their usual values, embeddings from one Gaussian; brightness moves the photos' mean."""
    rng = np.random.default_rng(seed)
    scores = np.clip(rng.beta(8, 2, count), 0, 1)
    frame = pd.DataFrame(
        {
            "product_id": [f"N{index}" for index in range(count)],
            "variant": "",
            "title": "Kestrel Bag navy",
            "image_path": [f"images/{index}.png" for index in range(count)],
            "score": scores,
            "below_threshold": scores < 0.5,
            "photo_brightness": rng.normal(brightness, 0.05, count),
            "photo_contrast": rng.normal(0.2, 0.03, count),
            "photo_sharpness": rng.normal(0.01, 0.002, count),
            "photo_size": np.full(count, 96.0),
            "title_length": rng.normal(40, 5, count).round(),
            "title_oov_share": rng.uniform(0, 0.2, count),
            "title_charset": np.zeros(count),
        }
    )
    if labels is not None:
        frame["label"] = labels
    return Listings(
        frame,
        rng.normal(size=(count, 8)).astype("float32"),
        rng.normal(size=(count, 8)).astype("float32"),
        "data-v1",
    )


def test_identical_sets_fire_no_signal(params):
    reference = listings(300, seed=1)
    signals = compute_signals(reference, reference, params.monitor)
    assert set(signals) == set(SIGNALS) - {"labels_f1"}
    assert [name for name, signal in signals.items() if signal["drift"]] == []
    for signal in signals.values():
        assert signal["value"] <= signal["threshold"]


def test_a_darkened_set_fires_brightness_and_says_so(params):
    reference, current = listings(300, seed=1), listings(300, seed=2, brightness=0.3)
    signals = compute_signals(reference, current, params.monitor)
    brightness = signals["photo_brightness"]
    assert brightness["drift"] is True
    assert brightness["kind"] == "input" and brightness["method"] == "wasserstein"
    assert brightness["value"] > brightness["threshold"]
    assert brightness["current_mean"] < brightness["reference_mean"]
    assert signals["photo_contrast"]["drift"] is False


def test_labels_are_read_only_from_enough_reviewed_rows(params):
    metrics = {
        "threshold": 0.5,
        "true_positives": 90,
        "false_negatives": 10,
        "false_positives": 5,
        "pairs": 300,
    }
    reference = listings(300, seed=1)
    few = listings(300, seed=2, labels=[""] * 280 + ["1"] * 20)
    assert "labels_f1" not in compute_signals(reference, few, params.monitor, metrics)
    # Every listing genuine (label 1): the F1 the model's test rates predict is high, and
    # a delivery scored like the reference reaches it.
    genuine = listings(300, seed=2, labels=["1"] * 300)
    quality = compute_signals(reference, genuine, params.monitor, metrics)["labels_f1"]
    assert quality["kind"] == "quality" and quality["drift"] is False
    assert quality["reference_mean"] == pytest.approx(expected_f1(metrics, 1.0), abs=1e-6)
    # The same photos labelled as mismatches: the F1 collapses, quality fires.
    wrong = listings(300, seed=2, labels=["0"] * 150 + ["1"] * 150)
    wrong.frame.loc[:149, "score"] = 0.99
    assert compute_signals(reference, wrong, params.monitor, metrics)["labels_f1"]["drift"]


def test_a_label_other_than_0_1_or_blank_is_named():
    frame = pd.DataFrame({"label": ["1", "", "yes"]})
    with pytest.raises(ValueError, match="listing 3: label 'yes'"):
        labelled_rows(frame)
    assert list(labelled_rows(pd.DataFrame({"label": ["1", "", "0"]}))) == [0, 2]


def test_expected_f1_follows_the_label_mix():
    metrics = {"true_positives": 80, "false_negatives": 20, "false_positives": 20, "pairs": 300}
    # Recall 0.8, false positive rate 0.1: all genuine -> precision 1.
    assert expected_f1(metrics, 1.0) == pytest.approx(2 * 0.8 / 1.8)
    assert expected_f1(metrics, 0.5) < expected_f1(metrics, 0.9)


def test_photo_statistics_see_a_darker_and_a_flat_photo():
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    base = photo_statistics(photo, 64, 16)
    darker = photo_statistics((photo * 0.4).astype(np.uint8), 64, 16)
    flat = photo_statistics(np.full_like(photo, 128), 64, 16)
    assert darker["photo_brightness"] < base["photo_brightness"]
    assert flat["photo_sharpness"] == pytest.approx(0, abs=1e-6)
    assert base["photo_sharpness"] > 0.1
    assert base["photo_size"] == 32.0
    assert set(base) == set(PHOTO_STATISTICS)


def test_title_statistics_count_unknown_words_and_foreign_characters():
    titles = pd.Series(["red bag", "rote Tasche größe", ""])
    stats = title_statistics(titles, ["[PAD]", "[UNK]", "red", "bag"])
    assert list(stats.columns) == list(TITLE_STATISTICS)
    assert stats["title_oov_share"].tolist() == [0.0, 1.0, 0.0]
    assert stats["title_length"].tolist() == [7.0, 17.0, 0.0]
    assert stats.loc[1, "title_charset"] == pytest.approx(2 / 17)


def test_the_reference_round_trips_with_its_data_version(tmp_path):
    reference = listings(20, seed=3)
    write_reference(reference, "data-v1", tmp_path)
    loaded = load_reference(tmp_path)
    assert loaded.data_version == "data-v1"
    np.testing.assert_array_equal(loaded.image_embeddings, reference.image_embeddings)
    assert loaded.frame["product_id"].tolist() == reference.frame["product_id"].tolist()
    (tmp_path / "reference_embeddings.npz").unlink()
    with pytest.raises(FileNotFoundError, match="reference_embeddings.npz: missing"):
        load_reference(tmp_path)
