"""Shared fixtures for the unit tests: one small synthetic catalogue for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmatch.sample import write_sample

SAMPLE_PRODUCTS = 50


@pytest.fixture(scope="session")
def sample_catalog(tmp_path_factory) -> Path:
    """A 50-product sample catalogue (about 75 rows). Read-only: copy it before changing it."""
    folder = tmp_path_factory.mktemp("sample") / "catalogue"
    write_sample(folder, products=SAMPLE_PRODUCTS, seed=3, batch_pairs=30)
    return folder
