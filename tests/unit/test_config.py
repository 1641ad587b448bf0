"""Tests for pmatch.config: params.yaml into typed objects, environment settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pmatch.config import (
    ConfigError,
    Params,
    Settings,
    load_params,
    load_settings,
    parse_params,
)

REPO = Path(__file__).resolve().parents[2]


def project_params(changes: dict | None = None) -> dict:
    """The repository's params.yaml as a dict, with {section: {key: value}} changes merged
    in (a section that is not a mapping replaces the section)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in (changes or {}).items():
        if isinstance(values, dict) and isinstance(raw.get(section), dict):
            raw[section] = {**raw[section], **values}
        else:
            raw[section] = values
    return raw


def parse_changed(changes: dict) -> Params:
    """parse_params on the repository's params.yaml with `changes` merged in."""
    return parse_params(project_params(changes))


def write_params(folder: Path, raw: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_repository_params_file_loads_with_every_section():
    params = load_params(REPO / "params.yaml")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())

    assert isinstance(params, Params)
    assert set(raw) == set(params.to_dict())
    # Every value written in params.yaml arrives in the typed object unchanged.
    for section, values in raw.items():
        for key, value in values.items():
            assert getattr(getattr(params, section), key) == value, f"{section}.{key}"


def test_params_are_frozen():
    params = parse_changed({})
    with pytest.raises(AttributeError):
        params.train.num_epochs = 1  # type: ignore[misc]


def test_replace_changes_one_value_and_validates_it_again():
    train = parse_changed({}).train

    assert dataclasses.replace(train, num_epochs=3).num_epochs == 3
    assert dataclasses.replace(train, num_epochs=3).batch_size == train.batch_size
    with pytest.raises(ValueError, match="num_epochs"):
        dataclasses.replace(train, num_epochs=0)


def test_to_dict_gives_every_section_as_plain_values():
    params = parse_changed({})

    assert params.to_dict() == project_params()
    assert dataclasses.asdict(params.gate) == project_params()["gate"]


def test_a_missing_key_is_named():
    raw = project_params()
    del raw["train"]["batch_size"]

    with pytest.raises(ConfigError, match=r"missing key train\.batch_size\b"):
        parse_params(raw)


def test_a_missing_section_is_named():
    raw = project_params()
    del raw["gate"]

    with pytest.raises(ConfigError, match=r"missing section gate\b"):
        parse_params(raw)


def test_unknown_key_is_named_with_its_section():
    with pytest.raises(ConfigError, match=r"unknown key train\.num_epoch\b") as caught:
        parse_changed({"train": {"num_epoch": 3}})
    # The message guesses the key meant and lists what it could have been.
    assert "did you mean num_epochs?" in str(caught.value)
    assert "batch_size" in str(caught.value)


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"unknown key trian\b"):
        parse_changed({"trian": {"num_epochs": 3}})


