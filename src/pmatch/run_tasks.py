"""What the DAGs' tasks do, each in its run's own workspace (pmatch.run_workspace).

A run's first task snapshots the project (code, params, pipeline, and the catalogue's data
version as S3 names it); every task then opens the run's workspace on whatever machine runs
it, does its step there and hands its outputs over through S3 (the DVC remote for the
stages' outputs, runs/<run>/ for the gate's decision). Nothing is read from or written to
the project folder but the machine's shared DVC cache and the Evidently UI workspace, so
tasks may land on different workers and two runs never see each other's files.

S3 must be configured (the Airflow connection or PMATCH_S3_ENDPOINT_URL): a task never
starts an embedded server of its own; `make airflow` and `pmatch run` start one per
deployment.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path

import yaml

from pmatch.config import Settings, load_params, load_settings
from pmatch.ingest import catalog_pointer_key
from pmatch.run_workspace import (
    RunWorkspaceError,
    get_file,
    hand_over,
    open_workspace,
    prune,
    put_file,
    run_folder_name,
    run_stage,
    snapshot,
)
from pmatch.workspace import Workspace

# How many run workspaces a machine keeps (the most recently used); older ones are deleted
# when a run starts there. Their objects in S3 stay.
KEEP_WORKSPACES = 20
# The gate's decision, handed from gate to deploy under runs/<run>/.
GATE_FILE = "gate.json"


def runs_dir(settings: Settings) -> Path:
    """This machine's folder of run workspaces (settings.runs_dir, relative to the project)."""
    folder = settings.runs_dir
    return folder if folder.is_absolute() else Path(settings.project_dir).resolve() / folder


def cache_dir(settings: Settings) -> Path:
    """The DVC cache this machine's workspaces share: the project's own (.dvc/cache), so a
    DAG run and `dvc repro` at the terminal reuse each other's stages, else (no DVC project,
    or one this user cannot write, as in an image) one beside the workspaces."""
    import os

    project = Path(settings.project_dir).resolve()
    cache = project / ".dvc" / "cache"
    writable = cache if cache.is_dir() else cache.parent
    if writable.is_dir() and os.access(writable, os.W_OK):
        return cache
    return runs_dir(settings) / ".dvc-cache"


def run_dir(run_id: str, settings: Settings | None = None) -> Path:
    """Where run_id's workspace is (or would be) on this machine."""
    return runs_dir(settings or load_settings()) / run_folder_name(run_id)


@contextlib.contextmanager
def _connected():
    """The environment's settings and registry; S3 must be configured."""
    from pmatch.storage import open_registry

    settings = load_settings()
    if not settings.s3_endpoint_url:
        raise RunWorkspaceError(
            "no S3 endpoint for this task: define the Airflow connection pmatch_s3 (or set "
            "PMATCH_S3_ENDPOINT_URL); `make airflow` starts the embedded S3 server and sets it. "
            "A task never starts an S3 server of its own"
        )
    yield settings, open_registry(settings)


def _open(run_id: str, settings: Settings, registry) -> Path:
    return open_workspace(run_id, registry, settings, runs_dir(settings), cache_dir(settings))


def start(run_id: str) -> dict:
    """A run's first task: snapshots the project (pmatch.run_workspace.snapshot), with the
    catalogue's .dvc file as S3 holds it (ingest writes it there, so the run trains on the
    last delivery whichever machine ingested it); prunes this machine's old workspaces.
    Returns snapshot.json."""
    project = Path(load_settings().project_dir).resolve()
    # A missing or wrong params.yaml fails here, before S3 is asked anything.
    catalog = str(load_params(project / "params.yaml").data.catalog)
    with _connected() as (settings, registry):
        replace = {}
        if not Path(catalog).is_absolute():
            pointer = registry.read_file(*catalog_pointer_key(catalog))
            if pointer is not None:
                replace[f"{Path(catalog).as_posix()}.dvc"] = pointer
        manifest = snapshot(project, run_id, registry, replace)
        deleted = prune(runs_dir(settings), KEEP_WORKSPACES, spare=run_id)
    print(
        f"run {run_id}: snapshot {manifest['uri']} (commit {manifest['git_commit'] or '-'}, "
        f"{manifest['files']} files, changed since the commit: "
        f"{', '.join(manifest['changed_since_commit']) or 'none'}, from S3: "
        f"{', '.join(manifest.get('replaced', [])) or 'none'}); "
        f"{len(deleted)} old workspace(s) deleted",
        flush=True,
    )
    return manifest


