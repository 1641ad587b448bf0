"""The pipeline's steps as Airflow tasks and CLI commands call them, one implementation each.

DVC stages (validate, preprocess, train, evaluate) run through `dvc repro`, so Airflow and
a person at the terminal share DVC's cache and lock file. What DVC does not do (the gate,
deployment, monitoring) is here. Each function takes and returns small things: paths,
ids, verdicts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from pmatch.config import load_params, load_settings
from pmatch.storage import open_registry, s3_settings
from pmatch.workspace import Workspace

DVC_STAGES = ("sample", "validate", "preprocess", "train", "evaluate")


class StageFailed(RuntimeError):
    """A dvc stage exited non-zero; its output (already streamed) says why."""


def workspace(project_dir: str | Path | None = None) -> Workspace:
    """The project folder: the argument, else PMATCH_PROJECT_DIR, else the current folder."""
    if project_dir is None:
        project_dir = load_settings().project_dir
    return Workspace(Path(project_dir).resolve())


def repro(stage: str, project_dir: str | Path | None = None) -> str:
    """Runs `dvc repro STAGE` in the project folder, streaming its output line by line.

    DVC skips the stage when its deps, params and code are unchanged. Returns the stage name.
    """
    if stage not in DVC_STAGES:
        raise ValueError(f"unknown dvc stage {stage!r}; stages are {', '.join(DVC_STAGES)}")
    root = workspace(project_dir).root
    command = [sys.executable, "-m", "dvc", "repro", stage]
    print(f"$ dvc repro {stage}  (in {root})", flush=True)
    # dvc.yaml's commands call `pmatch`: make sure this environment's scripts come first.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    process = subprocess.Popen(
        command,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"},
    )
    for line in process.stdout:
        print(line.rstrip(), flush=True)
    if process.wait() != 0:
        raise StageFailed(
            f"`dvc repro {stage}` failed (exit {process.returncode}); see the output above"
        )
    return stage


def gate(project_dir: str | Path | None = None) -> dict:
    """Decides whether the evaluated candidate may replace production; writes the decision."""
    from pmatch.artifacts import METRICS_FILE
    from pmatch.gate import run_gate

    space = workspace(project_dir)
    params = load_params(space.params)
    with s3_settings(project_settings(space)) as settings:
        decision = run_gate(
            space.evaluate_dir / METRICS_FILE, open_registry(settings), params.gate, space.gate_file
        )
    for reason in decision.reasons:
        print(f"gate: {reason}", flush=True)
    print(
        f"gate: {'DEPLOY' if decision.deploy else 'NO DEPLOY'} (decision in {space.gate_file})",
        flush=True,
    )
    return {
        "deploy": decision.deploy,
        "reasons": decision.reasons,
        "decision_file": str(space.gate_file),
    }


def deploy(run_id: str, run_date: datetime, project_dir: str | Path | None = None) -> dict:
    """Publishes the candidate as a new immutable version and promotes it to production."""
    from pmatch.registry import deploy as deploy_version

    space = workspace(project_dir)
    with s3_settings(project_settings(space)) as settings:
        deployment = deploy_version(
            open_registry(settings),
            space.model_dir,
            space.evaluate_dir,
            space.params,
            space.gate_file,
            run_date,
            run_id,
        )
    print(f"deployed {deployment.uri}; production -> {deployment.version}", flush=True)
    return {
        "version": deployment.version,
        "uri": deployment.uri,
        "previous_version": deployment.pointer.get("previous_version"),
    }


def monitor(
    batch_dir: str | Path,
    run_id: str,
    project_dir: str | Path | None = None,
    run_date: str | None = None,
) -> dict:
    """Scores a batch with the production model and writes the Evidently drift report,
    locally and to S3, then the drift history of every run in S3 (history.html, .csv, .png
    under monitoring/ and in the local monitor folder). run_date: the run's logical date.
    Returns the verdict (drift or not, score, report and history locations)."""
    from pmatch.artifacts import HISTORY_HTML
    from pmatch.features.store import open_default_store
    from pmatch.model.inference import Matcher
    from pmatch.monitor import (
        drift_history,
        monitor_batch,
        safe_name,
        write_drift_history,
    )

    space = workspace(project_dir)
    params = load_params(space.params)
    batch_dir = space.resolve(batch_dir)
    with s3_settings(project_settings(space)) as settings:
        registry = open_registry(settings)
        model_dir = registry.download_production(space.model_cache)
        matcher = Matcher.load(model_dir, feature_store=open_default_store())
        verdict = monitor_batch(
            matcher,
            model_dir / "reference_scores.csv",
            batch_dir,
            params.monitor,
            space.monitor_dir,
            run_id,
            model_version=model_dir.name,
            run_date=run_date,
        )
        prefix = ("monitoring", safe_name(batch_dir.name), safe_name(run_id))
        for name in ("drift.html", "drift.json", "scores.csv"):
            registry.upload_file(Path(verdict["report_html"]).parent / name, *prefix, name)
        verdict["s3_uri"] = registry.uri(*prefix)
        verdict["history_html"] = str(space.monitor_dir / HISTORY_HTML)
        verdict["history_s3_uri"] = registry.uri("monitoring", HISTORY_HTML)
        verdict_path = Path(verdict["report_html"]).with_name("verdict.json")
        verdict_path.write_text(json.dumps(verdict, indent=2))
        registry.upload_file(verdict_path, *prefix, "verdict.json")
        history = drift_history(registry.monitoring_verdicts())
        for name, path in write_drift_history(history, space.monitor_dir).items():
            registry.upload_file(path, "monitoring", name)
    print(
        f"monitor: batch {batch_dir.name}: drift={verdict['drift']} "
        f"({verdict['method']} score {verdict['drift_score']:.4f}, threshold {verdict['threshold']}); "
        f"report {verdict['report_html']}; history of {len(history)} run(s) "
        f"{verdict['history_html']}",
        flush=True,
    )
    return verdict


def project_settings(space: Workspace):
    """The environment's settings, with the project folder set to space's."""
    import dataclasses

    settings = load_settings()
    return dataclasses.replace(settings, project_dir=space.root)


def incoming_batch(batch: str | None, run_date: str, project_dir: str | Path | None = None) -> Path:
    """The batch folder a monitoring run scores: the given one, else INCOMING_DIR/<run_date>."""
    space = workspace(project_dir)
    if batch:
        path = space.resolve(batch)
    else:
        path = space.resolve(load_settings().incoming_dir) / run_date
    if not (path / "pairs.csv").is_file():
        raise FileNotFoundError(
            f"{path}: no pairs.csv; put the run's batch there or pass the batch param "
            "(a folder with pairs.csv and its photos)"
        )
    return path
