"""Typed, validated configuration: params.yaml sections and environment settings."""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml

# Evidently's stat tests for a numerical column (the match score).
DRIFT_METHODS = frozenset(
    {
        "wasserstein",
        "ks",
        "psi",
        "jensenshannon",
        "kl_div",
        "anderson",
        "cramer_von_mises",
        "mannw",
        "ed",
        "es",
        "t_test",
        "empirical_mmd",
        "hellinger",
    }
)


class ConfigError(ValueError):
    """A params file or an environment setting is wrong; the message names the key."""


@dataclass(frozen=True)
class SampleParams:
    products: int = 1000
    seed: int = 7
    batch_pairs: int = 360


@dataclass(frozen=True)
class DataParams:
    catalog: str = "data/sample"


@dataclass(frozen=True)
class ValidateParams:
    min_title_chars: int = 3
    min_image_side: int = 16


@dataclass(frozen=True)
class PreprocessParams:
    seed: int = 13
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    image_size: int = 224
    max_tokens: int = 48
    min_token_count: int = 1
    random_negatives: int = 1
    hard_negatives: int = 1
    image_features: str = "efficientnet_lite0"
    text_features: str = "minilm"
    text_precision: str = "int8"
    unfrozen_blocks: int = 0


# MBConv blocks in EfficientNet-Lite0 (pmatch.features.efficientnet_lite.BLOCKS; kept
# here so that validating params does not import Keras).
EFFICIENTNET_LITE0_BLOCKS = 16
# all-MiniLM-L6-v2's position embeddings; pmatch.features.minilm.MiniLMArchitecture
# takes its max_positions from here.
MINILM_MAX_POSITIONS = 512
# preprocess.text_precision: MiniLM's weights and activations (pmatch.features.lite).
TEXT_PRECISIONS = ("float32", "int8")
# train.text_head: a projection head learned on the catalogue, or MiniLM's own principal
# directions, fixed (pmatch.model.matcher.build_locked_text_head).
TEXT_HEADS = ("learned", "locked")
# Width of all-MiniLM-L6-v2's sentence embeddings.
MINILM_DIM = 384


@dataclass(frozen=True)
class TrainParams:
    kind: str = "two_tower"
    seed: int = 42
    num_epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 0.002
    embedding_dim: int = 64
    projection_dim: int = 64
    text_head: str = "learned"
    early_stopping_patience: int = 5
    colour_head: bool = True
    colour_negatives: float = 0.3
    ensemble_members: int = 2
    colour_head_learning_rate: float = 0.01
    colour_head_epochs: int = 200
    colour_head_batch_size: int = 32
    colour_head_patience: int = 20
    match_head_epochs: int = 60
    match_head_patience: int = 10


@dataclass(frozen=True)
class EvaluateParams:
    histogram_bins: int = 20


@dataclass(frozen=True)
class GateParams:
    min_f1: float = 0.70
    max_regression: float = 0.02


@dataclass(frozen=True)
class MonitorParams:
    drift_method: str = "wasserstein"
    drift_threshold: float = 0.15


@dataclass(frozen=True)
class Params:
    sample: SampleParams = SampleParams()
    data: DataParams = DataParams()
    validate: ValidateParams = ValidateParams()
    preprocess: PreprocessParams = PreprocessParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    gate: GateParams = GateParams()
    monitor: MonitorParams = MonitorParams()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_value(key: str, value, expected: type):
    # YAML writes 1 for 1.0; accept an int where a float is expected, never a bool.
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and expected is not bool:
        raise ConfigError(f"{key}: expected {expected.__name__}, got a boolean ({value!r})")
    if not isinstance(value, expected):
        raise ConfigError(
            f"{key}: expected {expected.__name__}, got {type(value).__name__} ({value!r})"
        )
    return value


