"""Data versions: the catalogue's version is DVC's own hash, and the DVC remote on local S3."""

from __future__ import annotations

import shutil
import sys

import pytest
import yaml

from tests.conftest import TEST_BUCKET, run


def _dvc_project(folder):
    folder.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], folder)
    run([sys.executable, "-m", "dvc", "init", "-q"], folder)
    run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], folder)
    return folder


def _tiny_catalogue(folder):
    (folder / "images" / "sub").mkdir(parents=True)
    (folder / "images" / "a.jpg").write_bytes(b"photo a")
    (folder / "images" / "sub" / "b.png").write_bytes(b"photo b\r\n")
    (folder / "catalog.csv").write_text(
        "product_id,title,image_path\np1,Red mug,images/a.jpg\np2,Blue cup,images/sub/b.png\n"
    )
    return folder


def _recorded_md5(dvc_file):
    return yaml.safe_load(dvc_file.read_text())["outs"][0]["md5"].removesuffix(".dir")


def test_the_data_version_is_what_dvc_add_records(tmp_path):
    from pmatch.catalog.version import catalog_version

    project = _dvc_project(tmp_path / "project")
    catalogue = _tiny_catalogue(project / "data" / "catalog")
    run([sys.executable, "-m", "dvc", "add", "data/catalog"], project)
    assert catalog_version(catalogue) == _recorded_md5(project / "data" / "catalog.dvc")

    # An untracked copy elsewhere has the same version.
    copy = shutil.copytree(catalogue, tmp_path / "elsewhere")
    assert catalog_version(copy) == catalog_version(catalogue)
    (copy / "images" / "a.jpg").write_bytes(b"photo A")
    assert catalog_version(copy) != catalog_version(catalogue)


def test_the_remote_is_configured_on_the_settings_s3_and_a_pulled_version_is_restored(
    tmp_path, local_s3
):
    from pmatch import dvc_remote
    from pmatch.catalog.version import catalog_version
    from pmatch.config import load_settings

    project = _dvc_project(tmp_path / "project")
    catalogue = _tiny_catalogue(project / "data" / "catalog")
    settings = load_settings({"PMATCH_S3_ENDPOINT_URL": local_s3, "PMATCH_S3_BUCKET": TEST_BUCKET})
    url = dvc_remote.configure_remote(project, settings)
    assert url == f"s3://{TEST_BUCKET}/dvc"
    listed = run([sys.executable, "-m", "dvc", "remote", "list"], project).stdout
    assert "pmatch" in listed and url in listed
    config = (project / ".dvc" / "config.local").read_text()
    assert local_s3 in config and "remote = pmatch" in config

    run([sys.executable, "-m", "dvc", "add", "data/catalog"], project)
    version = catalog_version(catalogue)
    dvc_remote.push(project, ["data/catalog.dvc"])

    # Gone locally, cache included: pull brings the recorded version back from S3.
    shutil.rmtree(catalogue)
    shutil.rmtree(project / ".dvc" / "cache")
    dvc_remote.pull(project, ["data/catalog.dvc"])
    assert catalog_version(catalogue) == version
    assert (catalogue / "images" / "sub" / "b.png").read_bytes() == b"photo b\r\n"


def test_a_failed_push_names_the_remote(tmp_path):
    from pmatch import dvc_remote
    from pmatch.config import load_settings
    from tests.conftest import free_port

    project = _dvc_project(tmp_path / "project")
    _tiny_catalogue(project / "data" / "catalog")
    run([sys.executable, "-m", "dvc", "add", "data/catalog"], project)
    nobody = f"http://127.0.0.1:{free_port()}"
    dvc_remote.configure_remote(project, load_settings({"PMATCH_S3_ENDPOINT_URL": nobody}))
    with pytest.raises(dvc_remote.DvcRemoteError, match="remote 'pmatch' failed"):
        dvc_remote.push(project, ["data/catalog.dvc"])
