"""The main job (`make run`): sample catalogue, retraining DAG, monitoring DAG twice, summary.

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
from pmatch.monitor import safe_name
from pmatch.pipeline import ingest, repro, workspace
from pmatch.storage import open_registry, s3_settings

BATCHES = ("unshifted", "shifted")


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
    return describe_run(dag_id, dag_run.run_id)


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
        return {"dag_id": dag_id, "run_id": run_id, "state": str(dag_run.state), "tasks": tasks}


def queued_runs(dag_id: str) -> list[str]:
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        runs = session.query(DagRun).filter_by(dag_id=dag_id, state="queued").all()
        return [run.run_id for run in runs]


def run_main_job(project_dir: str | Path | None = None, log=print) -> dict:
    """Runs the whole loop once and returns the summary it also prints."""
    space = workspace(project_dir)
    configure_airflow(space.root)
    params = load_params(space.params)
    # The job's date is when it starts; every run in it uses that date, never the clock again.
    run_date = datetime.now(UTC).replace(microsecond=0)
    timings: dict[str, float] = {}
    summary: dict = {"run_date": run_date.isoformat()}

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
        if before:
            log(f"production model before this run: {before['version']} ({before['uri']})")
        else:
            log("no production model yet: this run's model is the first candidate")

        if Path(params.data.catalog) == Path("data/sample"):
            timed("sample catalogue", repro, "sample", space.root)
        elif Path(params.data.catalog) == Path("data/catalog"):
            # The sample's inbox holds dated deliveries; the first one (2026-01-01) is the
            # initial catalogue, which comes in through ingest like every later delivery.
            timed("sample catalogue and deliveries", repro, "sample", space.root)
            if not space.resolve(params.data.catalog).exists():
                summary["ingest"] = timed("ingest the first delivery", ingest, None, space.root)
        timed("airflow db migrate", migrate_airflow_db)
        retrain = timed("pmatch_retrain", run_dag, "pmatch_retrain", run_date)
        summary["retrain"] = retrain
        if retrain["state"] != "success":
            failed = [name for name, task in retrain["tasks"].items() if "failed" in task["state"]]
            raise RuntimeError(
                f"pmatch_retrain run {retrain['run_id']} ended {retrain['state']} (failed: "
                f"{', '.join(failed) or 'unknown'}); its task output above says why"
            )
        summary["metrics"] = json.loads((space.evaluate_dir / "metrics.json").read_text())
        summary["gate"] = json.loads(space.gate_file.read_text())
        after = registry.production()
        deployed = after and after["version"] != (before or {}).get("version")
        summary["deployed"] = after["uri"] if deployed else None
        summary["production_after"] = after["version"] if after else None

        summary["monitor"] = {}
        queued_before = set(queued_runs("pmatch_retrain"))
        for offset, batch in enumerate(BATCHES):
            batch_dir = space.sample_dir / "batches" / batch
            monitor_run = timed(
                f"pmatch_monitor ({batch})",
                run_dag,
                "pmatch_monitor",
                run_date + timedelta(seconds=offset),
                {"batch": str(batch_dir)},
            )
            verdict_path = (
                space.monitor_dir / batch / safe_name(monitor_run["run_id"]) / "verdict.json"
            )
            verdict = json.loads(verdict_path.read_text()) if verdict_path.exists() else {}
            summary["monitor"][batch] = {"run": monitor_run, "verdict": verdict}
        summary["retrain_runs_queued_by_drift"] = sorted(
            set(queued_runs("pmatch_retrain")) - queued_before
        )
    summary["timings_seconds"] = timings
    summary_path = space.root / "reports" / "main_job_summary.json"
    summary_path.parent.mkdir(parents=True, exist_ok=True)
    summary_path.write_text(json.dumps(summary, indent=2, default=str))
    log(format_summary(summary, space.root))
    log(f"(full summary: {summary_path})")
    return summary


def format_summary(summary: dict, root: Path) -> str:
    metrics, gate = summary["metrics"], summary["gate"]
    lines = [
        "",
        "pmatch main job summary",
        "=======================",
        f"retrain DAG run   {summary['retrain']['run_id']}: {summary['retrain']['state']}",
        f"test F1           {metrics['f1']:.4f}  (precision {metrics['precision']:.4f}, "
        f"recall {metrics['recall']:.4f}, ROC-AUC {metrics['roc_auc']:.4f}, threshold {metrics['threshold']:.3f})",
        f"production before {summary['production_before'] or 'none'}",
        f"gate              {'DEPLOY' if gate['deploy'] else 'NO DEPLOY'}: {'; '.join(gate['reasons'])}",
        f"same test pairs   {_comparison(gate)}",
        f"deployed          {summary['deployed'] or 'nothing (production unchanged)'}",
        f"production now    {summary['production_after'] or 'none'}",
    ]
    for batch, result in summary["monitor"].items():
        verdict = result["verdict"]
        if verdict:
            lines.append(
                f"drift ({batch:<9}) {'DRIFT' if verdict['drift'] else 'no drift'}: {verdict['method']} "
                f"{verdict['drift_score']:.3f} vs threshold {verdict['threshold']}, mean score "
                f"{verdict['current_mean_score']:.3f} (reference {verdict['reference_mean_score']:.3f})"
            )
        else:
            lines.append(f"drift ({batch:<9}) no verdict: monitor run {result['run']['state']}")
    queued = summary["retrain_runs_queued_by_drift"]
    if queued:
        lines.append(
            f"retraining queued  {len(queued)} pmatch_retrain run(s) triggered by drift "
            "(a scheduler runs them; `airflow standalone` or docker/)"
        )
    lines.append("time per step")
    for name, seconds in summary["timings_seconds"].items():
        lines.append(f"  {name:<28} {seconds:>7.1f} s")
    for name, task in summary["retrain"]["tasks"].items():
        lines.append(f"    task {name:<23} {task['seconds']:>7.1f} s  {task['state']}")
    lines += [
        "where to look",
        f"  metrics and plots   {root / 'reports/evaluate'} (metrics.json, evaluation.png, errors.html)",
        f"  training curve      {root / 'models/candidate/training_curve.png'}",
        f"  gate decision       {root / 'reports/gate/decision.json'}",
        f"  validation result   {root / 'reports/validate'}",
    ]
    for batch, result in summary["monitor"].items():
        if result["verdict"]:
            lines.append(f"  drift report ({batch}) {result['verdict']['report_html']}")
            lines.append(f"      in S3: {result['verdict'].get('s3_uri')}")
    # Every run rebuilds the one history; the last verdict names where it is.
    verdicts = [result["verdict"] for result in summary["monitor"].values() if result["verdict"]]
    if verdicts and "history_html" in verdicts[-1]:
        lines.append(f"  drift history       {verdicts[-1]['history_html']}")
        lines.append(f"      in S3: {verdicts[-1]['history_s3_uri']}")
    return "\n".join(lines)


def _comparison(gate: dict) -> str:
    """Both models' F1 on the candidate's test pairs, as the gate measured them."""
    if gate.get("production_f1") is None or gate.get("difference") is None:
        return f"candidate F1 {gate.get('candidate_f1')}; no production model to compare with"
    low, high = gate["interval"]
    return (
        f"candidate F1 {gate['candidate_f1']:.4f}, production {gate['production_version']} F1 "
        f"{gate['production_f1']:.4f}, difference {gate['difference']:+.4f} "
        f"({gate.get('confidence', 0.95):.0%} interval {low:+.4f} to {high:+.4f}, "
        f"{gate['products']} products)"
    )
