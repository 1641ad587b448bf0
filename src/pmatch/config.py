"""Typed, validated configuration: params.yaml sections and environment settings."""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.dataclasses import dataclass

# Evidently's stat tests for a numerical column (the match score).
DriftMethod = Literal[
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
]
DRIFT_METHODS = frozenset(typing.get_args(DriftMethod))
# all-MiniLM-L6-v2's position embeddings; pmatch.features.minilm.MiniLMArchitecture
# takes its max_positions from here.
MINILM_MAX_POSITIONS = 512

# Every params section: unknown keys and loose types (a bool for a number, a string for a
# number) are errors; an int is still accepted for a float, since YAML writes 1 for 1.0.
# kw_only: the sections have no defaults, so they are only built with named values.
_SECTION = {"frozen": True, "kw_only": True, "config": ConfigDict(extra="forbid", strict=True)}

AtLeastOne = Annotated[int, Field(ge=1)]
AtLeastZero = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Seed = Annotated[int, Field(ge=0)]


class ConfigError(ValueError):
    """A params file or an environment setting is wrong; the message names the key."""


@dataclass(**_SECTION)
class SampleParams:
    """The synthetic sample catalogue, its monitoring batches and its dated deliveries
    (pmatch sample)."""

    products: AtLeastOne
    seed: Seed
    batch_pairs: AtLeastOne
    delivery_listings: AtLeastOne


@dataclass(**_SECTION)
class DataParams:
    """The catalogue to train on: a folder with catalog.csv and its images."""

    catalog: Annotated[str, Field(min_length=1)]


@dataclass(**_SECTION)
class ValidateParams:
    """The catalogue contract's thresholds (pmatch validate)."""

    min_title_chars: AtLeastOne
    min_image_side: AtLeastOne
    max_image_pixels: AtLeastOne
    # A 64-bit hash: unrelated photos differ in about 32 bits, so more would match anything.
    near_duplicate_bits: Annotated[int, Field(ge=0, le=32)]
    near_duplicate_difference: Annotated[float, Field(ge=0, le=255)]

    @model_validator(mode="after")
    def _check_image_limits(self) -> ValidateParams:
        if self.max_image_pixels < self.min_image_side**2:
            raise ValueError(
                f"validate.max_image_pixels ({self.max_image_pixels}) is below "
                f"validate.min_image_side squared ({self.min_image_side**2}), so no photo "
                "could pass; raise max_image_pixels or lower min_image_side"
            )
        return self


@dataclass(**_SECTION)
class IngestParams:
    """What a delivery may bring before it is refused whole (pmatch ingest)."""

    max_rejected_share: Annotated[
        float,
        Field(ge=0, le=1, description="the share of a delivery's rows that may fail the contract"),
    ]


@dataclass(**_SECTION)
class PreprocessParams:
    """Splits, pairs and the towers' inputs (pmatch preprocess)."""

    seed: Seed
    val_fraction: Annotated[float, Field(gt=0, lt=1)]
    test_fraction: Annotated[float, Field(gt=0, lt=1)]
    image_size: AtLeastOne
    max_tokens: AtLeastOne
    min_token_count: AtLeastOne
    random_negatives: AtLeastZero
    hard_negatives: AtLeastZero
    image_features: Literal["pixels", "efficientnet_lite0"]
    text_features: Literal["tokens", "minilm"]

    @model_validator(mode="after")
    def _check_splits_and_tokens(self) -> PreprocessParams:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                "preprocess.val_fraction + preprocess.test_fraction must leave a train split "
                f"(their sum must be below 0.9), got {self.val_fraction} + {self.test_fraction}"
            )
        if self.text_features == "minilm" and not 2 <= self.max_tokens <= MINILM_MAX_POSITIONS:
            raise ValueError(
                f"preprocess.max_tokens must be in [2, {MINILM_MAX_POSITIONS}] with "
                "text_features minilm (room for [CLS] and [SEP], at most MiniLM's position "
                f"embeddings), got {self.max_tokens}"
            )
        return self


