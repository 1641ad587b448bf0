"""Listings as monitoring sees them: each photo with its own title, scored by a model, with
photo and title statistics and the model's image and text embeddings.

The same function describes the reference (the test split's listings, written by `pmatch
evaluate` and stored with the model version) and every delivery, so the two are comparable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import REFERENCE_EMBEDDINGS_FILE, REFERENCE_LISTINGS_FILE

# The per-listing statistics, each one signal (pmatch.monitor.signals).
PHOTO_STATISTICS = ("photo_brightness", "photo_contrast", "photo_sharpness", "photo_size")
TITLE_STATISTICS = ("title_length", "title_oov_share", "title_charset")
LISTING_COLUMNS = ("product_id", "variant", "title", "image_path")
# Photos decoded per model call: memory stays bounded whatever the delivery's size.
PHOTOS_PER_CALL = 128


class ReferenceError(FileNotFoundError):
    """A model version lacks its monitoring reference; the message names the file and the fix."""


@dataclass(frozen=True)
class Listings:
    """Listings described for monitoring.

    frame: LISTING_COLUMNS, score, below_threshold, the statistics, and label when the
    source had one. image_embeddings, text_embeddings: the model's tower embeddings, one
    row per listing (what the scorer reads). data_version: the catalogue's data version
    (the reference), or None.
    """

    frame: pd.DataFrame
    image_embeddings: np.ndarray
    text_embeddings: np.ndarray
    data_version: str | None = None

    def subset(self, rows: np.ndarray) -> Listings:
        """The listings at positions rows (a benchmark draws deliveries this way)."""
        return Listings(
            self.frame.iloc[rows].reset_index(drop=True),
            self.image_embeddings[rows],
            self.text_embeddings[rows],
            self.data_version,
        )


def photo_statistics(photo: np.ndarray, width: int, height: int) -> dict[str, float]:
    """Brightness (mean grey level, 0-1), contrast (its standard deviation), sharpness (mean
    absolute Laplacian of the grey image, 0-1) and size (the geometric mean of the original
    width and height, in pixels) of one photo.

    photo: the (size, size, 3) uint8 array the model reads (letterboxed on white), so
    sharpness does not depend on the file's resolution; width, height: the file's own.
    """
    grey = photo.astype("float32").mean(axis=2) / 255.0
    laplacian = (
        -4 * grey[1:-1, 1:-1] + grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    )
    return {
        "photo_brightness": float(grey.mean()),
        "photo_contrast": float(grey.std()),
        "photo_sharpness": float(np.abs(laplacian).mean()),
        "photo_size": float(np.sqrt(width * height)),
    }


def title_statistics(titles: pd.Series, vocabulary_tokens) -> pd.DataFrame:
    """Length in characters, the share of words the model's training vocabulary lacks
    (out of vocabulary; 0 for a title without words), and the share of characters outside
    ASCII (another alphabet, or accents) of each title."""
    from pmatch.features.text import tokenize

    known = set(vocabulary_tokens)
    rows = []
    for title in titles.astype(str):
        words = tokenize(title)
        rows.append(
            {
                "title_length": float(len(title)),
                "title_oov_share": (
                    float(np.mean([word not in known for word in words])) if words else 0.0
                ),
                "title_charset": (
                    float(np.mean([ord(character) > 127 for character in title])) if title else 0.0
                ),
            }
        )
    return pd.DataFrame(rows, columns=list(TITLE_STATISTICS), index=titles.index)


def describe_listings(matcher, folder: str | Path, frame: pd.DataFrame) -> Listings:
    """Scores each listing of frame (a catalogue frame: product_id, title, image_path
    relative to folder, description when present; label kept when present) with matcher:
    its photo with its own text, as production sees it, and adds the statistics.

    The photo's frozen features come from the matcher's feature store when it holds them.
    Raises ValueError naming the row of a photo that cannot be read.
    """
    from PIL import Image

    from pmatch.catalog.format import item_text, resolve_image
    from pmatch.features.images import load_image

    folder = Path(folder)
    frame = frame.reset_index(drop=True).copy()
    if "description" not in frame.columns:
        frame["description"] = ""
    if "variant" not in frame.columns:
        frame["variant"] = ""
    photo_rows, image_embeddings = [], []
    for start in range(0, len(frame), PHOTOS_PER_CALL):
        photos = []
        for row, image_path in enumerate(frame["image_path"].iloc[start : start + PHOTOS_PER_CALL]):
            path = resolve_image(folder, image_path)
            try:
                with Image.open(path) as image:
                    width, height = image.size
                photo = load_image(path, matcher.image_size)
            except (OSError, ValueError) as error:
                raise ValueError(
                    f"{folder}: listing {start + row + 1} ({image_path}): cannot read its photo "
                    f"({error}); fix or remove the row"
                ) from None
            photos.append(photo)
            photo_rows.append(photo_statistics(photo, width, height))
        image_embeddings.append(matcher.embed_images(np.stack(photos)))
    image_embeddings = np.concatenate(image_embeddings).astype("float32")
    text_embeddings = np.asarray(matcher.embed_texts(list(item_text(frame))), dtype="float32")
    scores = matcher.score_embeddings(image_embeddings, text_embeddings)
    described = frame[list(LISTING_COLUMNS)].astype(str).copy()
    described["score"] = np.round(np.asarray(scores, dtype="float64"), 6)
    described["below_threshold"] = described["score"] < matcher.threshold
    if "label" in frame.columns:
        described["label"] = frame["label"].to_numpy()
    described = pd.concat(
        [
            described,
            pd.DataFrame(photo_rows, columns=list(PHOTO_STATISTICS)),
            title_statistics(frame["title"], matcher.vocabulary.tokens),
        ],
        axis=1,
    )
    return Listings(described, image_embeddings, text_embeddings)


def write_reference(listings: Listings, data_version: str, out_dir: str | Path) -> list[Path]:
    """Writes the reference: reference_listings.csv (one row per listing) and
    reference_embeddings.npz (the embeddings, in the same order, and the data version)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    listings.frame.to_csv(out_dir / REFERENCE_LISTINGS_FILE, index=False)
    np.savez_compressed(
        out_dir / REFERENCE_EMBEDDINGS_FILE,
        image_embeddings=listings.image_embeddings,
        text_embeddings=listings.text_embeddings,
        data_version=np.array(json.dumps(data_version)),
    )
    return [out_dir / REFERENCE_LISTINGS_FILE, out_dir / REFERENCE_EMBEDDINGS_FILE]


