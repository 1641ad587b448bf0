"""Isolated runs: each DAG run works in a workspace of its own, made from a snapshot of the
project taken when the run starts, and its tasks hand data to one another through S3 only.

A run's objects live in the registry's bucket under `runs/<run id>/`:

- `project.tar.gz`: the project files a run needs (the pipeline, params, lock, DVC's config
  and the package), as they were when the run started, and `snapshot.json` describing it
  (git commit, files changed against it, sha256), written last;
- `params.yaml`: the run's params, readable without unpacking;
- `dvc.lock`: the pipeline's state as the run's last finished task left it.

The data itself (catalogue, features, models, reports) travels through the DVC remote
(pmatch.dvc_remote, `s3://<bucket>/dvc`). A task on any machine opens the run's workspace
(unpacking the snapshot once per machine, taking the latest dvc.lock), runs its stage with
`dvc repro --pull` (DVC pulls what the upstream stages made and reruns only what changed),
then hands over: pushes the outputs to the remote and uploads dvc.lock. Nothing is shared
through a folder, so tasks may land on different workers, and two runs never see each
other's files. docs/airflow.md ("Isolated runs") has the design and a diagram.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

RUNS_FOLDER = "runs"
SNAPSHOT_FILE = "project.tar.gz"
SNAPSHOT_MANIFEST = "snapshot.json"
LOCK_FILE = "dvc.lock"
PARAMS_FILE = "params.yaml"
# What a run needs of the project: the pipeline, its params and lock, DVC's shared config,
# the package its stages run, and the .dvc files that name data versions.
RUN_FILES = ("dvc.yaml", "dvc.lock", "params.yaml", ".dvcignore", ".dvc/config")
RUN_FOLDERS = ("src",)
# Written into a workspace once it is unpacked whole; a folder without it is half made.
READY_MARKER = ".pmatch-run.json"


class RunWorkspaceError(RuntimeError):
    """A run's snapshot or workspace is missing or damaged; the message names it and the fix."""


