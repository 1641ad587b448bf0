"""Tokenises titles and descriptions and maps them to ids with a vocabulary fitted on train."""

from __future__ import annotations

import html
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAD, UNKNOWN = "[PAD]", "[UNK]"
_WORD = re.compile(r"[^\W_]+")
_TAG = re.compile(r"<[^>]+>")


def tokenize(text: str) -> list[str]:
    """Lower-cased words and numbers, accents removed; punctuation and HTML are dropped.

    'Crème&trade; <b>Tee</b>' gives ['creme', 'tee']: entities are decoded, tags removed.
    """
    text = _TAG.sub(" ", html.unescape(str(text)))
    text = unicodedata.normalize("NFD", text.lower())
    text = "".join(character for character in text if not unicodedata.combining(character))
    return _WORD.findall(text)


@dataclass(frozen=True)
class Vocabulary:
    """Token list: position 0 is padding, 1 is the unknown-word token."""

    tokens: tuple[str, ...]

    @classmethod
    def fit(cls, texts, min_count: int = 1) -> Vocabulary:
        """Words seen at least min_count times in texts, most frequent first (ties by word)."""
        counts = Counter(token for text in texts for token in tokenize(text))
        kept = sorted(
            (word for word, count in counts.items() if count >= min_count),
            key=lambda word: (-counts[word], word),
        )
        return cls((PAD, UNKNOWN, *kept))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts, max_tokens: int) -> np.ndarray:
        """An (n, max_tokens) int32 array of ids, cut or padded with 0 at the end."""
        index = {token: position for position, token in enumerate(self.tokens)}
        texts = list(texts)
        output = np.zeros((len(texts), max_tokens), dtype=np.int32)
        for row, text in enumerate(texts):
            ids = [index.get(token, 1) for token in tokenize(text)[:max_tokens]]
            output[row, : len(ids)] = ids
        return output

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"tokens": list(self.tokens)}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls(tuple(json.loads(Path(path).read_text())["tokens"]))
