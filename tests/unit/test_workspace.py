"""dvc.yaml and pmatch.workspace name the same paths, so Airflow's gate, deploy and monitor
read what the DVC stages wrote."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pmatch.config import ConfigError, parse_params
from pmatch.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def _outs(stage: dict) -> set[str]:
    paths = set()
    for section in ("outs", "metrics", "plots"):
        for entry in stage.get(section, []):
            paths.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return paths


def test_dvc_outputs_are_the_workspace_paths():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    space = Workspace(Path("."))
    expected = {
        "sample": space.sample_dir,
        "validate": space.validate_dir,
        "preprocess": space.preprocessed_dir,
        "train": space.model_dir,
    }
    for stage, path in expected.items():
        assert str(path) in _outs(stages[stage]), (stage, _outs(stages[stage]))
    evaluate_outs = _outs(stages["evaluate"])
    assert str(space.evaluate_dir / "metrics.json") in evaluate_outs
    assert str(space.evaluate_dir / "reference_scores.csv") in evaluate_outs
    for stage, path in expected.items():
        assert f"--out {path}" in stages[stage]["cmd"], stages[stage]["cmd"]


def test_seed_concat_needs_pixels_and_tokens(params):
    raw = params.to_dict()
    with pytest.raises(ConfigError, match="seed_concat"):
        parse_params({**raw, "train": {**raw["train"], "kind": "seed_concat"}})
    with pytest.raises(ConfigError, match="train.kind"):
        parse_params({**raw, "train": {**raw["train"], "kind": "vgg"}})