def run_folder_name(run_id: str) -> str:
    """A folder and key name for run_id: its safe characters plus a hash of the whole id, so
    two run ids that differ only in unsafe characters never share a workspace."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_.") or "run"
    return f"{readable[:80]}-{hashlib.sha256(run_id.encode()).hexdigest()[:10]}"


def project_files(root: str | Path) -> list[str]:
    """The project files a run needs (relative paths, sorted), read from the working tree (so
    the params and lock of the moment count): RUN_FILES where they exist, and the files under
    RUN_FOLDERS and the *.dvc files that git tracks (outside git, as in an image's release
    folder, those found on disk), so nothing untracked in src/ reaches a run."""
    root = Path(root)
    tracked = _git(root, "ls-files", "-z")
    if tracked is not None:
        candidates = [path for path in tracked.split("\0") if path]
        # .dvc files that git does not track but does not ignore either: data/catalog.dvc,
        # which ingest writes and nobody commits, names the catalogue's data version.
        untracked = _git(root, "ls-files", "-z", "--others", "--exclude-standard") or ""
        candidates += [path for path in untracked.split("\0") if path.endswith(".dvc")]
        # dvc.lock (the pipeline's state) and .dvcignore count even where git does not track them.
        candidates += [name for name in RUN_FILES if (root / name).is_file()]
    else:
        candidates = [name for name in RUN_FILES if (root / name).is_file()]
        for folder in RUN_FOLDERS:
            candidates += [
                path.relative_to(root).as_posix()
                for path in (root / folder).rglob("*")
                if path.is_file()
            ]
        candidates += [
            path.relative_to(root).as_posix()
            for path in root.rglob("*.dvc")
            if ".dvc" not in path.relative_to(root).parts[:-1]
        ]

    def wanted(path: str) -> bool:
        if "__pycache__" in path or path.endswith((".pyc", ".egg-info")):
            return False
        return path in RUN_FILES or path.split("/", 1)[0] in RUN_FOLDERS or path.endswith(".dvc")

    return sorted({path for path in candidates if wanted(path) and (root / path).is_file()})


def snapshot(
    project_root: str | Path, run_id: str, registry, replace: dict[str, bytes] | None = None
) -> dict:
    """Takes run_id's snapshot of the project, once: packs project_files() into
    runs/<run>/project.tar.gz, uploads params.yaml and dvc.lock beside it, then
    snapshot.json (the commit, the files changed against it, the archive's sha256), last,
    which makes the snapshot visible. A retried first task finds snapshot.json and keeps it,
    so every task of a run sees the code and params of its start. Returns snapshot.json.

    project_root: the project as deployed. registry: the run's S3 (pmatch.registry).
    replace: {relative path: content} packed instead of (or besides) the project's file: the
    catalogue's .dvc file as S3 names it (pmatch.run_tasks), which any machine can read.
    """
    folder = run_folder_name(run_id)
    existing = registry.read_file(RUNS_FOLDER, folder, SNAPSHOT_MANIFEST)
    if existing is not None:
        return json.loads(existing)
    root = Path(project_root).resolve()
    files = project_files(root)
    if "dvc.yaml" not in files or PARAMS_FILE not in files:
        raise RunWorkspaceError(
            f"{root}: no dvc.yaml or params.yaml among the project files; set "
            "PMATCH_PROJECT_DIR to the project folder (the one with dvc.yaml)"
        )
    replace = dict(replace or {})
    archive = _pack(root, files, replace)
    commit = _git(root, "rev-parse", "HEAD")
    changed = _git(root, "status", "--porcelain", "--", *files)
    manifest = {
        "run_id": run_id,
        "folder": folder,
        "git_commit": commit.strip() if commit else None,
        # Files that differ from the commit (params.yaml or dvc.lock edited since, say).
        "changed_since_commit": sorted(line[3:] for line in (changed or "").splitlines()),
        "files": len(set(files) | set(replace)),
        # Files taken from S3 rather than from this machine's project (the catalogue's .dvc).
        "replaced": sorted(replace),
        "sha256": hashlib.sha256(archive).hexdigest(),
        "uri": registry.uri(RUNS_FOLDER, folder, SNAPSHOT_FILE),
    }
    with tempfile.TemporaryDirectory(prefix="pmatch-snapshot-") as temporary:
        packed = Path(temporary) / SNAPSHOT_FILE
        packed.write_bytes(archive)
        registry.upload_file(packed, RUNS_FOLDER, folder, SNAPSHOT_FILE)
        registry.upload_file(root / PARAMS_FILE, RUNS_FOLDER, folder, PARAMS_FILE)
        if (root / LOCK_FILE).is_file():
            registry.upload_file(root / LOCK_FILE, RUNS_FOLDER, folder, LOCK_FILE)
        written = Path(temporary) / SNAPSHOT_MANIFEST
        written.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        registry.upload_file(written, RUNS_FOLDER, folder, SNAPSHOT_MANIFEST)
    return manifest


def open_workspace(
    run_id: str,
    registry,
    settings,
    base_dir: str | Path,
    cache_dir: str | Path | None = None,
) -> Path:
    """run_id's workspace on this machine, base_dir/<run folder>: unpacked from the run's
    snapshot the first time (checked against its sha256), its dvc.lock replaced by the one
    the run's last finished task handed over, its DVC remote pointed at settings' S3 and
    DVC told the folder is no git repository. Returns the folder.

    settings: pmatch settings with the endpoint resolved (DVC reads it from config.local).
    cache_dir: a DVC cache the machine's workspaces share (its run cache too, so a stage
    whose inputs another run already saw is restored, not run); None gives the workspace
    a cache of its own.
    """
    from pmatch.dvc_remote import configure_remote

    folder_name = run_folder_name(run_id)
    workspace = Path(base_dir).resolve() / folder_name
    if not (workspace / READY_MARKER).is_file():
        manifest = registry.read_file(RUNS_FOLDER, folder_name, SNAPSHOT_MANIFEST)
        archive = registry.read_file(RUNS_FOLDER, folder_name, SNAPSHOT_FILE)
        if manifest is None or archive is None:
            raise RunWorkspaceError(
                f"{registry.uri(RUNS_FOLDER, folder_name)}: run {run_id!r} has no snapshot; "
                "its first task (pmatch.run_workspace.snapshot) did not run or failed"
            )
        expected = json.loads(manifest)["sha256"]
        if hashlib.sha256(archive).hexdigest() != expected:
            raise RunWorkspaceError(
                f"{registry.uri(RUNS_FOLDER, folder_name, SNAPSHOT_FILE)}: its sha256 is not "
                f"{expected} as snapshot.json says; the snapshot was damaged, start a new run"
            )
        _unpack(archive, workspace, manifest)
    lock = registry.read_file(RUNS_FOLDER, folder_name, LOCK_FILE)
    if lock is not None:
        (workspace / LOCK_FILE).write_bytes(lock)
    configure_remote(workspace, settings)
    _no_scm(workspace, cache_dir)
    # Its time says when a task of the run last used it (prune keeps the recent ones).
    (workspace / READY_MARKER).touch()
    return workspace


def prune(base_dir: str | Path, keep: int, spare: str | None = None) -> list[Path]:
    """Deletes this machine's workspaces under base_dir but the keep most recently used
    (and spare's, a run id), oldest first; half-unpacked staging folders older than a day go
    too. The runs' objects in S3 stay. Returns the folders deleted."""
    import time

    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        return []
    kept = run_folder_name(spare) if spare else None
    ready = sorted(
        (path for path in base_dir.iterdir() if (path / READY_MARKER).is_file()),
        key=lambda path: (path / READY_MARKER).stat().st_mtime,
        reverse=True,
    )
    stale = [path for path in ready[keep:] if path.name != kept]
    day_ago = time.time() - 24 * 3600
    stale += [
        path for path in base_dir.glob(".*-*") if path.is_dir() and path.stat().st_mtime < day_ago
    ]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def hand_over(workspace: str | Path, run_id: str, registry, stages: list[str]) -> None:
    """After a task's stage: pushes the outputs of stages and of the stages upstream of them
    (which `dvc repro` may have run in the same task) to the DVC remote, then uploads
    dvc.lock, in that order, so the next task never reads a lock whose data is not in the
    remote yet."""
    from pmatch.dvc_remote import push

    if not stages:
        raise ValueError("hand_over needs the stages whose outputs to push")
    workspace = Path(workspace)
    push(workspace, ["--with-deps", *stages])
    registry.upload_file(workspace / LOCK_FILE, RUNS_FOLDER, run_folder_name(run_id), LOCK_FILE)


def run_stage(
    stage: str,
    run_id: str,
    registry,
    settings,
    base_dir: str | Path,
    force: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """One DVC stage task of an isolated run, on whatever machine runs it: opens the run's
    workspace under base_dir, runs `dvc repro --pull STAGE` there (upstream stages' outputs
    come from the DVC remote; force as in pipeline.repro), then hands the outputs and
    dvc.lock over. Returns the workspace."""
    from pmatch.pipeline import repro

    workspace = open_workspace(run_id, registry, settings, base_dir, cache_dir)
    repro(stage, project_dir=workspace, force=force, pull=True)
    hand_over(workspace, run_id, registry, [stage])
    return workspace


def put_file(path: str | Path, run_id: str, registry, name: str) -> str:
    """Hands over one small file that is no DVC output (the gate's decision, say) under
    runs/<run>/<name>; returns its URI."""
    return registry.upload_file(path, RUNS_FOLDER, run_folder_name(run_id), name)


def get_file(run_id: str, registry, name: str, destination: str | Path) -> Path:
    """Fetches a file put_file() handed over into destination; RunWorkspaceError naming
    the key when there is none."""
    body = registry.read_file(RUNS_FOLDER, run_folder_name(run_id), name)
    if body is None:
        raise RunWorkspaceError(
            f"{registry.uri(RUNS_FOLDER, run_folder_name(run_id), name)}: not handed over; "
            "the task that writes it did not finish"
        )
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.write_bytes(body)
    return destination


def remove_workspace(run_id: str, base_dir: str | Path) -> None:
    """Deletes run_id's workspace on this machine (the run's objects in S3 stay)."""
    shutil.rmtree(Path(base_dir) / run_folder_name(run_id), ignore_errors=True)


def _pack(root: Path, files: list[str], replace: dict[str, bytes]) -> bytes:
    """A gzip tar of files under root (replace's contents instead where it names them),
    the same bytes for the same contents (sorted, no times or owners), so equal snapshots
    have equal sha256."""
    buffer = io.BytesIO()
    # mtime=0: the gzip header holds no time either.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for relative in sorted(set(files) | set(replace)):
            data = replace[relative] if relative in replace else (root / relative).read_bytes()
            info = tarfile.TarInfo(relative)
            info.size = len(data)
            executable = relative not in replace and os.access(root / relative, os.X_OK)
            info.mode = 0o755 if executable else 0o644
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _unpack(archive: bytes, workspace: Path, manifest: bytes) -> None:
    """Unpacks archive into a sibling folder, then renames it into place: two tasks of the
    run on one machine never see a half-unpacked workspace."""
    workspace.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{workspace.name}-", dir=workspace.parent))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as packed:
            # "data" refuses absolute paths, links out of the folder and device files.
            packed.extractall(staging, filter="data")
        (staging / READY_MARKER).write_bytes(manifest)
        try:
            staging.rename(workspace)
        except OSError:
            # Another task of the run unpacked it first; its copy is the same snapshot.
            if not (workspace / READY_MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _no_scm(workspace: Path, cache_dir: str | Path | None) -> None:
    """Tells DVC the workspace is no git repository, and where the machine's shared cache
    is (config.local, not committed)."""
    from dvc.config import Config

    with Config(dvc_dir=str(workspace / ".dvc"), validate=False).edit("local") as config:
        config["core"]["no_scm"] = True
        if cache_dir is not None:
            config["cache"]["dir"] = str(Path(cache_dir).resolve())


def _git(root: Path, *arguments: str) -> str | None:
    """git's output in root, or None when root is no git work tree (or git is missing)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(root), *arguments], capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return result.stdout if result.returncode == 0 else None
