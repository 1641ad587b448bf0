"""The main job (`make run`): the sample's deliveries through ingest, retraining and monitoring.

It runs the real DAGs in-process with `dag.test()` on a SQLite Airflow metadata DB under
.airflow/, against the configured S3 or, by default, the embedded local S3 server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pmatch.config import load_params, load_settings
from pmatch.monitor.decide import safe_name
from pmatch.pipeline import repro, workspace
from pmatch.storage import open_registry, s3_settings
from pmatch.workspace import Workspace


def configure_airflow(root: Path) -> None:
    """Points Airflow at this project's DAGs and a SQLite DB under .airflow/, unless the
    environment already says otherwise. Must run before Airflow is imported."""
    os.environ.setdefault("AIRFLOW_HOME", str(root / ".airflow"))
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(root / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(root / "plugins"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    os.environ["PMATCH_PROJECT_DIR"] = str(root)


def migrate_airflow_db() -> None:
    """Creates or upgrades the Airflow metadata DB (idempotent)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, stdout=subprocess.DEVNULL
    )


def load_dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {json.dumps(bag.import_errors, indent=2)}")
    if dag_id not in bag.dags:
        raise RuntimeError(f"no DAG {dag_id!r} in {os.environ['AIRFLOW__CORE__DAGS_FOLDER']}")
    return bag.dags[dag_id]


def run_dag(dag_id: str, logical_date: datetime, conf: dict | None = None) -> dict:
    """Runs one DAG run in-process and returns its id, state and per-task durations."""
    dag = load_dag(dag_id)
    dag_run = dag.test(logical_date=logical_date, run_conf=conf)
    write_note(dag_id, dag_run.run_id, conf)
    return describe_run(dag_id, dag_run.run_id)


def write_note(dag_id: str, run_id: str, conf: dict | None) -> None:
    """The run's note, as plugins/pmatch_run_notes.py writes it for runs a scheduler starts
    (dag.test() runs start without one)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    from pmatch.run_notes import run_note

    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one()
        note = run_note(dag_id, conf, dag_run.note)
        if note is not None:
            dag_run.note = note


def describe_run(dag_id: str, run_id: str) -> dict:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one()
        instances = sorted(
            dag_run.get_task_instances(session=session),
            key=lambda instance: (instance.start_date is None, instance.start_date),
        )
        tasks = {
            instance.task_id: {
                "state": str(instance.state),
                "seconds": round(instance.duration or 0, 1),
            }
            for instance in instances
        }
    from pmatch.run_tasks import run_dir

    # Where the run's tasks worked on this machine (pmatch.run_tasks), when they did.
    folder = run_dir(run_id)
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": str(dag_run.state),
        "tasks": tasks,
        "workspace": str(folder) if folder.is_dir() else None,
    }


def queued_runs(dag_id: str) -> list[str]:
    """The ids of dag_id's runs waiting for a scheduler (a TriggerDagRunOperator's, say)."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter_by(dag_id=dag_id, state="queued").all()
        return [run.run_id for run in runs]


