"""Tests for scoring pair files (pmatch.score)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pmatch.score import PairsFileError, score_pairs_file

COLOURS = {"red": (220, 20, 20), "green": (20, 200, 20), "blue": (20, 20, 220)}


class ColourMatcher:
    """A stand-in for the Keras matcher: photos embed as their mean colour, texts as the
    colour they name, and the score is the cosine of the two. It counts what it embeds."""

    image_size = 16
    threshold = 0.5

    def __init__(self):
        self.images_embedded = 0
        self.texts_embedded: list[str] = []

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        assert images.shape[1:] == (16, 16, 3)
        self.images_embedded += len(images)
        return images.reshape(len(images), -1, 3).mean(axis=1) / 255.0

    def embed_texts(self, texts) -> np.ndarray:
        texts = list(texts)
        self.texts_embedded += texts
        vectors = []
        for text in texts:
            named = [COLOURS[word] for word in text.lower().split() if word in COLOURS]
            vectors.append(np.mean(named, axis=0) / 255.0 if named else np.full(3, 0.1))
        return np.array(vectors)

    def score_embeddings(
        self, image_embeddings: np.ndarray, text_embeddings: np.ndarray
    ) -> np.ndarray:
        dot = (image_embeddings * text_embeddings).sum(axis=1)
        norms = np.linalg.norm(image_embeddings, axis=1) * np.linalg.norm(text_embeddings, axis=1)
        return dot / norms


def write_batch(folder: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    """A pairs.csv in folder, with a 16x16 photo for each colour under images/."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, colour in COLOURS.items():
        Image.new("RGB", (16, 16), colour).save(folder / "images" / f"{name}.png")
    path = folder / "pairs.csv"
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


GOOD_ROWS = [
    {"pair_id": "a", "image_path": "images/red.png", "text": "Red tee", "shop": "north"},
    {"pair_id": "b", "image_path": "images/red.png", "text": "Blue tee", "shop": "north"},
    {"pair_id": "c", "image_path": "images/blue.png", "text": "Blue tee", "shop": "south"},
    {"pair_id": "d", "image_path": "images/green.png", "text": "Red tee", "shop": "south"},
    {"pair_id": "e", "image_path": "images/blue.png", "text": "Green bag", "shop": "east"},
]


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


# score_pairs_file -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_rows", [20_000, 2])
def test_scoring_keeps_the_columns_and_adds_score_and_match(tmp_path, chunk_rows):
    pairs = write_batch(tmp_path / "batch", GOOD_ROWS)
    out_csv = tmp_path / "scored" / "scores.csv"
    matcher = ColourMatcher()

    result = score_pairs_file(matcher, pairs, out_csv, chunk_rows=chunk_rows)

    assert result == {"pairs": 5, "threshold": 0.5, "out": str(out_csv)}
    scored = pd.read_csv(out_csv, dtype={"pair_id": str})
    assert list(scored.columns) == ["pair_id", "image_path", "text", "shop", "score", "match"]
    assert list(scored["pair_id"]) == ["a", "b", "c", "d", "e"]
    assert list(scored["shop"]) == ["north", "north", "south", "south", "east"]
    assert list(scored["match"]) == [1, 0, 1, 0, 0]
    assert ((scored["score"] >= 0.5) == (scored["match"] == 1)).all()
    # Three distinct photos and three distinct texts, each embedded once across all chunks.
    assert matcher.images_embedded == 3
    assert sorted(matcher.texts_embedded) == ["Blue tee", "Green bag", "Red tee"]
    assert leftovers(out_csv.parent) == ["scores.csv"]


def test_scoring_reports_progress_over_the_whole_file(tmp_path):
    pairs = write_batch(tmp_path / "batch", GOOD_ROWS)
    reports: dict[str, list] = {"pairs": [], "photos": [], "texts": []}

    score_pairs_file(
        ColourMatcher(),
        pairs,
        tmp_path / "scores.csv",
        chunk_rows=2,
        progress=reports["pairs"].append,
        photo_progress=lambda done, total: reports["photos"].append((done, total)),
        text_progress=lambda done, total: reports["texts"].append((done, total)),
    )

    assert reports["pairs"] == [2, 4, 5]
    # Chunks of 2 rows bring 1, 2 and 0 new photos and 2, 0 and 1 new texts: the counts
    # and totals run over the file, so the last report is the file's distinct ones.
    assert reports["photos"] == [(1, 1), (3, 3)]
    assert reports["texts"] == [(2, 2), (3, 3)]


