"""Training is reproducible: the same seed on the same data gives the same model.

Two trainings with train.seed 42 on one preprocessed 60-product sample score every test
pair within 1e-6 of each other and report the same metrics (|ΔF1| <= 1e-6); in practice
they are bit-identical, because pmatch.model.fitting.seed_everything seeds Python, NumPy
and TensorFlow and turns on TensorFlow's deterministic kernels. A training with another
seed scores the pairs differently, so these tests fail if the seed stops mattering too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

# Scores and metrics of two same-seed trainings may differ by at most this much.
TOLERANCE = 1e-6
# A training with another seed must move some test score by more than this.
MIN_SEED_EFFECT = 1e-3


@pytest.fixture(scope="module")
def params():
    from pmatch.config import load_params

    params = load_params(ROOT / "params.yaml")
    # A few epochs are enough to tell models apart and keep three trainings under a minute.
    return dataclasses.replace(
        params, train=dataclasses.replace(params.train, num_epochs=3, early_stopping_patience=2)
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, params):
    """One 60-product sample catalogue, preprocessed once and shared by every training."""
    from pmatch.features.dataset import build_dataset, load_dataset
    from pmatch.sample import write_sample

    folder = tmp_path_factory.mktemp("determinism")
    write_sample(folder / "catalogue", products=60, seed=3, batch_pairs=10)
    build_dataset(folder / "catalogue", params.preprocess, folder / "preprocessed")
    return load_dataset(folder / "preprocessed")


@pytest.fixture(scope="module")
def train_and_measure(tmp_path_factory, dataset, params):
    """train_and_measure(seed) -> (test metrics, test scores) of a model trained with seed."""
    from pmatch.evaluate import measure, score_pairs
    from pmatch.model.inference import Matcher
    from pmatch.model.training import train_model

    def train(seed: int) -> tuple[dict, np.ndarray]:
        model_dir = tmp_path_factory.mktemp(f"model-seed-{seed}")
        train_model(dataset, dataclasses.replace(params.train, seed=seed), model_dir, verbose=0)
        # Scored from the saved folder, as the evaluate stage does.
        matcher = Matcher.load(model_dir)
        metrics, _, test_scores = measure(
            lambda pairs: score_pairs(matcher, dataset, pairs), dataset
        )
        return metrics, test_scores

    return train


@pytest.fixture(scope="module")
def seed_42_twice(train_and_measure):
    return train_and_measure(42), train_and_measure(42)


def test_same_seed_gives_the_same_scores_and_metrics(seed_42_twice):
    (first_metrics, first_scores), (second_metrics, second_scores) = seed_42_twice
    assert first_scores.shape == second_scores.shape
    assert np.max(np.abs(first_scores - second_scores)) <= TOLERANCE
    assert abs(first_metrics["f1"] - second_metrics["f1"]) <= TOLERANCE
    assert first_metrics.keys() == second_metrics.keys()
    for key, value in first_metrics.items():
        if isinstance(value, float) and not np.isnan(value):
            assert second_metrics[key] == pytest.approx(value, abs=TOLERANCE), key


def test_another_seed_gives_another_model(seed_42_twice, train_and_measure):
    (_, seed_42_scores), _ = seed_42_twice
    _, seed_7_scores = train_and_measure(7)
    assert np.max(np.abs(seed_42_scores - seed_7_scores)) > MIN_SEED_EFFECT
