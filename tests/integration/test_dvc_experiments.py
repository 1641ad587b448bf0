"""`dvc exp run` twice on a tiny catalogue, then the comparisons a user makes between the runs:
`dvc exp show`, `dvc metrics diff` and `dvc plots diff`."""

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
METRICS = "reports/evaluate/metrics.json"
# The experiments' names and the train.seed each one ran with.
SEEDS = {"baseline": 42, "other-seed": 7}


def dvc(project, *arguments):
    return run([sys.executable, "-m", "dvc", *arguments], project)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny project with two experiments: the committed params, then another train.seed."""
    project = make_project(tmp_path_factory.mktemp("experiments"), TINY)
    # Each experiment is a git commit, so it needs an author even where git has no global one.
    run(["git", "config", "user.name", "test"], project)
    run(["git", "config", "user.email", "test@localhost"], project)
    dvc(project, "exp", "run", "--name", "baseline")
    dvc(project, "exp", "run", "--name", "other-seed", "--set-param", "train.seed=7")
    return project


@pytest.fixture(scope="module")
def shown(project) -> dict[str, dict]:
    """`dvc exp show --json` of the experiments, by name: each one's params, metrics, outs."""
    baselines = json.loads(dvc(project, "exp", "show", "--json").stdout)
    return {
        experiment["name"]: experiment["revs"][0]["data"]
        for baseline in baselines
        for experiment in baseline.get("experiments") or []
    }


def shown_f1(shown: dict, name: str):
    return shown[name]["metrics"][METRICS]["data"]["f1"]


def test_exp_show_lists_each_experiment_with_its_params_and_metrics(shown):
    assert set(shown) == set(SEEDS)
    for name, seed in SEEDS.items():
        assert shown[name]["params"]["params.yaml"]["data"]["train"]["seed"] == seed
        # An experiment whose metrics file did not reach its commit shows an error here.
        assert "error" not in shown[name]["metrics"][METRICS], shown[name]["metrics"]
        assert 0 <= shown_f1(shown, name) <= 1
    # The new seed trained a new model rather than reusing the baseline's.
    models = {name: shown[name]["outs"]["models/candidate"]["hash"] for name in SEEDS}
    assert models["baseline"] != models["other-seed"]


def test_metrics_diff_compares_the_experiments_f1(project, shown):
    # --all: the tiny model may score the same F1 under both seeds, and diff hides unchanged keys.
    diff = json.loads(
        dvc(project, "metrics", "diff", "baseline", "other-seed", "--all", "--json").stdout
    )
    assert METRICS in diff, diff
    f1 = diff[METRICS]["f1"]
    assert f1["old"] == shown_f1(shown, "baseline")
    assert f1["new"] == shown_f1(shown, "other-seed")


def test_plots_diff_draws_both_experiments_in_every_plot(project, tmp_path):
    dvc(project, "plots", "diff", "baseline", "other-seed", "-o", str(tmp_path))
    page = (tmp_path / "index.html").read_text()
    # Each data plot is a Vega-Lite spec inlined in the page, its rows tagged with their revision.
    specs = {
        plot: json.loads(spec)
        for spec, plot in re.findall(r"var spec = (.*?);\s*vegaEmbed\('#(\w+)', spec\)", page)
    }
    assert set(specs) == {"reports_evaluate_pr_curve_csv", "reports_evaluate_score_histogram_csv"}
    for plot, spec in specs.items():
        revisions = {row["rev"] for row in spec.get("data", {}).get("values", [])}
        assert revisions == set(SEEDS), plot
    pr_curve = specs["reports_evaluate_pr_curve_csv"]["data"]["values"][0]
    assert {"recall", "precision"} <= set(pr_curve)
    for name in SEEDS:
        image = f"static/{name}_reports_evaluate_evaluation.png"
        assert f'src="{image}"' in page
        assert (tmp_path / image).is_file()