def load_reference(folder: str | Path) -> Listings:
    """The reference stored in folder (a model version's folder, or evaluate's output)."""
    folder = Path(folder)
    for name in (REFERENCE_LISTINGS_FILE, REFERENCE_EMBEDDINGS_FILE):
        if not (folder / name).is_file():
            raise ReferenceError(
                f"{folder / name}: missing; the model version has no monitoring reference. "
                "Evaluate it again with --catalog (`dvc repro evaluate`) and deploy it"
            )
    frame = pd.read_csv(
        folder / REFERENCE_LISTINGS_FILE,
        dtype={column: str for column in LISTING_COLUMNS},
        keep_default_na=False,
    )
    with np.load(folder / REFERENCE_EMBEDDINGS_FILE) as arrays:
        image_embeddings = arrays["image_embeddings"]
        text_embeddings = arrays["text_embeddings"]
        data_version = json.loads(str(arrays["data_version"]))
    if len(image_embeddings) != len(frame) or len(text_embeddings) != len(frame):
        raise ValueError(
            f"{folder}: {REFERENCE_EMBEDDINGS_FILE} holds {len(image_embeddings)} embeddings for "
            f"{len(frame)} listings in {REFERENCE_LISTINGS_FILE}; evaluate the model again"
        )
    return Listings(frame, image_embeddings, text_embeddings, data_version)