def test_section_that_is_not_a_mapping_is_named():
    with pytest.raises(ConfigError, match=r"^train: expected a mapping"):
        parse_changed({"train": 5})
    with pytest.raises(ConfigError, match=r"^gate: expected a mapping"):
        parse_changed({"gate": None})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"train": {"batch_size": "big"}}, r"train\.batch_size: expected int, got str"),
        ({"train": {"batch_size": 64.5}}, r"train\.batch_size: expected int, got float"),
        ({"data": {"catalog": 5}}, r"data\.catalog: expected str, got int"),
        ({"gate": {"min_f1": "high"}}, r"gate\.min_f1: expected float, got str"),
        ({"train": {"colour_head": "yes"}}, r"train\.colour_head: expected bool, got str"),
        (
            {"gate": {"allow_unreadable_production": "yes"}},
            r"gate\.allow_unreadable_production: expected bool, got str",
        ),
    ],
)
def test_wrong_type_names_the_key_and_the_types(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_changed(raw)


def test_an_int_is_accepted_where_a_float_is_expected():
    params = parse_changed({"train": {"learning_rate": 1}, "gate": {"min_f1": 1}})

    assert params.train.learning_rate == 1.0
    assert isinstance(params.train.learning_rate, float)
    assert isinstance(params.gate.min_f1, float)


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"train": {"num_epochs": True}}, "train.num_epochs"),
        ({"gate": {"min_f1": False}}, "gate.min_f1"),
    ],
)
def test_a_boolean_is_rejected_for_a_number(raw, key):
    with pytest.raises(ConfigError, match=rf"{key}: expected \w+, got a boolean"):
        parse_changed(raw)


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"preprocess": {"val_fraction": 0}}, "preprocess.val_fraction must be in (0, 1), got 0"),
        ({"preprocess": {"test_fraction": 1.0}}, "preprocess.test_fraction must be in (0, 1)"),
        ({"preprocess": {"val_fraction": 0.5, "test_fraction": 0.45}}, "leave a train split"),
        ({"train": {"batch_size": 0}}, "train.batch_size must be at least 1, got 0"),
        ({"sample": {"products": -3}}, "sample.products must be at least 1, got -3"),
        ({"sample": {"batch_pairs": 0}}, "sample.batch_pairs must be at least 1, got 0"),
        ({"preprocess": {"hard_negatives": -1}}, "preprocess.hard_negatives must be at least 0"),
        ({"validate": {"min_title_chars": 0}}, "validate.min_title_chars must be at least 1"),
        ({"validate": {"min_image_side": 0}}, "validate.min_image_side must be at least 1"),
        ({"gate": {"min_f1": 1.5}}, "gate.min_f1 must be in [0, 1], got 1.5"),
        ({"gate": {"max_regression": -0.1}}, "gate.max_regression must be in [0, 1], got -0.1"),
        ({"gate": {"confidence": 1.0}}, "gate.confidence must be in (0.5, 1), got 1.0"),
        ({"gate": {"bootstrap_resamples": 10}}, "gate.bootstrap_resamples must be in [100, "),
        ({"gate": {"canary_pairs": 0}}, "gate.canary_pairs must be in [1, 64], got 0"),
        ({"gate": {"smoke_tolerance": 0}}, "gate.smoke_tolerance must be positive, got 0"),
        ({"monitor": {"min_listings": 0}}, "monitor.min_listings must be at least 1, got 0"),
        ({"monitor": {"max_f1_drop": 2}}, "monitor.max_f1_drop must be in [0, 1], got 2"),
        (
            {"monitor": {"persistence_runs": 2, "persistence_drifts": 3}},
            "monitor.persistence_drifts (3) exceeds monitor.persistence_runs (2)",
        ),
        (
            {"monitor": {"thresholds": {"score": 0.1}}},
            "monitor.thresholds: missing below_threshold_share",
        ),
        ({"monitor": {"drift_method": "kss"}}, "monitor.drift_method must be 'wasserstein', "),
        (
            {"train": {"colour_negatives": 1.5}},
            "train.colour_negatives must be in [0, 1], got 1.5 (the share of train matches",
        ),
        ({"train": {"ensemble_members": 0}}, "train.ensemble_members must be at least 1"),
        ({"train": {"learning_rate": 0}}, "train.learning_rate must be positive"),
        ({"train": {"early_stopping_patience": -1}}, "train.early_stopping_patience must be at"),
        ({"train": {"colour_head_learning_rate": 0}}, "train.colour_head_learning_rate must be"),
        ({"train": {"colour_head_epochs": 0}}, "train.colour_head_epochs must be at least 1"),
        ({"train": {"colour_head_batch_size": 0}}, "train.colour_head_batch_size must be at"),
        ({"train": {"colour_head_patience": -1}}, "train.colour_head_patience must be at least 0"),
        ({"train": {"match_head_epochs": 0}}, "train.match_head_epochs must be at least 1"),
        ({"train": {"match_head_patience": -1}}, "train.match_head_patience must be at least 0"),
        ({"train": {"kind": "vgg"}}, "train.kind must be 'two_tower' or 'seed_concat', got 'vgg'"),
        ({"data": {"catalog": ""}}, "data.catalog must not be empty"),
        (
            {"preprocess": {"image_features": "resnet"}},
            "preprocess.image_features must be 'pixels' or 'efficientnet_lite0', got 'resnet'",
        ),
        (
            {"preprocess": {"text_features": "minilm", "max_tokens": 1}},
            "preprocess.max_tokens must be in [2, 512] with text_features minilm",
        ),
        (
            {"preprocess": {"text_features": "minilm", "max_tokens": 600}},
            "preprocess.max_tokens must be in [2, 512] with text_features minilm",
        ),
        (
            {"train": {"kind": "seed_concat"}, "preprocess": {"text_features": "minilm"}},
            "train.kind seed_concat trains from scratch: it needs preprocess.image_features",
        ),
    ],
)
def test_out_of_range_values_are_named(raw, named):
    with pytest.raises(ConfigError) as caught:
        parse_changed(raw)
    assert named in str(caught.value)


