"""`dvc repro` on a tiny catalogue in a temporary copy of the project."""

from __future__ import annotations

import json
import re
import sys

import pytest

from tests.conftest import make_project, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY = {
    "sample": {"products": 40, "seed": 5, "batch_pairs": 20, "delivery_listings": 3},
    # Trains on the sample catalogue itself, without ingesting its deliveries.
    "data": {"catalog": "data/sample"},
    "train": {"num_epochs": 2},
}


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def dvc(project, *arguments):
    return run([sys.executable, "-m", "dvc", *arguments], project)


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("dvc"), TINY)
    first = dvc(project, "repro")
    return project, first.stdout


def test_repro_runs_every_stage_and_writes_outputs(tiny_project):
    project, output = tiny_project
    assert ran_stages(output) == ["sample", "validate", "preprocess", "train", "evaluate"]
    metrics = json.loads((project / "reports/evaluate/metrics.json").read_text())
    assert {"f1", "precision", "recall", "roc_auc", "threshold"} <= set(metrics)
    assert (project / "models/candidate/model.keras").is_file()
    assert (project / "dvc.lock").is_file()


def test_second_repro_does_nothing(tiny_project):
    project, _ = tiny_project
    second = dvc(project, "repro")
    assert ran_stages(second.stdout) == []
    assert "Data and pipelines are up to date" in second.stdout


def test_changing_a_train_param_reruns_only_train_and_evaluate(tiny_project):
    project, _ = tiny_project
    experiment = dvc(
        project, "repro", "--force-downstream", "--dry", "train"
    )  # sanity: graph known
    assert "train" in experiment.stdout
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(
        params.replace("learning_rate: 0.002", "learning_rate: 0.003")
    )
    rerun = dvc(project, "repro")
    assert ran_stages(rerun.stdout) == ["train", "evaluate"]
    metrics = dvc(project, "metrics", "show", "--json")
    assert "f1" in metrics.stdout


def test_metrics_and_plots_commands_work(tiny_project):
    project, _ = tiny_project
    dvc(project, "plots", "show", "--json")
    shown = json.loads(dvc(project, "metrics", "show", "--json").stdout)
    assert shown
