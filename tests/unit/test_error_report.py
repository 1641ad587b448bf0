"""errors.csv and errors.html: the test pairs a model decides wrongly, for people to review."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from pmatch import error_report


def catalogue_rows(folder):
    """Three catalogue rows as Dataset.items holds them; the third row's photo is missing."""
    (folder / "images").mkdir(parents=True)
    for name, colour in (("tee-blue", (20, 40, 200)), ("tee-red", (200, 30, 30))):
        Image.new("RGB", (16, 16), colour).save(folder / f"images/{name}.png")
    return pd.DataFrame(
        {
            "row_key": ["T1/Blue", "T1/Red", "MUG"],
            "top_category": ["Tees", "Tees", "Gear"],
            "image_path": ["images/tee-blue.png", "images/tee-red.png", "images/mug.png"],
            "text": ["Tee <Blue> & co. Soft cotton.", "Tee - Red. Soft cotton.", "Mug. Holds tea."],
        }
    )


def scored_pairs():
    """Test pairs and scores: right, missed match, accepted hard, right, accepted random."""
    pairs = pd.DataFrame(
        {
            "image_row": [0, 1, 0, 1, 2],
            "text_row": [0, 1, 1, 2, 0],
            "label": [1, 1, 0, 0, 0],
            "kind": ["match", "match", "hard", "random", "random"],
        }
    )
    return pairs, np.array([0.9, 0.2, 0.8, 0.1, 0.6])


def test_the_report_lists_every_wrong_decision_with_what_the_photo_really_is(tmp_path):
    items = catalogue_rows(tmp_path / "catalogue")
    pairs, scores = scored_pairs()
    metrics = {"threshold": 0.5, "f1": 0.5}

    errors = error_report.write_error_report(
        pairs, scores, metrics, items, tmp_path, tmp_path / "catalogue"
    )

    written = pd.read_csv(tmp_path / error_report.ERRORS_FILE)
    assert written["error"].tolist() == [
        "missed match",
        "accepted hard negative",
        "accepted random negative",
    ]
    assert written["photo_of"].tolist() == ["T1/Red", "T1/Blue", "MUG"]
    assert written["text_of"].tolist() == ["T1/Red", "T1/Red", "T1/Blue"]
    assert written["margin"].tolist() == [0.3, 0.3, 0.1]
    assert len(errors) == 3
    page = (tmp_path / error_report.ERRORS_REPORT_FILE).read_text(encoding="utf-8")
    assert "Missed matches: 1 of 2" in page
    assert "Accepted hard negatives: 1 of 1" in page
    assert "Accepted random negatives: 1 of 2" in page
    # Two rows show a photo; the mug's photo is missing, so its path is shown instead.
    assert page.count('<img src="data:image/jpeg;base64,') == 2
    assert "images/mug.png</td>" in page
    # Catalogue text is escaped, not read as markup.
    assert "Tee &lt;Blue&gt; &amp; co." in page and "<Blue>" not in page


def test_without_a_catalogue_the_report_names_the_photos(tmp_path):
    items = catalogue_rows(tmp_path / "catalogue")
    pairs, scores = scored_pairs()

    error_report.write_error_report(pairs, scores, {"threshold": 0.5, "f1": 0.5}, items, tmp_path)

    page = (tmp_path / error_report.ERRORS_REPORT_FILE).read_text(encoding="utf-8")
    assert "<img" not in page
    assert "images/tee-red.png</td>" in page


def test_the_page_shows_the_most_confident_errors_and_says_how_many_more(tmp_path, monkeypatch):
    monkeypatch.setattr(error_report, "ERRORS_SHOWN", 1)
    items = catalogue_rows(tmp_path / "catalogue")
    pairs = pd.DataFrame(
        {"image_row": [0, 1, 2], "text_row": [0, 1, 2], "label": [1, 1, 1], "kind": ["match"] * 3}
    )

    error_report.write_error_report(
        pairs, np.array([0.4, 0.05, 0.3]), {"threshold": 0.5, "f1": 0.0}, items, tmp_path
    )

    page = (tmp_path / error_report.ERRORS_REPORT_FILE).read_text(encoding="utf-8")
    assert "Missed matches: 3 of 3" in page
    assert "images/tee-red.png</td>" in page  # score 0.05, the most confident miss
    assert "images/tee-blue.png" not in page
    assert "And 2 more in errors.csv." in page
    assert len(pd.read_csv(tmp_path / error_report.ERRORS_FILE)) == 3


def test_no_errors_makes_a_report_that_says_so(tmp_path):
    items = catalogue_rows(tmp_path / "catalogue")
    pairs, _ = scored_pairs()
    right = np.where(pairs["label"] == 1, 0.9, 0.1)

    errors = error_report.write_error_report(
        pairs, right, {"threshold": 0.5, "f1": 1.0}, items, tmp_path
    )

    assert errors.empty
    assert pd.read_csv(tmp_path / error_report.ERRORS_FILE).empty
    page = (tmp_path / error_report.ERRORS_REPORT_FILE).read_text(encoding="utf-8")
    assert page.count("<p>None.</p>") == 3