@dataclass(**_SECTION)
class TrainParams:
    """The towers, the colour head and the match head (pmatch train)."""

    kind: Literal["two_tower", "seed_concat"]
    seed: Seed
    num_epochs: AtLeastOne
    batch_size: AtLeastOne
    learning_rate: Positive
    embedding_dim: AtLeastOne
    projection_dim: AtLeastOne
    early_stopping_patience: AtLeastZero
    colour_head: bool
    colour_negatives: Annotated[
        float,
        Field(ge=0, le=1, description="the share of train matches that get a colour negative"),
    ]
    ensemble_members: AtLeastOne
    colour_head_learning_rate: Positive
    colour_head_epochs: AtLeastOne
    colour_head_batch_size: AtLeastOne
    colour_head_patience: AtLeastZero
    match_head_epochs: AtLeastOne
    match_head_patience: AtLeastZero


@dataclass(**_SECTION)
class EvaluateParams:
    """Metrics and plots on the test split (pmatch evaluate)."""

    histogram_bins: AtLeastOne


@dataclass(**_SECTION)
class GateParams:
    """When a candidate may replace the production model (pmatch gate)."""

    min_f1: Share
    max_regression: Annotated[
        float, Field(ge=0, le=1, description="the F1 a candidate may lose against production")
    ]
    bootstrap_resamples: Annotated[int, Field(ge=100, le=100_000)]
    confidence: Annotated[float, Field(gt=0.5, lt=1)]
    seed: Seed
    canary_pairs: Annotated[int, Field(ge=1, le=64)]
    smoke_tolerance: Annotated[float, Field(gt=0, le=0.1)]
    allow_unreadable_production: bool


# Every drift signal a monitoring run computes (pmatch.monitor.signals), each with its own
# threshold in monitor.thresholds; labels_f1 is computed only for deliveries with labels.
SIGNAL_NAMES = (
    "score",
    "below_threshold_share",
    "photo_brightness",
    "photo_contrast",
    "photo_sharpness",
    "photo_size",
    "title_length",
    "title_oov_share",
    "title_charset",
    "image_embeddings",
    "text_embeddings",
)


@dataclass(**_SECTION)
class MonitorParams:
    """The drift signals and the decision to retrain (pmatch monitor)."""

    min_listings: AtLeastOne
    drift_method: DriftMethod
    thresholds: dict[str, Positive]
    min_signals: AtLeastOne
    max_f1_drop: Share
    persistence_runs: AtLeastOne
    persistence_drifts: AtLeastOne
    cooldown_hours: AtLeastZero

    @model_validator(mode="after")
    def _check_signals_and_persistence(self) -> MonitorParams:
        missing = [name for name in SIGNAL_NAMES if name not in self.thresholds]
        unknown = [name for name in self.thresholds if name not in SIGNAL_NAMES]
        if missing or unknown:
            problems = [
                f"missing {', '.join(missing)}" if missing else "",
                f"unknown {', '.join(unknown)}" if unknown else "",
            ]
            raise ValueError(
                f"monitor.thresholds: {'; '.join(part for part in problems if part)}; it needs "
                f"one threshold per signal: {', '.join(SIGNAL_NAMES)}"
            )
        if self.persistence_drifts > self.persistence_runs:
            raise ValueError(
                f"monitor.persistence_drifts ({self.persistence_drifts}) exceeds "
                f"monitor.persistence_runs ({self.persistence_runs}): no run could ever retrain"
            )
        if self.min_signals > len(SIGNAL_NAMES):
            raise ValueError(
                f"monitor.min_signals ({self.min_signals}) exceeds the {len(SIGNAL_NAMES)} signals"
            )
        return self