def test_absolute_image_paths_are_used_as_they_are(tmp_path):
    photo_dir = tmp_path / "elsewhere"
    write_batch(photo_dir, [])
    rows = [{"image_path": str(photo_dir / "images" / "green.png"), "text": "green cap"}]
    pairs = write_batch(tmp_path / "batch", rows)

    score_pairs_file(ColourMatcher(), pairs, tmp_path / "scores.csv")

    assert pd.read_csv(tmp_path / "scores.csv")["match"].tolist() == [1]


def test_a_missing_text_column_is_named(tmp_path):
    rows = [{"image_path": "images/red.png", "caption": "Red tee"}]
    pairs = write_batch(tmp_path / "batch", rows)
    out_csv = tmp_path / "out" / "scores.csv"

    with pytest.raises(PairsFileError, match=r"missing column\(s\) text") as caught:
        score_pairs_file(ColourMatcher(), pairs, out_csv)

    assert str(pairs) in str(caught.value)
    assert leftovers(out_csv.parent) == []


@pytest.mark.parametrize("chunk_rows", [20_000, 2])
def test_a_missing_photo_is_named_with_its_line(tmp_path, chunk_rows):
    rows = [dict(row) for row in GOOD_ROWS]
    rows[3]["image_path"] = "images/gone.png"
    pairs = write_batch(tmp_path / "batch", rows)
    out_csv = tmp_path / "out" / "scores.csv"

    with pytest.raises(PairsFileError) as caught:
        score_pairs_file(ColourMatcher(), pairs, out_csv, chunk_rows=chunk_rows)

    # Row 3 (from 0) is line 5: the header is line 1.
    message = str(caught.value)
    assert f"{pairs}: line 5: cannot read photo" in message
    assert "gone.png" in message
    assert leftovers(out_csv.parent) == []


def test_an_unreadable_photo_is_named_with_its_line(tmp_path):
    pairs = write_batch(tmp_path / "batch", GOOD_ROWS[:2])
    (tmp_path / "batch" / "images" / "red.png").write_bytes(b"not a png")

    with pytest.raises(PairsFileError, match=r"line 2: cannot read photo"):
        score_pairs_file(ColourMatcher(), pairs, tmp_path / "scores.csv")
    assert not (tmp_path / "scores.csv").exists()


def test_an_empty_text_is_named_with_its_line(tmp_path):
    rows = [dict(row) for row in GOOD_ROWS]
    rows[1]["text"] = "   "
    pairs = write_batch(tmp_path / "batch", rows)
    out_csv = tmp_path / "out" / "scores.csv"

    with pytest.raises(PairsFileError, match=r"line 3 has an empty text"):
        score_pairs_file(ColourMatcher(), pairs, out_csv)
    assert leftovers(out_csv.parent) == []


def test_a_missing_pairs_file_or_threshold_is_refused(tmp_path):
    with pytest.raises(PairsFileError, match="no such pairs file"):
        score_pairs_file(ColourMatcher(), tmp_path / "pairs.csv", tmp_path / "scores.csv")

    pairs = write_batch(tmp_path / "batch", GOOD_ROWS)
    matcher = ColourMatcher()
    matcher.threshold = None
    with pytest.raises(PairsFileError, match="no decision threshold"):
        score_pairs_file(matcher, pairs, tmp_path / "scores.csv")
    assert not (tmp_path / "scores.csv").exists()


def test_a_pairs_file_without_rows_says_so(tmp_path):
    pairs = write_batch(tmp_path / "batch", [], columns=["image_path", "text"])

    with pytest.raises(PairsFileError, match="no rows to score"):
        score_pairs_file(ColourMatcher(), pairs, tmp_path / "scores.csv")