def run_main_job(project_dir: str | Path | None = None, log=print) -> dict:
    """Runs the loop once over the sample's deliveries and returns the summary it also prints.

    1. `dvc repro sample`: the catalogue and the dated deliveries in data/inbox;
    2. the first delivery (the catalogue itself) through pmatch_ingest, then, when it made a
       new data version or no model is in production, pmatch_retrain: validate, train,
       gate, deploy (under a scheduler, ingest's pmatch_catalog event starts that run);
    3. each later delivery through pmatch_ingest (quarantine, a new data version) and
       pmatch_monitor (drift signals; with reviewed labels, the labelled F1 decides); when its
       verdict starts a retrain, the pmatch_retrain run it triggered (run here, as a
       scheduler would);
    4. both models' F1 on the last shifted delivery, which neither was trained on.
    Every run is dated by its delivery (the run's logical date), never by the clock, so a
    second job repeats the same runs: every delivery is already ingested (no new data
    version, so no first retrain) and production knows every delivery (no drift), so it
    adds no model version.
    """
    from pmatch.sample.deliveries import DELIVERIES, INITIAL_DELIVERY

    space = workspace(project_dir)
    configure_airflow(space.root)
    params = load_params(space.params)
    timings: dict[str, float] = {}
    summary: dict = {"deliveries": [], "retrains": []}

    def timed(name: str, function, *args, **kwargs):
        log(f"==> {name}")
        started = time.monotonic()
        result = function(*args, **kwargs)
        timings[name] = round(time.monotonic() - started, 1)
        log(f"    {name} took {timings[name]} s")
        return result

    with s3_settings(load_settings()) as settings:
        # Tasks run in this process and in dvc subprocesses: they inherit the endpoint, so
        # they use the server started here instead of starting their own.
        os.environ["PMATCH_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
        registry = open_registry(settings)
        before = registry.production()
        summary["production_before"] = before["version"] if before else None
        summary["versions_before"] = len(registry.versions())
        log(
            f"production model before this run: {before['version']}"
            if before
            else "no production model yet: the first delivery's model is the first candidate"
        )
        if Path(params.data.catalog) != Path("data/catalog"):
            raise RuntimeError(
                f"params.yaml data.catalog is {params.data.catalog}: the main job tells the "
                "story of the sample's deliveries ingested into data/catalog; train on another "
                "catalogue with `dvc repro` or `dvc exp run -S data.catalog=...`"
            )
        timed("sample catalogue and deliveries", repro, "sample", space.root)
        timed("airflow db migrate", migrate_airflow_db)
        inbox = space.root / "data" / "inbox"
        kinds = {INITIAL_DELIVERY: "catalogue", **dict(DELIVERIES)}

        def retrain(moment: datetime, reason: str, label: str) -> dict:
            run = timed(label, run_dag, "pmatch_retrain", moment, {"reason": reason})
            _require_success(run)
            record = {"reason": reason, "run": run, **_retrain_outcome(space, run, registry)}
            summary["retrains"].append(record)
            return record

        for name, kind in kinds.items():
            day = datetime.fromisoformat(name).replace(tzinfo=UTC)
            folder = inbox / name
            version_before = _data_version(space)
            ingest_run = timed(
                f"pmatch_ingest ({name})",
                run_dag,
                "pmatch_ingest",
                day,
                {"delivery": str(folder)},
            )
            _require_success(ingest_run)
            ingested = json.loads(
                (space.root / "reports" / "ingest" / name / "ingest.json").read_text()
            )
            row = {
                "delivery": name,
                "kind": kind,
                "rows": ingested["rows"],
                "accepted": ingested["accepted"],
                "quarantined": ingested["quarantined"],
                "data_version": ingested["data_version"],
                "verdict": None,
            }
            if name == INITIAL_DELIVERY:
                if _data_version(space) != version_before or registry.production() is None:
                    retrain(
                        day + timedelta(hours=1),
                        f"initial catalogue (delivery {name})",
                        "pmatch_retrain (initial)",
                    )
                else:
                    row["step"] = "no new data version: no retrain"
            else:
                monitor_run = timed(
                    f"pmatch_monitor ({name})",
                    run_dag,
                    "pmatch_monitor",
                    day + timedelta(hours=1),
                    {"delivery": str(folder)},
                )
                _require_success(monitor_run)
                verdict_path = (
                    Workspace(Path(monitor_run["workspace"])).monitor_dir
                    / name
                    / safe_name(monitor_run["run_id"])
                    / "verdict.json"
                )
                verdict = json.loads(verdict_path.read_text())
                row["verdict"] = verdict
                if verdict.get("retrain"):
                    retrain(
                        day + timedelta(hours=2),
                        verdict["retrain_reason"],
                        f"pmatch_retrain (drift, {name})",
                    )
            production = registry.production()
            row["production"] = production["version"] if production else None
            summary["deliveries"].append(row)

        after = registry.production()
        summary["production_after"] = after["version"] if after else None
        summary["versions_after"] = len(registry.versions())
        summary["models_on_shifted_data"] = timed(
            "F1 on the last shifted delivery",
            _models_on_shifted_data,
            space,
            registry,
            summary,
            inbox,
            DELIVERIES,
        )
    summary["timings_seconds"] = timings
    summary_path = space.root / "reports" / "main_job_summary.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    log(format_summary(summary, space.root))
    log(f"(full summary: {summary_path})")
    return summary


def _data_version(space) -> str | None:
    """The catalogue's data version as its .dvc file names it (None before the first ingest)."""
    from pmatch.pipeline import dvc_file_version

    pointer = space.root / "data" / "catalog.dvc"
    return dvc_file_version(pointer) if pointer.is_file() else None


def _require_success(run: dict) -> None:
    if run["state"] != "success":
        failed = [name for name, task in run["tasks"].items() if "failed" in task["state"]]
        raise RuntimeError(
            f"{run['dag_id']} run {run['run_id']} ended {run['state']} (failed: "
            f"{', '.join(failed) or 'unknown'}); its task output above says why"
        )


def _retrain_outcome(space, run: dict, registry) -> dict:
    """What a finished pmatch_retrain run did: skipped (nothing changed), or the gate's
    decision and the version in production afterwards."""
    production = registry.production()
    outcome = {"production": production["version"] if production else None}
    if run["tasks"].get("gate", {}).get("state") != "success":
        outcome["skipped"] = True
        return outcome
    outcome["skipped"] = False
    # The run worked in a workspace of its own (pmatch.run_tasks).
    run_space = Workspace(Path(run["workspace"]))
    outcome["workspace"] = run["workspace"]
    outcome["metrics"] = json.loads((run_space.evaluate_dir / "metrics.json").read_text())
    outcome["gate"] = json.loads(run_space.gate_file.read_text())
    return outcome


def _models_on_shifted_data(space, registry, summary: dict, inbox: Path, deliveries) -> dict:
    """The labelled F1 of the first deployed model and of the model the drift-triggered
    retrain deployed, on the last delivery of the shift (new product kinds), which neither
    was trained on: each listing's photo with its own title, at each model's own threshold."""
    from sklearn.metrics import f1_score

    from pmatch.catalog.format import read_catalog
    from pmatch.features.store import open_default_store
    from pmatch.model.inference import Matcher
    from pmatch.monitor.reference import describe_listings

    shifted = [name for name, kind in deliveries if kind not in ("none", "bad_rows")]
    first = next((record["production"] for record in summary["retrains"]), None)
    current = next(
        (
            record["production"]
            for record in summary["retrains"]
            if record["reason"].startswith("drift") and not record["skipped"]
        ),
        None,
    )
    if not shifted or first is None or current is None or current == first:
        return {}
    folder = inbox / shifted[-1]
    frame = read_catalog(folder)
    result = {"delivery": shifted[-1]}
    for role, version in (("first_model", first), ("retrained_model", current)):
        matcher = Matcher.load(
            registry.download(version, space.model_cache), feature_store=open_default_store()
        )
        scored = describe_listings(matcher, folder, frame).frame
        labels = scored["label"].astype(int)
        predicted = (scored["score"] >= matcher.threshold).astype(int)
        result[role] = {"version": version, "f1": round(float(f1_score(labels, predicted)), 4)}
    return result


def format_summary(summary: dict, root: Path) -> str:
    lines = [
        "",
        "pmatch main job summary",
        "=======================",
        f"production before  {summary['production_before'] or 'none'} "
        f"({summary['versions_before']} version(s) in the registry)",
        "",
        f"{'delivery':<11} {'kind':<15} {'rows':>5} {'accepted':>8} {'quarant.':>8}  "
        f"{'drift':<9} {'labelled F1':>11}  {'next step':<40} {'data ver.':<9} production",
    ]
    for row in summary["deliveries"]:
        verdict = row["verdict"]
        if verdict is None:
            drift, f1, step = "-", "-", row.get("step", "train the first model")
        else:
            drift = {True: "DRIFT", False: "no drift"}.get(verdict.get("drift"), "no verdict")
            signal = verdict.get("signals", {}).get("labels_f1")
            f1 = f"{signal['f1']:.3f}" if signal else "-"
            step = verdict.get("next_step", "")
        quarantined = sum((row["quarantined"] or {}).values())
        lines.append(
            f"{row['delivery']:<11} {row['kind']:<15} {row['rows']:>5} {row['accepted']:>8} "
            f"{quarantined:>8}  {drift:<9} {f1:>11}  {step[:40]:<40} "
            f"{(row['data_version'] or '')[:8]:<9} {row['production'] or 'none'}"
        )
    lines += ["", "retraining runs"]
    for record in summary["retrains"]:
        if record["skipped"]:
            outcome = "skipped: the model for this data version is already in production"
        else:
            gate, metrics = record["gate"], record["metrics"]
            outcome = (
                f"test F1 {metrics['f1']:.4f}; gate {'DEPLOY' if gate['deploy'] else 'NO DEPLOY'}; "
                f"{_comparison(gate)}"
            )
        lines.append(f"  {record['run']['run_id']}  ({record['reason']})")
        lines.append(f"      {outcome}; production {record['production'] or 'none'}")
    shifted = summary.get("models_on_shifted_data") or {}
    if shifted:
        lines.append(
            f"on delivery {shifted['delivery']} (new product kinds): first model "
            f"{shifted['first_model']['version']} F1 {shifted['first_model']['f1']:.3f}, "
            f"the model the drift retrain deployed {shifted['retrained_model']['version']} F1 "
            f"{shifted['retrained_model']['f1']:.3f} (neither was trained on it)"
        )
    added = summary["versions_after"] - summary["versions_before"]
    lines.append(
        f"production now     {summary['production_after'] or 'none'} "
        f"({added} version(s) added by this run)"
    )
    lines.append("time per step")
    for name, seconds in summary["timings_seconds"].items():
        lines.append(f"  {name:<40} {seconds:>7.1f} s")
    last_verdict = next(
        (row["verdict"] for row in reversed(summary["deliveries"]) if row["verdict"]), None
    )
    trained = next(
        (record["workspace"] for record in reversed(summary["retrains"]) if "workspace" in record),
        None,
    )
    # Each DAG run works in a workspace of its own (pmatch.run_tasks): the last retrain
    # that trained, and the monitoring runs', hold their reports.
    run = Path(trained) if trained else root
    lines += [
        "where to look",
        f"  ingest reports      {root / 'reports/ingest'}/<delivery>/ingest.html (quarantined rows)",
        f"  last training run   {run}",
        f"  metrics and plots   {run / 'reports/evaluate'} (metrics.json, evaluation.png, errors.html)",
        f"  training curve      {run / 'models/candidate/training_curve.png'}",
        f"  gate decision       {run / 'reports/gate/decision.json'}",
    ]
    if last_verdict:
        lines.append(f"  drift reports       {Path(last_verdict['suspects_html']).parent}")
        lines.append("      (and the other deliveries' under .pmatch/runs/<run>/reports/monitor/)")
    if last_verdict:
        lines.append(f"  drift history       {last_verdict['history_html']}")
        lines.append(f"      in S3: {last_verdict['history_s3_uri']}")
    lines.append("  Evidently UI        make monitor-ui")
    return "\n".join(lines)


def _comparison(gate: dict) -> str:
    """Both models' F1 on the candidate's test pairs, as the gate measured them."""
    if gate.get("production_f1") is None or gate.get("difference") is None:
        return f"candidate F1 {gate.get('candidate_f1'):.4f}; no production model to compare with"
    low, high = gate["interval"]
    return (
        f"candidate F1 {gate['candidate_f1']:.4f}, production {gate['production_version']} F1 "
        f"{gate['production_f1']:.4f}, difference {gate['difference']:+.4f} "
        f"({gate.get('confidence', 0.95):.0%} interval {low:+.4f} to {high:+.4f}, "
        f"{gate['products']} products)"
    )