@dataclass(**_SECTION)
class Params:
    """Every section of params.yaml; load_params builds it, each key present."""

    sample: SampleParams
    data: DataParams
    validate: ValidateParams
    ingest: IngestParams
    preprocess: PreprocessParams
    train: TrainParams
    evaluate: EvaluateParams
    gate: GateParams
    monitor: MonitorParams

    @model_validator(mode="after")
    def _check_seed_concat_inputs(self) -> Params:
        features = (self.preprocess.image_features, self.preprocess.text_features)
        if self.train.kind == "seed_concat" and features != ("pixels", "tokens"):
            raise ValueError(
                "train.kind seed_concat trains from scratch: it needs preprocess.image_features "
                "pixels and preprocess.text_features tokens, got "
                f"{features[0]} and {features[1]}"
            )
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# A strict type error's expected type, by pydantic's error type.
_EXPECTED = {"int_type": "int", "float_type": "float", "string_type": "str", "bool_type": "bool"}


def _allowed(kind, name: str) -> str:
    """What field `name` of dataclass `kind` allows, from its constraints ("at least 1")."""
    bounds = {}
    for constraint in kind.__pydantic_fields__[name].metadata:
        for attribute in ("ge", "gt", "le", "lt"):
            if getattr(constraint, attribute, None) is not None:
                bounds[attribute] = getattr(constraint, attribute)
    ge, gt, le, lt = (bounds.get(attribute) for attribute in ("ge", "gt", "le", "lt"))
    if ge is not None and le is not None:
        return f"in [{ge}, {le}]"
    if gt is not None and lt is not None:
        return f"in ({gt}, {lt})"
    if gt == 0:
        return "positive"
    if ge is not None:
        return f"at least {ge}"
    if gt is not None:
        return f"greater than {gt}"
    return f"at most {le}" if le is not None else f"less than {lt}"


def _describe(error: dict, kind, prefix: str) -> str:
    """One pydantic error on dataclass `kind` as a sentence naming the dotted key."""
    name = str(error["loc"][0]) if error["loc"] else ""
    key = ".".join(part for part in (prefix, name) if part)
    value = error["input"]
    fields = kind.__pydantic_fields__
    reason = error["type"]
    if reason == "missing":
        what = "section" if kind is Params else "key"
        return f"missing {what} {key}: params.yaml sets every tunable, so add it there"
    if reason in ("unexpected_keyword_argument", "extra_forbidden"):
        guess = difflib.get_close_matches(name, fields, n=1)
        hint = f" (did you mean {guess[0]}?)" if guess else ""
        return f"unknown key {key}{hint}; known keys here: {', '.join(fields)}"
    if reason in _EXPECTED:
        got = "a boolean" if isinstance(value, bool) else type(value).__name__
        return f"{key}: expected {_EXPECTED[reason]}, got {got} ({value!r})"
    if reason.startswith("dataclass"):
        return f"{key}: expected a mapping of keys, got {value!r}"
    if reason == "literal_error":
        return f"{key} must be {error['ctx']['expected']}, got {value!r}"
    if reason in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        description = fields[name].description
        because = f" ({description})" if description else ""
        return f"{key} must be {_allowed(kind, name)}, got {value!r}{because}"
    if reason == "string_too_short":
        return f"{key} must not be empty"
    if reason == "value_error":
        # The model validators' messages already name the keys they are about.
        return str(error["ctx"]["error"])
    return f"{key}: {error['msg']}, got {value!r}"


def _problems(error: ValidationError, kind, prefix: str = "") -> str:
    return "; ".join(_describe(each, kind, prefix) for each in error.errors())


_SECTIONS = {name: field.annotation for name, field in Params.__pydantic_fields__.items()}


