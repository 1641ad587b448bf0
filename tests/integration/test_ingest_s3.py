"""pmatch ingest against real S3: the DVC remote, the delivery records, the quarantine, and a
recorded data version restored with dvc pull."""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest

from tests.conftest import TEST_BUCKET, make_project
from tests.unit.test_ingest import INITIAL, delivery, listing

pytestmark = [pytest.mark.integration]


@contextlib.contextmanager
def _s3_settings(project, local_s3: str, prefix: str, inbox: str):
    """pmatch's settings for project on the tests' S3 server, under prefix, with inbox."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMATCH_PROJECT_DIR", str(project))
        patch.setenv("PMATCH_S3_ENDPOINT_URL", local_s3)
        patch.setenv("PMATCH_S3_BUCKET", TEST_BUCKET)
        patch.setenv("PMATCH_S3_PREFIX", prefix)
        patch.setenv("PMATCH_INBOX", inbox)
        yield


def test_deliveries_become_pushed_data_versions_that_dvc_pull_restores(tmp_path, local_s3):
    from pmatch import dvc_remote
    from pmatch.catalog.version import catalog_version
    from pmatch.config import load_settings
    from pmatch.pipeline import ingest
    from pmatch.s3server import s3_client

    project = make_project(tmp_path / "project", {})
    inbox = project / "inbox"
    delivery(inbox / "2026-01-01", INITIAL, first_seed=100)
    later = [listing(f"N{index}", f"New item number {index}") for index in range(9)]
    delivery(inbox / "2026-01-08", [*later, listing("N9", "   ")], first_seed=200)
    with _s3_settings(project, local_s3, "ingest-test", "inbox"):
        first = ingest(project_dir=project)
        second = ingest(project_dir=project)
        assert ingest(project_dir=project) is None  # nothing pending
        again = ingest(str(inbox / "2026-01-08"), project_dir=project)
        settings = load_settings()

    catalogue = project / "data" / "catalog"
    assert (first["delivery"], first["accepted"]) == ("2026-01-01", 5)
    assert second["quarantined"] == {"title empty": 1} and second["accepted"] == 9
    assert second["previous_data_version"] == first["data_version"]
    assert second["data_version"] == catalog_version(catalogue)
    assert again["already_ingested"] and again["data_version"] == second["data_version"]

    client = s3_client(local_s3)
    # By prefix: the bucket is the session's, and other tests' objects fill its first pages.
    keys = {
        item["Key"]
        for item in client.list_objects_v2(Bucket=TEST_BUCKET, Prefix="ingest-test/")["Contents"]
    }
    assert "ingest-test/quarantine/2026-01-08/photos/N9-x.png" in keys
    assert "ingest-test/quarantine/2026-01-08/ingest.html" in keys
    assert client.list_objects_v2(Bucket=TEST_BUCKET, Prefix="dvc/files/md5/")["KeyCount"] > 0
    records = {}
    for name in ("2026-01-01", "2026-01-08"):
        body = client.get_object(
            Bucket=TEST_BUCKET, Key=f"ingest-test/deliveries/{name}/ingest.json"
        )["Body"].read()
        records[name] = json.loads(body)
    assert records["2026-01-08"]["quarantined"] == {"title empty": 1}
    assert records["2026-01-08"]["quarantined_rows"][0]["line"] == 11
    assert records["2026-01-08"]["dvc_remote"] == f"s3://{TEST_BUCKET}/dvc"

    # A delivery in an S3 inbox: listed as pending, downloaded and ingested the same way.
    from pmatch.ingest import list_inbox, pending_deliveries

    s3_delivery = delivery(tmp_path / "s3-delivery", [listing("S1", "From the bucket")], 900)
    for path in s3_delivery.rglob("*"):
        if path.is_file():
            key = f"inbox/2026-01-15/{path.relative_to(s3_delivery).as_posix()}"
            client.upload_file(str(path), TEST_BUCKET, key)
    inbox_uri = f"s3://{TEST_BUCKET}/inbox"
    assert list_inbox(inbox_uri, settings) == [f"{inbox_uri}/2026-01-15"]
    assert pending_deliveries(inbox_uri, catalogue, settings) == [f"{inbox_uri}/2026-01-15"]
    with _s3_settings(project, local_s3, "ingest-test", inbox_uri):
        from_s3 = ingest(project_dir=project)
    assert (from_s3["delivery"], from_s3["accepted"]) == ("2026-01-15", 1)
    assert pending_deliveries(inbox_uri, catalogue, settings) == []

    # Any recorded version comes back from S3 with its .dvc file and dvc pull.
    (project / "data" / "catalog.dvc").write_text(records["2026-01-01"]["dvc_file"])
    shutil.rmtree(catalogue)
    shutil.rmtree(project / ".dvc" / "cache")
    dvc_remote.configure_remote(project, settings)
    dvc_remote.pull(project, ["data/catalog.dvc"])
    assert catalog_version(catalogue) == first["data_version"]
    assert (catalogue / "catalog.csv").read_text().count("\n") == 6

    # Another machine, with no catalogue of its own, ingests the next delivery on top of the
    # current version S3 names (the last ingest's, on the first machine), not from nothing.
    other = make_project(tmp_path / "machine-b", {})
    delivery(other / "inbox" / "2026-01-22", [listing("B1", "Ingested on machine b")], 950)
    with _s3_settings(other, local_s3, "ingest-test", "inbox"):
        on_b = ingest(project_dir=other)
    assert on_b["previous_data_version"] == from_s3["data_version"]
    assert on_b["accepted"] == 1
    # 5 + 9 + 1 listings before, and this one.
    assert (other / "data/catalog/catalog.csv").read_text().count("\n") == 5 + 9 + 1 + 1 + 1


def test_the_ingest_dag_ingests_the_oldest_pending_delivery_then_skips(
    tmp_path, local_s3, airflow_db
):
    from datetime import UTC, datetime

    from pmatch.main_job import run_dag

    project = make_project(tmp_path / "project", {})
    delivery(project / "inbox" / "2026-01-01", INITIAL, first_seed=100)
    with _s3_settings(project, local_s3, "ingest-dag-test", "inbox"):
        first = run_dag("pmatch_ingest", datetime(2026, 1, 1, 6, 0, tzinfo=UTC))
        second = run_dag("pmatch_ingest", datetime(2026, 1, 2, 6, 0, tzinfo=UTC))

    assert first["state"] == "success", first
    assert first["tasks"]["ingest"]["state"] == "success"
    assert (project / "data" / "catalog.dvc").is_file()
    # Nothing pending: skipped, not failed.
    assert second["state"] == "success", second
    assert second["tasks"]["ingest"]["state"] == "skipped"


def test_two_machines_ingesting_at_once_take_turns_and_keep_both_deliveries(tmp_path, local_s3):
    """`pmatch ingest` at the same moment on two machines that share S3 (each its own project
    and catalogue): the catalogue's lock in S3 makes them take turns, and the second merges on
    top of the version the first made (it syncs from S3 first), so no delivery is lost."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from pmatch.ingest import CATALOG_LOCK, catalog_pointer_key
    from pmatch.pipeline import dvc_file_version
    from pmatch.s3server import s3_client

    prefix = "two-machines"
    machines = {}
    for name, day, seed in (("a", "2026-03-01", 960), ("b", "2026-03-02", 970)):
        project = make_project(tmp_path / f"machine-{name}", {})
        rows = [
            listing(f"{name.upper()}{index}", f"Listed on machine {name}") for index in (1, 2, 3)
        ]
        delivery(project / "inbox" / day, rows, seed)
        machines[name] = project
    processes = {}
    for name, project in machines.items():
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PMATCH_PROJECT_DIR": str(project),
            "PMATCH_S3_ENDPOINT_URL": local_s3,
            "PMATCH_S3_BUCKET": TEST_BUCKET,
            "PMATCH_S3_PREFIX": prefix,
            "PMATCH_INBOX": "inbox",
        }
        processes[name] = subprocess.Popen(
            ["pmatch", "ingest", "--pending"],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outputs = {name: process.communicate(timeout=600)[0] for name, process in processes.items()}
    for name, process in processes.items():
        assert process.returncode == 0, outputs[name]
    # One of them found the other's version in S3 and merged on top of it.
    assert sum("pulling S3's version first" in output for output in outputs.values()) == 1, outputs

    client = s3_client(local_s3)
    pointer = client.get_object(
        Bucket=TEST_BUCKET, Key=f"{prefix}/{'/'.join(catalog_pointer_key('data/catalog'))}"
    )["Body"].read()
    current = dvc_file_version_of(pointer, tmp_path)
    versions = {
        name: dvc_file_version(project / "data/catalog.dvc") for name, project in machines.items()
    }
    assert current in versions.values()
    last = next(project for name, project in machines.items() if versions[name] == current)
    catalogue = (last / "data/catalog/catalog.csv").read_text()
    assert all(f"{product}{index}" in catalogue for product in "AB" for index in (1, 2, 3))
    assert (last / "data/catalog/deliveries.csv").read_text().count("2026-03-0") == 2
    # The lock is released.
    listed = client.list_objects_v2(Bucket=TEST_BUCKET, Prefix=f"{prefix}/{CATALOG_LOCK}")
    assert listed["KeyCount"] == 0


def dvc_file_version_of(body: bytes, folder) -> str:
    from pmatch.pipeline import dvc_file_version

    path = folder / "pointer.dvc"
    path.write_bytes(body)
    return dvc_file_version(path)


def test_an_ingest_waits_for_the_catalogue_lock_then_names_its_holder(
    tmp_path, local_s3, monkeypatch
):
    """While another machine's ingest holds the catalogue's lock in S3, an ingest waits; past
    its wait it fails naming the lock and how to free it, and the catalogue is untouched."""
    from pmatch import ingest as ingest_module
    from pmatch.pipeline import ingest
    from pmatch.registry import RegistryError
    from pmatch.storage import open_registry

    project = make_project(tmp_path / "machine", {})
    delivery(project / "inbox" / "2026-04-01", INITIAL, 990)
    monkeypatch.setattr(ingest_module, "CATALOG_LOCK_WAIT_SECONDS", 2.0)
    with _s3_settings(project, local_s3, "locked-catalogue", "inbox"):
        from pmatch.config import load_settings

        registry = open_registry(load_settings())
        with registry.lock(
            ingest_module.CATALOG_LOCK, expiry_seconds=600, wait_seconds=1, holder="ingest"
        ):
            with pytest.raises(RegistryError, match=r"another ingest holds .*catalog\.lock"):
                ingest(project_dir=project)
        assert not (project / "data" / "catalog" / "catalog.csv").exists()
        # Once it is released, the same ingest goes through.
        assert ingest(project_dir=project)["accepted"] == len(INITIAL)