def test_every_problem_of_a_section_is_named_at_once():
    with pytest.raises(ConfigError) as caught:
        parse_changed({"train": {"batch_size": 0, "num_epochs": "many"}})
    assert "train.batch_size must be at least 1" in str(caught.value)
    assert "train.num_epochs: expected int, got str" in str(caught.value)


@pytest.mark.parametrize("removed", ["preprocess.unfrozen_blocks", "train.text_head"])
def test_params_measured_and_not_kept_are_unknown(removed):
    section, key = removed.split(".")
    value = "locked" if key == "text_head" else 0

    with pytest.raises(ConfigError, match=rf"unknown key {section}\.{key}\b"):
        parse_changed({section: {key: value}})


def test_load_params_names_the_file_and_the_key(tmp_path):
    path = write_params(tmp_path, {"train": {"num_epoch": 3}})

    with pytest.raises(ConfigError) as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "train.num_epoch" in str(caught.value)


def test_load_params_on_a_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere" / "params.yaml"

    with pytest.raises(ConfigError, match="params file not found") as caught:
        load_params(path)
    assert str(path) in str(caught.value)


def test_load_params_on_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  num_epochs: [3\n")

    with pytest.raises(ConfigError, match="not valid YAML") as caught:
        load_params(path)
    assert str(path) in str(caught.value)


def test_an_empty_params_file_names_the_missing_sections(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# nothing tuned yet\n")

    with pytest.raises(ConfigError, match=r"missing section sample\b") as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "missing section monitor" in str(caught.value)


def test_settings_default_when_the_environment_is_empty():
    settings = load_settings({})

    assert settings == Settings()
    assert settings.s3_endpoint_url is None
    assert settings.local_s3_port == 4568
    assert settings.s3_base_uri == "s3://pmatch/pmatch"


def test_settings_are_parsed_with_their_types():
    settings = load_settings(
        {
            "PMATCH_S3_BUCKET": "models-eu",
            "PMATCH_S3_PREFIX": "/team/pmatch/",
            "PMATCH_S3_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_REGION": "eu-west-1",
            "PMATCH_LOCAL_S3_PORT": " 9001 ",
            "PMATCH_LOCAL_S3_DIR": "/var/pmatch/s3",
            "PMATCH_INBOX": "s3://deliveries/shop",
            "PMATCH_PROJECT_DIR": "/srv/pmatch",
            "UNRELATED": "ignored",
        }
    )

    assert settings.local_s3_port == 9001
    assert settings.local_s3_dir == Path("/var/pmatch/s3")
    assert settings.inbox == "s3://deliveries/shop"
    assert settings.project_dir == Path("/srv/pmatch")
    assert settings.aws_region == "eu-west-1"
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3_base_uri == "s3://models-eu/team/pmatch"


def test_blank_variables_count_as_unset():
    settings = load_settings({"PMATCH_LOCAL_S3_PORT": "  ", "PMATCH_S3_ENDPOINT_URL": ""})

    assert settings.local_s3_port == 4568
    assert settings.s3_endpoint_url is None


def test_an_empty_prefix_puts_models_at_the_bucket_root():
    # An empty variable means "unset", so only a prefix of slashes can empty it.
    assert load_settings({"PMATCH_S3_PREFIX": "/"}).s3_base_uri == "s3://pmatch"


def test_a_port_that_is_not_a_number_names_the_variable():
    with pytest.raises(ConfigError, match=r"PMATCH_LOCAL_S3_PORT='abc': expected int"):
        load_settings({"PMATCH_LOCAL_S3_PORT": "abc"})


def test_a_bad_bucket_name_names_the_variable():
    with pytest.raises(ConfigError, match=r"PMATCH_S3_BUCKET='my bucket!'"):
        load_settings({"PMATCH_S3_BUCKET": "my bucket!"})


def test_settings_read_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("PMATCH_LOCAL_S3_PORT", "4999")

    assert load_settings().local_s3_port == 4999