def check(run_id: str, force: bool = False, reason: str | None = None) -> dict:
    """pmatch.pipeline.retrain_check in the run's workspace. A catalogue that a stage builds
    (the sample) is built or pulled first, and handed over."""
    from pmatch.pipeline import repro, retrain_check

    with _connected() as (settings, registry):
        root = _open(run_id, settings, registry)
        params = load_params(root / "params.yaml")
        catalog = Workspace(root).resolve(params.data.catalog)
        producer = producing_stage(root, params.data.catalog)
        if producer is not None and not (catalog / "catalog.csv").is_file():
            repro(producer, project_dir=root, pull=True)
            hand_over(root, run_id, registry, [producer])
        return retrain_check(root, force=force, reason=reason)


def producing_stage(root: Path, catalog: str) -> str | None:
    """The dvc.yaml stage whose output is the catalogue folder, if one is."""
    pipeline = yaml.safe_load((Path(root) / "dvc.yaml").read_text()) or {}
    for name, stage in (pipeline.get("stages") or {}).items():
        for out in stage.get("outs") or []:
            path = next(iter(out)) if isinstance(out, dict) else out
            if Path(str(path)) == Path(catalog):
                return name
    return None


def stage(name: str, run_id: str, force: bool = False) -> str:
    """One DVC stage of the run (pmatch.run_workspace.run_stage): pulls what it needs, runs
    `dvc repro --pull`, pushes its outputs and the lock."""
    with _connected() as (settings, registry):
        run_stage(
            name,
            run_id,
            registry,
            settings,
            runs_dir(settings),
            force=force,
            cache_dir=cache_dir(settings),
        )
    return name


def _pull_candidate(root: Path) -> None:
    """The candidate and everything upstream of it (catalogue, features, evaluation)."""
    from pmatch.dvc_remote import pull

    pull(root, ["--with-deps", "evaluate"])


def gate(run_id: str, run_date: datetime) -> dict:
    """pmatch.pipeline.gate in the run's workspace; its decision is handed over to deploy
    (runs/<run>/gate.json)."""
    from pmatch.pipeline import gate as decide

    with _connected() as (settings, registry):
        root = _open(run_id, settings, registry)
        _pull_candidate(root)
        decision = decide(root, run_id=run_id, run_date=run_date)
        decision["s3_uri"] = put_file(Workspace(root).gate_file, run_id, registry, GATE_FILE)
    return decision


def deploy(run_id: str, run_date: datetime, reason: str | None = None) -> dict:
    """pmatch.pipeline.deploy in the run's workspace, with the decision the run's gate
    handed over (none: RunWorkspaceError, nothing shipped)."""
    from pmatch.pipeline import deploy as publish

    with _connected() as (settings, registry):
        root = _open(run_id, settings, registry)
        _pull_candidate(root)
        get_file(run_id, registry, GATE_FILE, Workspace(root).gate_file)
        return publish(run_id, run_date, root, reason=reason)


def monitor(delivery: str, run_id: str, run_date: str) -> dict:
    """pmatch.pipeline.monitor in the run's own workspace (snapshotted here: the params of
    the run's start). A relative delivery folder is the project's; an s3:// one is
    downloaded into the workspace. The Evidently UI workspace stays the machine's."""
    from pmatch.pipeline import monitor as watch

    start(run_id)
    with _connected() as (settings, registry):
        root = _open(run_id, settings, registry)
    project = Workspace(Path(settings.project_dir).resolve())
    if not str(delivery).startswith("s3://"):
        delivery = str(project.resolve(delivery))
    return watch(delivery, run_id, root, run_date, evidently_dir=project.evidently_dir)