def _build(cls, raw, prefix: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix or 'params'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        where = f"{prefix}." if prefix else ""
        raise ConfigError(
            f"unknown key {where}{unknown[0]}; known keys here: {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            values[name] = _build(expected, value, key)
        else:
            values[name] = _check_value(key, value, expected)
    return cls(**values)


def _check_ranges(params: Params) -> None:
    problems = []
    pre = params.preprocess
    if not 0 < pre.val_fraction < 1 or not 0 < pre.test_fraction < 1:
        problems.append("preprocess.val_fraction and preprocess.test_fraction must be in (0, 1)")
    if pre.val_fraction + pre.test_fraction >= 0.9:
        problems.append(
            "preprocess.val_fraction + preprocess.test_fraction must leave a train split"
        )
    for key, value in [
        ("sample.products", params.sample.products),
        ("preprocess.image_size", pre.image_size),
        ("preprocess.max_tokens", pre.max_tokens),
        ("train.num_epochs", params.train.num_epochs),
        ("train.batch_size", params.train.batch_size),
        ("train.embedding_dim", params.train.embedding_dim),
        ("train.projection_dim", params.train.projection_dim),
        ("train.ensemble_members", params.train.ensemble_members),
    ]:
        if value < 1:
            problems.append(f"{key} must be at least 1, got {value}")
    if pre.random_negatives < 0 or pre.hard_negatives < 0:
        problems.append("preprocess.random_negatives and preprocess.hard_negatives must be >= 0")
    if pre.image_features not in ("pixels", "efficientnet_lite0"):
        problems.append(
            f"preprocess.image_features must be pixels or efficientnet_lite0, got {pre.image_features!r}"
        )
    if not 0 <= pre.unfrozen_blocks <= EFFICIENTNET_LITE0_BLOCKS:
        problems.append(
            f"preprocess.unfrozen_blocks must be in [0, {EFFICIENTNET_LITE0_BLOCKS}] "
            "(EfficientNet-Lite0's MBConv "
            f"blocks), got {pre.unfrozen_blocks}"
        )
    elif pre.unfrozen_blocks and pre.image_features != "efficientnet_lite0":
        problems.append(
            "preprocess.unfrozen_blocks fine-tunes EfficientNet-Lite0's top blocks: it needs "
            f"preprocess.image_features efficientnet_lite0, got {pre.image_features!r}"
        )
    if pre.text_features not in ("tokens", "minilm"):
        problems.append(
            f"preprocess.text_features must be tokens or minilm, got {pre.text_features!r}"
        )
    if pre.text_precision not in TEXT_PRECISIONS:
        problems.append(
            f"preprocess.text_precision must be {' or '.join(TEXT_PRECISIONS)}, got "
            f"{pre.text_precision!r}"
        )
    if pre.text_features == "minilm" and not 2 <= pre.max_tokens <= MINILM_MAX_POSITIONS:
        problems.append(
            f"preprocess.max_tokens must be in [2, {MINILM_MAX_POSITIONS}] with text_features "
            "minilm (room for [CLS] and [SEP], at most MiniLM's position embeddings), got "
            f"{pre.max_tokens}"
        )
    if params.train.kind not in ("two_tower", "seed_concat"):
        problems.append(f"train.kind must be two_tower or seed_concat, got {params.train.kind!r}")
    if params.train.kind == "seed_concat" and (pre.image_features, pre.text_features) != (
        "pixels",
        "tokens",
    ):
        problems.append(
            "train.kind seed_concat trains from scratch: it needs preprocess.image_features "
            "pixels and preprocess.text_features tokens"
        )
    if params.train.text_head not in TEXT_HEADS:
        problems.append(
            f"train.text_head must be {' or '.join(TEXT_HEADS)}, got {params.train.text_head!r}"
        )
    elif params.train.text_head == "locked" and pre.text_features != "minilm":
        problems.append(
            "train.text_head locked projects frozen MiniLM features: it needs "
            f"preprocess.text_features minilm, got {pre.text_features!r}"
        )
    elif params.train.text_head == "locked" and params.train.projection_dim > MINILM_DIM:
        problems.append(
            f"train.text_head locked keeps projection_dim of MiniLM's {MINILM_DIM} principal "
            f"directions: train.projection_dim must be at most {MINILM_DIM}, got "
            f"{params.train.projection_dim}"
        )
    if not 0 <= params.train.colour_negatives <= 1:
        problems.append(
            "train.colour_negatives is the share of train matches that get a colour negative: "
            f"it must be in [0, 1], got {params.train.colour_negatives}"
        )
    if params.train.learning_rate <= 0:
        problems.append(f"train.learning_rate must be positive, got {params.train.learning_rate}")
    if pre.min_token_count < 1:
        problems.append(f"preprocess.min_token_count must be at least 1, got {pre.min_token_count}")
    if params.evaluate.histogram_bins < 1:
        problems.append(
            f"evaluate.histogram_bins must be at least 1, got {params.evaluate.histogram_bins}"
        )
    if params.gate.max_regression < 0:
        problems.append(f"gate.max_regression must be >= 0, got {params.gate.max_regression}")
    if params.monitor.drift_method not in DRIFT_METHODS:
        problems.append(
            f"monitor.drift_method {params.monitor.drift_method!r} is not one of "
            f"{', '.join(sorted(DRIFT_METHODS))}"
        )
    if not 0 <= params.gate.min_f1 <= 1:
        problems.append(f"gate.min_f1 must be in [0, 1], got {params.gate.min_f1}")
    if params.monitor.drift_threshold <= 0:
        problems.append("monitor.drift_threshold must be positive")
    if problems:
        raise ConfigError("; ".join(problems))


def parse_params(raw: dict) -> Params:
    """Builds Params from a parsed params.yaml, failing on unknown keys or wrong types."""
    params = _build(Params, raw, "")
    _check_ranges(params)
    return params


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Loads and validates a params file; the error names the file and the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: params file not found; run from the project root or pass --params"
        )
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    try:
        return parse_params(raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


@dataclass(frozen=True)
class Settings:
    """Environment-specific values, read once from the environment.

    s3_endpoint_url: an S3 endpoint; empty means the AWS default, unless local_s3 is set.
    local_s3: start pmatch's embedded S3 server on loopback (the default for `make run`).
    """

    s3_bucket: str = "pmatch"
    s3_prefix: str = "pmatch"
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    local_s3_dir: Path = Path(".pmatch/s3")
    local_s3_port: int = 4568
    incoming_dir: Path = Path("data/sample/batches")
    project_dir: Path = Path(".")

    @property
    def s3_base_uri(self) -> str:
        prefix = self.s3_prefix.strip("/")
        return f"s3://{self.s3_bucket}/{prefix}" if prefix else f"s3://{self.s3_bucket}"


_ENV = {
    "PMATCH_S3_BUCKET": ("s3_bucket", str),
    "PMATCH_S3_PREFIX": ("s3_prefix", str),
    "PMATCH_S3_ENDPOINT_URL": ("s3_endpoint_url", str),
    "AWS_REGION": ("aws_region", str),
    "PMATCH_LOCAL_S3_DIR": ("local_s3_dir", Path),
    "PMATCH_LOCAL_S3_PORT": ("local_s3_port", int),
    "PMATCH_INCOMING_DIR": ("incoming_dir", Path),
    "PMATCH_PROJECT_DIR": ("project_dir", Path),
}


def load_settings(environ: typing.Mapping[str, str] | None = None) -> Settings:
    """Parses pmatch's environment variables (PMATCH_*, AWS_REGION) with their types."""
    environ = os.environ if environ is None else environ
    values = {}
    for variable, (field, kind) in _ENV.items():
        text = environ.get(variable, "").strip()
        if not text:
            continue
        try:
            values[field] = kind(text)
        except ValueError:
            raise ConfigError(f"{variable}={text!r}: expected {kind.__name__}") from None
    if not values.get("s3_bucket", "pmatch").replace("-", "").replace(".", "").isalnum():
        raise ConfigError(f"PMATCH_S3_BUCKET={values['s3_bucket']!r} is not a valid bucket name")
    return Settings(**values)
