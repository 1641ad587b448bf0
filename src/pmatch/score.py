"""Scoring a CSV of (image_path, text) pairs with a matcher, for `pmatch score` and monitoring."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from pmatch.artifacts import PAIRS_FILE
from pmatch.features.images import load_image, photos_per_batch

REQUIRED_PAIR_COLUMNS = ("image_path", "text")
DECODE_THREADS = 4
# Texts per MiniLM call while scoring a file: progress is reported after each.
TEXTS_PER_REPORT = 1024


class PairsFileError(ValueError):
    """A pairs CSV is unusable; the message names the file, the row and the fix."""


class _EmbeddingCache:
    """Embeddings of photos and texts already seen, so each is encoded once.

    Bounded by max_entries: past it, the cache starts afresh, so memory follows the batch
    size, not the size of everything ever scored.
    """

    def __init__(self, max_entries: int = 200_000):
        self.max_entries = max_entries
        self.entries: dict = {}

    def lookup(self, keys, compute) -> np.ndarray:
        missing = sorted({key for key in keys if key not in self.entries})
        if missing:
            if len(self.entries) + len(missing) > self.max_entries:
                self.entries.clear()
            for key, vector in zip(missing, compute(missing), strict=True):
                self.entries[key] = vector
        return np.stack([self.entries[key] for key in keys])


def _embed_photos(
    matcher, paths: list[Path], unreadable, progress=None, already: int = 0
) -> np.ndarray:
    """Embeddings of the photos at paths, in order.

    Threads decode the next batch while the encoder runs on this one, so at most two
    batches of pixels (photos_per_batch) are held, whatever the number of photos.
    unreadable(index, error) is called for the first photo that cannot be read; it raises.
    progress: optional callable(done, total), called after each batch; already: photos
    encoded before these (earlier chunks of the file), counted in both done and total.
    """
    size = matcher.image_size
    batch = photos_per_batch(size)

    def decode(path: Path):
        try:
            return load_image(path, size)
        except (OSError, ValueError) as error:
            return error

    embeddings = []
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        pending = [pool.submit(decode, path) for path in paths[:batch]]
        for start in range(0, len(paths), batch):
            photos = [future.result() for future in pending]
            pending = [
                pool.submit(decode, path) for path in paths[start + batch : start + 2 * batch]
            ]
            for offset, photo in enumerate(photos):
                if isinstance(photo, Exception):
                    for future in pending:
                        future.cancel()
                    unreadable(start + offset, photo)
            embeddings.append(matcher.embed_images(np.stack(photos)))
            if progress:
                progress(already + start + len(photos), already + len(paths))
    return np.concatenate(embeddings)


def _embed_texts(matcher, texts: list[str], progress=None, already: int = 0) -> np.ndarray:
    """Embeddings of texts, in order, TEXTS_PER_REPORT at a time (a text's embedding does
    not depend on the others encoded with it); progress, already: as for _embed_photos."""
    embeddings = []
    for start in range(0, len(texts), TEXTS_PER_REPORT):
        embeddings.append(matcher.embed_texts(texts[start : start + TEXTS_PER_REPORT]))
        if progress:
            progress(already + start + len(embeddings[-1]), already + len(texts))
    return np.concatenate(embeddings)


def _check_pairs(frame: pd.DataFrame, path: Path, first_line: int) -> None:
    missing = [column for column in REQUIRED_PAIR_COLUMNS if column not in frame.columns]
    if missing:
        raise PairsFileError(
            f"{path}: missing column(s) {', '.join(missing)}; a pairs file needs "
            f"{', '.join(REQUIRED_PAIR_COLUMNS)} (other columns are carried through)"
        )
    for column in REQUIRED_PAIR_COLUMNS:
        empty = frame.index[frame[column].astype(str).str.strip() == ""]
        if len(empty):
            line = first_line + int(empty[0])
            raise PairsFileError(
                f"{path}: line {line} has an empty {column}; fill it or remove the row"
            )


def score_pairs_file(
    matcher,
    pairs_csv: str | Path,
    out_csv: str | Path,
    chunk_rows: int = 20_000,
    progress=None,
    photo_progress=None,
    text_progress=None,
) -> dict:
    """Scores every (image_path, text) row of pairs_csv and writes out_csv.

    image_path is relative to the CSV's folder unless absolute. out_csv has the input's
    columns plus score and match (score >= the model's threshold). Rows are read in chunks
    of chunk_rows; each distinct photo and text is encoded once, photos a batch at a time,
    so memory follows chunk_rows and the batch, not the file. Raises PairsFileError
    naming the line of a missing or unreadable photo; nothing is written then.

    progress: optional callable(pairs scored), called after each chunk. photo_progress /
    text_progress: optional callables(encoded, total), called as new photos and texts are
    encoded; both count over the file so far (total grows as chunks bring new ones).
    """
    pairs_csv, out_csv = Path(pairs_csv), Path(out_csv)
    if not pairs_csv.is_file():
        raise PairsFileError(f"{pairs_csv}: no such pairs file")
    if matcher.threshold is None:
        raise PairsFileError(
            "the model has no decision threshold (metrics.json); pass one with --threshold"
        )
    base = pairs_csv.parent
    images, texts = _EmbeddingCache(), _EmbeddingCache()
    partial = out_csv.with_name(f".{out_csv.name}.partial")
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    scored = 0
    first_line = 2
    # Photos and texts encoded in earlier chunks, so progress counts over the whole file.
    encoded = {"photos": 0, "texts": 0}
    try:
        reader = pd.read_csv(pairs_csv, dtype=str, keep_default_na=False, chunksize=chunk_rows)
        for chunk_index, chunk in enumerate(reader):
            chunk = chunk.reset_index(drop=True)
            _check_pairs(chunk, pairs_csv, first_line)
            if chunk.empty:
                continue

            def embed_photos(keys, chunk=chunk, first_line=first_line):
                paths = [Path(key) if Path(key).is_absolute() else base / key for key in keys]

                def unreadable(index, error):
                    line = first_line + int(chunk.index[chunk["image_path"] == keys[index]][0])
                    raise PairsFileError(
                        f"{pairs_csv}: line {line}: cannot read photo {paths[index]} ({error}); "
                        "fix image_path (relative to the pairs file's folder)"
                    ) from None

                embeddings = _embed_photos(
                    matcher, paths, unreadable, photo_progress, encoded["photos"]
                )
                encoded["photos"] += len(keys)
                return embeddings

            def embed_texts(keys):
                embeddings = _embed_texts(matcher, keys, text_progress, encoded["texts"])
                encoded["texts"] += len(keys)
                return embeddings

            image_embeddings = images.lookup(list(chunk["image_path"]), embed_photos)
            text_embeddings = texts.lookup(list(chunk["text"]), embed_texts)
            scores = matcher.score_embeddings(image_embeddings, text_embeddings)
            chunk["score"] = np.round(scores, 6)
            chunk["match"] = (scores >= matcher.threshold).astype(int)
            chunk.to_csv(
                partial, mode="w" if chunk_index == 0 else "a", header=chunk_index == 0, index=False
            )
            scored += len(chunk)
            first_line += len(chunk)
            if progress:
                progress(scored)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if scored == 0:
        partial.unlink(missing_ok=True)
        raise PairsFileError(f"{pairs_csv}: no rows to score")
    partial.replace(out_csv)
    return {"pairs": scored, "threshold": matcher.threshold, "out": str(out_csv)}


def score_catalog_pairs(matcher, catalog_dir: str | Path, pairs: pd.DataFrame) -> np.ndarray:
    """Scores pairs whose image_path is relative to a catalogue folder, exactly as `pmatch
    score` would (score_pairs_file, from the raw photos and texts), and returns the scores in
    row order. The gate scores production on the candidate's test pairs this way, and
    evaluation records the canary's expected scores this way, so a fresh process scoring the
    same files reproduces them."""
    import tempfile

    from pmatch.catalog.format import resolve_image

    with tempfile.TemporaryDirectory(prefix="pmatch-pairs-") as folder:
        absolute = pairs[["image_path", "text"]].assign(
            image_path=[
                str(resolve_image(catalog_dir, path).resolve()) for path in pairs["image_path"]
            ]
        )
        absolute.to_csv(Path(folder) / PAIRS_FILE, index=False)
        score_pairs_file(matcher, Path(folder) / PAIRS_FILE, Path(folder) / "scored.csv")
        return pd.read_csv(Path(folder) / "scored.csv", usecols=["score"])["score"].to_numpy()
