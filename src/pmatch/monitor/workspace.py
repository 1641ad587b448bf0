"""The Evidently UI workspace that every monitoring run's report is added to (`make monitor-ui`)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd

# `make monitor-ui` serves this folder (relative to the project) with `evidently ui`.
WORKSPACE_DIR = ".pmatch/evidently"
PROJECT_NAME = "pmatch monitoring"
PROJECT_DESCRIPTION = (
    "One run per monitoring run of pmatch: the production model's signals on a delivery "
    "against the reference of its training data. Each run's name is DELIVERY (RUN ID); its "
    "tags say the verdict and the model version."
)
# Ids come from names, so a retry of a run replaces its report instead of adding a second,
# and two processes opening the workspace at once find one project.
_NAMESPACE = uuid.UUID("8f0b6c1e-3d47-5a2e-9c1b-7d5e0f2a4b61")
# The dashboard tab of one line panel per metric of the reports (each signal over time).
DASHBOARD_TAB = "Signals"
# A report metric's parameters that tell its panels apart.
PANEL_LABELS = ("column", "embeddings_name")
# The verdict's keys kept in a run's metadata (Evidently keeps strings there).
METADATA_KEYS = (
    "delivery",
    "delivery_uri",
    "run_id",
    "run_date",
    "model_version",
    "reference_data_version",
    "listings",
    "labelled",
    "drift",
    "reason",
    "retrain",
    "retrain_reason",
    "next_step",
    "s3_uri",
)


def project_id() -> uuid.UUID:
    """The id of the project PROJECT_NAME in every pmatch workspace."""
    return uuid.uuid5(_NAMESPACE, PROJECT_NAME)


def run_snapshot_id(verdict: dict) -> uuid.UUID:
    """The id of a monitoring run's report: from its delivery and run id."""
    return uuid.uuid5(_NAMESPACE, f"{verdict.get('delivery')}/{verdict.get('run_id')}")


def open_project(workspace_dir: str | Path = WORKSPACE_DIR):
    """The workspace at workspace_dir (created when absent) and its project PROJECT_NAME
    (created when absent): (Workspace, Project)."""
    from evidently.sdk.models import ProjectModel
    from evidently.ui.workspace import Workspace

    Path(workspace_dir).mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(workspace_dir))
    project = workspace.get_project(project_id())
    if project is None:
        project = workspace.add_project(
            ProjectModel(id=project_id(), name=PROJECT_NAME, description=PROJECT_DESCRIPTION)
        )
    return workspace, project


def add_report(
    snapshot_or_path, verdict: dict, workspace_dir: str | Path = WORKSPACE_DIR
) -> uuid.UUID:
    """Adds a monitoring run's Evidently report to the workspace's project, replacing the
    report of the same run (delivery and run id) added before. Returns the run's id there.

    snapshot_or_path: the run's evidently Snapshot (what Report.run returned), or the path
        of a file holding snapshot.dumps(). The drift.json that snapshot.save_json writes
        holds only the results and cannot be read back into a report: ValueError says so.
    verdict: the run's verdict record; the run is named "DELIVERY (RUN ID)", dated by its
        run date, tagged with its verdict and model version, and keeps METADATA_KEYS.
    """
    from evidently.core.report import Snapshot

    snapshot = snapshot_or_path
    if not isinstance(snapshot, Snapshot):
        snapshot = _load_snapshot(Path(snapshot_or_path))
    model = snapshot.to_snapshot_model()
    model.name = f"{verdict.get('delivery')} ({verdict.get('run_id')})"
    run_date = pd.Timestamp(verdict["run_date"]) if verdict.get("run_date") else None
    if run_date is not None:
        # Evidently's UI compares naive timestamps; the run date is kept in UTC.
        if run_date.tzinfo is not None:
            run_date = run_date.tz_convert("UTC").tz_localize(None)
        model.timestamp = run_date.to_pydatetime()
    model.metadata = {
        **model.metadata,
        **{key: _metadata_text(verdict[key]) for key in METADATA_KEYS if key in verdict},
    }
    if "drift" not in verdict:
        outcome = "no verdict"
    else:
        outcome = "drift" if verdict["drift"] else "no drift"
    tags = [outcome, f"model {verdict.get('model_version')}"]
    tags += [f"fired {name}" for name in verdict.get("fired") or []]
    if verdict.get("retrain"):
        tags.append("retrain")
    model.tags = sorted(set(model.tags) | set(tags))
    workspace, project = open_project(workspace_dir)
    snapshot_id = run_snapshot_id(verdict)
    # Workspace.add_run names each run with a fresh random id; writing the run under an id
    # from its name (as add_run does, through the same local state) makes a retry replace it.
    workspace.state.write_snapshot(project.id, snapshot_id, model)
    add_panels(project, model)
    return snapshot_id


def add_panels(project, model) -> list[str]:
    """Adds to the project's dashboard (tab DASHBOARD_TAB) a line panel for each metric of
    the report model (a SnapshotModel) that it lacks, so the UI plots every signal over the
    runs. Returns the titles of the panels added."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    existing = {panel.title for panel in project.dashboard.model().panels}
    added = []
    for result in model.metric_results.values():
        location = getattr(result, "metric_value_location", None)
        params = dict(getattr(getattr(location, "metric", None), "params", None) or {})
        metric_type = params.pop("type", None)
        labels = {key: str(params[key]) for key in PANEL_LABELS if key in params}
        title = getattr(result, "display_name", None) or metric_type
        if metric_type is None or not labels or title in existing:
            continue
        panel = line_plot_panel(
            title=title,
            values=[PanelMetric(legend=title, metric=metric_type, metric_labels=labels)],
            size="half",
        )
        project.dashboard.add_panel(panel, tab=DASHBOARD_TAB)
        existing.add(title)
        added.append(title)
    return added


def workspace_runs(workspace_dir: str | Path = WORKSPACE_DIR) -> list[dict]:
    """The runs of the project PROJECT_NAME, oldest first: {id, name, timestamp, tags,
    metadata, metrics}; [] when the workspace has none."""
    if not Path(workspace_dir).is_dir():
        return []
    workspace, project = open_project(workspace_dir)
    runs = []
    for snapshot_id in workspace.list_runs(project.id):
        model = workspace.get_run(project.id, snapshot_id)
        runs.append(
            {
                "id": str(snapshot_id),
                "name": model.name,
                "timestamp": model.timestamp,
                "tags": list(model.tags),
                "metadata": dict(model.metadata),
                "metrics": len(model.metric_results),
            }
        )
    return sorted(runs, key=lambda run: (run["timestamp"], run["name"] or ""))


def _load_snapshot(path: Path):
    """A Snapshot from a file of snapshot.dumps(); ValueError names the file and the fix."""
    from evidently.core.report import Snapshot

    if not path.is_file():
        raise ValueError(f"add_report: {path} does not exist; pass the run's Snapshot or a file")
    try:
        return Snapshot.load(str(path))
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"add_report: {path} is not a saved Evidently snapshot ({type(error).__name__}); "
            "write it with Path(...).write_text(snapshot.dumps()) (save_json keeps only the "
            "results), or pass the Snapshot itself"
        ) from error


def _metadata_text(value) -> str:
    """A verdict value as Evidently metadata (text): JSON for anything but a string."""
    return value if isinstance(value, str) else json.dumps(value)
