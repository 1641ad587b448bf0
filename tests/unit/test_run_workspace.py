"""pmatch.run_workspace without S3: which project files a run takes, reproducible archives,
folder names that never collide."""

from __future__ import annotations

import io
import shutil
import tarfile

from pmatch.run_workspace import _pack, project_files, run_folder_name
from tests.conftest import run


def _project(folder):
    (folder / "src/pmatch/__pycache__").mkdir(parents=True)
    (folder / ".dvc").mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".dvc/config", "README.md"):
        (folder / name).write_text(f"{name}\n")
    (folder / "src/pmatch/__init__.py").write_text("")
    (folder / "src/pmatch/__pycache__/__init__.cpython-311.pyc").write_bytes(b"\0")
    (folder / "data").mkdir()
    (folder / "data/catalog.dvc").write_text("outs: []\n")
    (folder / "data/catalog.csv").write_text("product_id\n")
    return folder


EXPECTED = [
    ".dvc/config",
    ".dvcignore",
    "data/catalog.dvc",
    "dvc.yaml",
    "params.yaml",
    "src/pmatch/__init__.py",
]


def test_without_git_the_run_takes_the_pipeline_params_package_and_dvc_files(tmp_path):
    assert project_files(_project(tmp_path)) == EXPECTED


def test_in_git_only_tracked_package_files_count_and_the_pipeline_files_always(tmp_path):
    project = _project(tmp_path)
    run(["git", "init", "-q"], project)
    run(["git", "add", "dvc.yaml", "params.yaml", ".dvc/config", "src/pmatch/__init__.py"], project)
    (project / "dvc.lock").write_text("schema: '2.0'\n")
    (project / "src/pmatch/scratch.py").write_text("")  # Untracked: stays out.
    # Untracked but not ignored .dvc files count: ingest writes data/catalog.dvc, which
    # names the catalogue's data version, and nobody commits it.
    assert project_files(project) == [
        ".dvc/config",
        ".dvcignore",
        "data/catalog.dvc",
        "dvc.lock",
        "dvc.yaml",
        "params.yaml",
        "src/pmatch/__init__.py",
    ]


def test_the_same_files_pack_to_the_same_bytes(tmp_path):
    first = _project(tmp_path / "first")
    second = tmp_path / "second"
    shutil.copytree(first, second)
    (second / "params.yaml").touch()  # Another modification time, the same content.
    files = project_files(first)
    assert _pack(first, files, {}) == _pack(second, files, {})
    with tarfile.open(fileobj=io.BytesIO(_pack(first, files, {})), mode="r:gz") as archive:
        assert archive.getnames() == files


def test_a_replaced_file_is_packed_with_the_given_content(tmp_path):
    project = _project(tmp_path)
    files = project_files(project)
    packed = _pack(project, files, {"data/catalog.dvc": b"from s3", "extra.dvc": b"new"})
    with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as archive:
        assert archive.getnames() == sorted({*files, "extra.dvc"})
        assert archive.extractfile("data/catalog.dvc").read() == b"from s3"


def test_run_ids_that_differ_only_in_unsafe_characters_get_their_own_folders():
    assert run_folder_name("manual__2026-12-07T02:10:00+00:00") != run_folder_name(
        "manual__2026-12-07T02_10_00_00_00"
    )
    assert run_folder_name("scheduled__x").startswith("scheduled__x-")
    assert "/" not in run_folder_name("a/../../b") and ".." not in run_folder_name("..")


def test_prune_keeps_the_most_recently_used_workspaces_and_the_current_run(tmp_path):
    import os

    from pmatch.run_workspace import READY_MARKER, prune

    folders = []
    for index in range(4):
        folder = tmp_path / run_folder_name(f"run-{index}")
        folder.mkdir()
        (folder / READY_MARKER).write_text("{}")
        os.utime(folder / READY_MARKER, (1_000 + index, 1_000 + index))
        folders.append(folder)
    half_made = tmp_path / f".{folders[0].name}-abc"
    half_made.mkdir()
    os.utime(half_made, (1_000, 1_000))
    deleted = prune(tmp_path, keep=2, spare="run-0")
    assert sorted(deleted) == sorted([folders[1], half_made])
    assert [folder.exists() for folder in folders] == [True, False, True, True]


def test_the_stage_that_builds_the_catalogue_is_found_in_dvc_yaml():
    from pmatch.run_tasks import producing_stage
    from tests.conftest import ROOT

    assert producing_stage(ROOT, "data/sample") == "sample"
    assert producing_stage(ROOT, "data/catalog") is None
