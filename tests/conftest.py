"""Shared test setup: a throwaway Airflow home, a local S3 server, temporary project copies."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LUMA = ROOT.parent / "shared" / "data" / "luma"

# Airflow reads its configuration when first imported, so its home must point at a
# throwaway folder before any test imports it; the tests never touch the user's .airflow/.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="pmatch-test-airflow-"))
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# The frozen-feature cache of the tests is theirs, not the user's.
os.environ["PMATCH_FEATURE_CACHE"] = str(
    _AIRFLOW_HOME.parent / f"{_AIRFLOW_HOME.name}-features.sqlite"
)
# Tests pick their own S3; an endpoint from the user's shell must not leak in.
os.environ.pop("PMATCH_S3_ENDPOINT_URL", None)

# What a temporary project needs to run `dvc repro` and the DAGs' tasks.
PROJECT_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "src")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Runs a command with this environment's scripts first on PATH; returns its output."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
    return result


def make_project(folder: Path, params_overrides: dict) -> Path:
    """A copy of the project (dvc.yaml, params.yaml, src/) in a fresh git + DVC repo.

    params_overrides: {section: {key: value}} merged into params.yaml.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, folder / name)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in params_overrides.items():
        params[section].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], folder)
    run([sys.executable, "-m", "dvc", "init", "-q"], folder)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], folder)
    run(["git", "add", "-A"], folder)
    run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "commit", "-qm", "init"],
        folder,
    )
    return folder


# A project small enough to train in seconds, big enough that the model learns.
SMALL_PROJECT = {
    "sample": {"products": 600, "seed": 11, "batch_pairs": 240, "delivery_listings": 3},
    # Trains on the sample catalogue itself; the data loop's tests ingest deliveries.
    "data": {"catalog": "data/sample"},
    "train": {"num_epochs": 30},
    # This small sample reaches F1 ~0.77 (0.88 at the default 1,000 products).
    "gate": {"min_f1": 0.6},
}


@pytest.fixture(scope="session")
def params():
    """The project's params.yaml, validated: params sections have no defaults, so tests
    start from it and change what they need with dataclasses.replace."""
    from pmatch.config import load_params

    return load_params(ROOT / "params.yaml")


# The bucket the tests' registries live in on the local_s3 server.
TEST_BUCKET = "pmatch-test"


@pytest.fixture(scope="session")
def local_s3(tmp_path_factory):
    """The embedded S3 server on a free port; yields its endpoint URL (credentials set)."""
    from pmatch.s3server import LOCAL_CREDENTIALS, LocalS3Server, ensure_bucket, s3_client

    os.environ.update(LOCAL_CREDENTIALS)
    with LocalS3Server(tmp_path_factory.mktemp("s3") / "objects", port=free_port()) as server:
        # Tests point PMATCH_S3_ENDPOINT_URL here, where pmatch creates no bucket (only the
        # embedded server's own is created automatically), so the operator's step is done here.
        ensure_bucket(s3_client(server.endpoint_url), TEST_BUCKET)
        yield server.endpoint_url


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite Airflow metadata DB in the throwaway AIRFLOW_HOME."""
    run([sys.executable, "-m", "airflow", "db", "migrate"], ROOT)
    return _AIRFLOW_HOME / "airflow.db"


# Test tiers: the folder decides. tests/unit and tests/dags hold fast tests of one module or
# DAG file, with no servers (`make test-fast`); tests/integration runs DVC, Airflow, the
# local S3 server or the pretrained networks. `slow` marks integration tests of minutes.
TIER_FOLDERS = {"unit": "unit", "dags": "unit", "integration": "integration"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(item.path).relative_to(ROOT / "tests").parts[0]
        tier = TIER_FOLDERS.get(folder)
        if tier is None:
            raise pytest.UsageError(
                f"{item.path}: tests live under tests/{{unit,dags,integration}}"
            )
        marked = {mark.name for mark in item.iter_markers()} & {"integration", "slow"}
        if tier == "unit" and marked:
            raise pytest.UsageError(
                f"{item.nodeid} is marked {', '.join(sorted(marked))} but lives in tests/{folder}: "
                "move it to tests/integration"
            )
        item.add_marker(getattr(pytest.mark, tier))
