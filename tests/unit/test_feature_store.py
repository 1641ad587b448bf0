"""The frozen-feature cache: what it stores, when it computes, and how it fails."""

from __future__ import annotations

import numpy as np
import pytest

from pmatch.features.store import (
    FeatureStore,
    cached_features,
    default_store_path,
    open_default_store,
    photo_digest,
    text_digest,
)

ENCODER = "test-encoder/8/none==0/schema1"


def test_only_missing_digests_are_computed_each_once_and_then_read_back(tmp_path):
    store = FeatureStore(tmp_path / "features.sqlite")
    digests = [text_digest(text) for text in ("red tee", "blue tee", "red tee")]
    asked = []

    def compute(positions):
        asked.append(list(positions))
        return np.arange(len(positions) * 3, dtype="float32").reshape(-1, 3) + 10 * positions[0]

    first, computed = cached_features(store, ENCODER, digests, 3, compute)
    assert asked == [[0, 1]] and computed == 2
    np.testing.assert_array_equal(first[0], first[2])  # the repeated text, computed once

    # Another process (a new connection) finds them and computes only the new text.
    reopened = FeatureStore(tmp_path / "features.sqlite")
    more = [*digests, text_digest("green tee")]
    second, computed = cached_features(reopened, ENCODER, more, 3, compute)
    assert computed == 1 and asked[-1] == [3]
    np.testing.assert_array_equal(second[:3], first)
    assert reopened.count(ENCODER) == 3 and reopened.count("another/encoder") == 0


def test_another_encoder_key_does_not_see_the_entries(tmp_path):
    store = FeatureStore(tmp_path / "features.sqlite")
    digest = [photo_digest(np.zeros((4, 4, 3), dtype="uint8"))]
    cached_features(store, ENCODER, digest, 2, lambda positions: np.ones((1, 2)))
    _, computed = cached_features(
        store, "other/8/none==0/schema1", digest, 2, lambda p: np.ones((1, 2))
    )
    assert computed == 1


def test_photo_digests_follow_the_pixels():
    photo = np.zeros((4, 4, 3), dtype="uint8")
    changed = photo.copy()
    changed[0, 0, 0] = 1
    assert photo_digest(photo) == photo_digest(photo.copy())
    assert photo_digest(photo) != photo_digest(changed)


def test_a_vector_of_the_wrong_width_names_the_file_to_delete(tmp_path):
    store = FeatureStore(tmp_path / "features.sqlite")
    digest = [text_digest("x")]
    store.save(ENCODER, digest, np.ones((1, 4)))
    with pytest.raises(ValueError, match=r"features\.sqlite.*4 values, not 3; delete the file"):
        cached_features(store, ENCODER, digest, 3, lambda positions: np.ones((1, 3)))


def test_without_a_store_everything_is_computed(tmp_path):
    features, computed = cached_features(
        None, ENCODER, [text_digest("a"), text_digest("a")], 2, lambda p: np.full((len(p), 2), 7)
    )
    assert computed == 1 and features.tolist() == [[7, 7], [7, 7]]


def test_the_environment_picks_or_disables_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PMATCH_FEATURE_CACHE", str(tmp_path / "mine.sqlite"))
    assert default_store_path() == tmp_path / "mine.sqlite"
    monkeypatch.setenv("PMATCH_FEATURE_CACHE", "off")
    assert default_store_path() is None and open_default_store() is None
    monkeypatch.delenv("PMATCH_FEATURE_CACHE")
    monkeypatch.setenv("PMATCH_CACHE_DIR", str(tmp_path / "cache"))
    assert default_store_path() == tmp_path / "cache" / "features.sqlite"


def test_an_unwritable_store_turns_the_cache_off_and_says_so(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("PMATCH_FEATURE_CACHE", str(blocker / "features.sqlite"))
    assert open_default_store() is None
    assert "feature cache off" in capsys.readouterr().err


def test_a_file_that_is_not_a_database_turns_the_cache_off(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "features.sqlite"
    broken.write_bytes(b"this is not an SQLite database, but long enough to be read" * 20)
    monkeypatch.setenv("PMATCH_FEATURE_CACHE", str(broken))
    assert open_default_store() is None
    assert f"cannot open {broken}" in capsys.readouterr().err


def test_a_store_that_cannot_be_written_is_still_read_and_says_so_once(tmp_path, capsys):
    import sqlite3

    path = tmp_path / "features.sqlite"
    writer = FeatureStore(path)
    cached_features(writer, ENCODER, [text_digest("seen")], 2, lambda p: np.ones((1, 2)))
    # The same file opened read-only, as on a read-only volume.
    reader = FeatureStore(path)
    reader.connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    for _ in range(2):
        features, computed = cached_features(
            reader,
            ENCODER,
            [text_digest("seen"), text_digest("new")],
            2,
            lambda p: np.full((len(p), 2), 3.0),
        )
        assert computed == 1 and features.tolist() == [[1, 1], [3, 3]]
    assert capsys.readouterr().err.count("not written") == 1
    assert writer.count(ENCODER) == 1