def parse_params(raw: typing.Mapping) -> Params:
    """Builds Params from a parsed params.yaml, failing on unknown, missing or wrong keys.

    raw: {section: {key: value}}, every section and key of params.yaml present.
    """
    if not isinstance(raw, typing.Mapping):
        raise ConfigError(f"params: expected a mapping of sections, got {raw!r}")
    # Each section is validated on its own: a strict dataclass field takes only an instance,
    # not the mapping YAML gives.
    sections, problems = {}, []
    for name, values in raw.items():
        kind = _SECTIONS.get(name)
        if kind is None or not isinstance(values, typing.Mapping):
            sections[str(name)] = values  # Params names the unknown section or its type.
            continue
        try:
            sections[name] = kind(**{str(key): value for key, value in values.items()})
        except ValidationError as error:
            problems.append(_problems(error, kind, name))
    if problems:
        raise ConfigError("; ".join(problems))
    try:
        return Params(**sections)
    except ValidationError as error:
        raise ConfigError(_problems(error, Params)) from None


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Loads and validates a params file; the error names the file and the key."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(
            f"{path}: params file not found; run from the project root or pass --params"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    try:
        return parse_params({} if raw is None else raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Settings:
    """Environment-specific values, read once from the environment by load_settings.

    s3_endpoint_url: an S3 endpoint; empty means the AWS default, unless local_s3 is set.
    local_s3_dir, local_s3_port: where pmatch's embedded S3 server keeps its objects and
    listens on loopback (`make run`).
    inbox: where catalogue deliveries arrive, one subfolder per delivery named by its date:
    a local folder or an s3://bucket/prefix URI.
    runs_dir: where a machine keeps the DAG runs' workspaces (pmatch.run_tasks); relative
    paths are relative to project_dir.
    """

    s3_bucket: str = "pmatch"
    s3_prefix: str = "pmatch"
    s3_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    local_s3_dir: Path = Path(".pmatch/s3")
    local_s3_port: Annotated[int, Field(ge=1, le=65535)] = 4568
    inbox: str = "data/inbox"
    runs_dir: Path = Path(".pmatch/runs")
    project_dir: Path = Path(".")

    @field_validator("s3_bucket")
    @classmethod
    def _check_bucket(cls, bucket: str) -> str:
        if not bucket.replace("-", "").replace(".", "").isalnum():
            raise ValueError("not a valid bucket name (letters, digits, '-' and '.' only)")
        return bucket

    @property
    def s3_base_uri(self) -> str:
        prefix = self.s3_prefix.strip("/")
        return f"s3://{self.s3_bucket}/{prefix}" if prefix else f"s3://{self.s3_bucket}"


# The environment variable that sets each Settings field.
_ENV = {
    "PMATCH_S3_BUCKET": "s3_bucket",
    "PMATCH_S3_PREFIX": "s3_prefix",
    "PMATCH_S3_ENDPOINT_URL": "s3_endpoint_url",
    "AWS_REGION": "aws_region",
    "PMATCH_LOCAL_S3_DIR": "local_s3_dir",
    "PMATCH_LOCAL_S3_PORT": "local_s3_port",
    "PMATCH_INBOX": "inbox",
    "PMATCH_RUNS_DIR": "runs_dir",
    "PMATCH_PROJECT_DIR": "project_dir",
}


def _describe_variable(error: dict, environ: dict[str, str]) -> str:
    field = error["loc"][0]
    variable = next(name for name, each in _ENV.items() if each == field)
    setting = f"{variable}={environ[variable]!r}"
    reason = error["type"]
    if reason == "int_parsing":
        return f"{setting}: expected int"
    if reason.startswith(("greater_than", "less_than")):
        return f"{setting}: must be {_allowed(Settings, field)}"
    if reason == "value_error":
        return f"{setting}: {error['ctx']['error']}"
    return f"{setting}: {error['msg']}"


def load_settings(environ: typing.Mapping[str, str] | None = None) -> Settings:
    """Parses pmatch's environment variables (PMATCH_*, AWS_REGION) with their types.

    environ: the variables to read (default: the process environment); a blank one counts
    as unset.
    """
    environ = os.environ if environ is None else environ
    texts = {variable: environ.get(variable, "").strip() for variable in _ENV}
    texts = {variable: text for variable, text in texts.items() if text}
    try:
        return Settings(**{_ENV[variable]: text for variable, text in texts.items()})
    except ValidationError as error:
        raise ConfigError(
            "; ".join(_describe_variable(each, texts) for each in error.errors())
        ) from None
