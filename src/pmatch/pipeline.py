"""The pipeline's steps as Airflow tasks and CLI commands call them, one implementation each.

DVC stages (validate, preprocess, train, evaluate) run through `dvc repro`, so Airflow and
a person at the terminal share DVC's cache and lock file. What DVC does not do (the gate,
deployment, monitoring) is here. Each function takes and returns small things: paths,
ids, verdicts.
"""

from __future__ import annotations

import contextlib
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


def repro(
    stage: str, project_dir: str | Path | None = None, force: bool = False, pull: bool = False
) -> str:
    """Runs `dvc repro STAGE` in the project folder, streaming its output line by line.

    DVC skips the stage when its deps, params and code are unchanged, unless force (`dvc
    repro --force --single-item`: this stage runs again, its upstream as DVC decides).
    pull (`dvc repro --pull`): a stage that is unchanged but misses its data pulls it from
    the DVC remote instead of running again, as a task in an isolated run's workspace needs
    (pmatch.run_workspace). Returns the stage name.
    """
    if stage not in DVC_STAGES:
        raise ValueError(f"unknown dvc stage {stage!r}; stages are {', '.join(DVC_STAGES)}")
    root = workspace(project_dir).root
    options = ["--force", "--single-item"] if force else []
    if pull:
        options.append("--pull")
    command = [sys.executable, "-m", "dvc", "repro", *options, stage]
    print(f"$ dvc repro {' '.join([*options, stage])}  (in {root})", flush=True)
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


def gate(
    project_dir: str | Path | None = None,
    run_id: str = "manual",
    run_date: datetime | None = None,
) -> dict:
    """Decides whether the evaluated candidate may replace production (pmatch.gate has the
    rule): scores production on the candidate's test pairs, writes reports/gate/decision.json
    and prints both F1s, their difference and its interval. run_date: the run's date
    (recorded as decided_at; default now, at the command line)."""
    from pmatch.gate import run_gate

    space = workspace(project_dir)
    params = load_params(space.params)
    decided_at = _run_date(run_date)
    # The old decision goes first: if anything below fails (S3 down while the registry is
    # opened, say), no decision is left for `pmatch deploy` to act on.
    space.gate_file.unlink(missing_ok=True)
    with s3_settings(project_settings(space)) as settings:
        decision = run_gate(
            model_dir=space.model_dir,
            evaluate_dir=space.evaluate_dir,
            params_path=space.params,
            catalog_dir=space.resolve(params.data.catalog),
            registry=open_registry(settings),
            params=params.gate,
            out_path=space.gate_file,
            cache_dir=space.model_cache,
            run_id=run_id,
            decided_at=decided_at,
        )
    for reason in decision.reasons:
        print(f"gate: {reason}", flush=True)
    print(
        f"gate: {'DEPLOY' if decision.deploy else 'NO DEPLOY'}: candidate F1 "
        f"{_number(decision.candidate_f1)}, production {decision.production_version or '(none)'} "
        f"F1 {_number(decision.production_f1)}, difference {_number(decision.difference)}, "
        f"interval {decision.interval or '-'} (decision in {space.gate_file})",
        flush=True,
    )
    return {
        "deploy": decision.deploy,
        "reasons": decision.reasons,
        "candidate_f1": decision.candidate_f1,
        "production_f1": decision.production_f1,
        "production_version": decision.production_version,
        "difference": decision.difference,
        "interval": decision.interval,
        "decision_file": str(space.gate_file),
    }


class SmokeTestFailed(RuntimeError):
    """The deployed version did not reproduce its canary scores; production was rolled back
    where there was a version to roll back to. The message says which."""


def deploy(
    run_id: str,
    run_date: datetime,
    project_dir: str | Path | None = None,
    reason: str | None = None,
) -> dict:
    """Ships the candidate the gate approved, then smoke-tests it and rolls back on failure.

    1. The decision must say deploy and be about this candidate: the model's, metrics' and
       params' sha256 and the catalogue's data version are recomputed and compared
       (pmatch.gate.check_decision), else GateRefused naming the field.
    2. The version id comes from the content: registry.version_id(model sha256, data
       version). If production already is that version: "already in production", nothing
       written. If production is no longer the version the gate compared with: refused.
    3. publish (idempotent, resumable: a retry completes a half-uploaded version), then
       promote with expected_current = the gate's production version (a concurrent deploy
       that moved the pointer first makes this one fail with PromotionConflict).
    4. A fresh process (python -m pmatch.smoke) loads the model through the pointer and
       scores the canary pairs stored with the version. On a failure production is rolled
       back to the previous version and SmokeTestFailed is raised. With no previous version
       (a first deploy) the pointer is left on the new version, since there is nothing to
       serve instead, and the error says so.
    run_date: the run's date (Airflow's logical date or run_after), recorded as created_at
    and as the promotion's time. reason: why the run happened (the retrain DAG's `reason`
    param), named in the manifest's and the promotion's reason.
    """
    from pmatch.catalog.version import catalog_version
    from pmatch.gate import GateDecision, bound_fields, check_decision
    from pmatch.registry import version_id

    space = workspace(project_dir)
    params = load_params(space.params)
    when = _run_date(run_date)
    run_label = f"run {run_id}" if not reason else f"run {run_id} ({reason})"
    decision = GateDecision.load(space.gate_file)
    if not decision.deploy:
        # Refuses, quoting the gate's reasons, before anything is hashed or contacted.
        check_decision(decision, {}, decision.production_version)
    current = bound_fields(
        space.model_dir,
        space.evaluate_dir / "metrics.json",
        space.params,
        catalog_version(space.resolve(params.data.catalog)),
    )
    version = version_id(current["candidate_model_sha256"], current["data_version"])
    with s3_settings(project_settings(space)) as settings:
        registry = open_registry(settings)
        pointer = registry.production()
        production_version = pointer["version"] if pointer else None
        if production_version == version:
            print(f"deploy: {version} is already in production; nothing to do", flush=True)
            return {
                "version": version,
                "uri": registry.uri("models", version),
                "created": False,
                "already_in_production": True,
            }
        check_decision(decision, current, production_version)
        with _version_files(space, params) as files:
            metrics = json.loads((space.evaluate_dir / "metrics.json").read_text())
            uri, created = registry.publish(
                version,
                files,
                {
                    "created_at": when,
                    "model_sha256": current["candidate_model_sha256"],
                    "data_version": current["data_version"],
                    "f1": metrics.get("f1"),
                    "threshold": metrics.get("threshold"),
                    "git_commit": _git_commit(space.root),
                    "params_sha256": current["params_sha256"],
                    "code_sha256": code_sha256(space.root),
                    "run_id": run_id,
                    "reason": f"{run_label}: the gate said DEPLOY ({decision.reasons[-1]})",
                },
            )
        registry.promote(
            version,
            reason=run_label,
            when=when,
            expected_current=decision.production_version,
        )
        print(
            f"deploy: {'published' if created else 'found complete'} {uri}; "
            f"production {decision.production_version or '(none)'} -> {version}",
            flush=True,
        )
        failure = _smoke_in_fresh_process(space.root, version, settings.s3_endpoint_url)
        if failure is not None:
            previous = decision.production_version
            if previous is None:
                raise SmokeTestFailed(
                    f"smoke test of {version} failed: {failure}. There was no previous version "
                    f"to roll back to, so production still names {version}: fix the model and "
                    "deploy again, or promote a working version (`pmatch models promote VERSION`)"
                )
            registry.rollback(to=previous, reason=f"smoke test failed: {failure}", when=when)
            raise SmokeTestFailed(
                f"smoke test of {version} failed: {failure}; production rolled back to {previous}"
            )
    print(f"deploy: smoke test passed; production -> {version}", flush=True)
    return {
        "version": version,
        "uri": uri,
        "created": created,
        "previous_version": decision.production_version,
        "already_in_production": False,
    }


def code_sha256(root: str | Path) -> str:
    """The code version: a sha256 over every file of src/pmatch (path, size, bytes, in path
    order; caches left out) and dvc.yaml, so any change to the code or the pipeline changes it."""
    import hashlib

    root = Path(root)
    package = root / "src" / "pmatch"
    files = sorted(
        path
        for path in package.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    digest = hashlib.sha256()
    for path in [*files, root / "dvc.yaml"]:
        if not path.is_file():
            continue
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def next_delivery(delivery: str | None = None, project_dir: str | Path | None = None) -> str | None:
    """The delivery to ingest: the given folder (resolved in the project) or s3:// URI, else
    the oldest delivery in the inbox (PMATCH_INBOX) the catalogue does not hold yet, else None."""
    space = workspace(project_dir)
    if delivery:
        return delivery if delivery.startswith("s3://") else str(space.resolve(delivery))
    with s3_settings(project_settings(space)) as settings:
        return _pending_delivery(space, settings)


def _pending_delivery(space: Workspace, settings) -> str | None:
    from pmatch.ingest import pending_deliveries

    params = load_params(space.params)
    inbox = settings.inbox
    if not inbox.startswith("s3://"):
        inbox = str(space.resolve(inbox))
    pending = pending_deliveries(inbox, space.resolve(params.data.catalog), settings)
    if not pending:
        print(f"ingest: no pending delivery in {inbox}", flush=True)
        return None
    print(f"ingest: {len(pending)} pending delivery(ies) in {inbox}; next {pending[0]}", flush=True)
    return pending[0]


def ingest(delivery: str | None = None, project_dir: str | Path | None = None) -> dict | None:
    """Ingests one delivery into the catalogue (pmatch.ingest.ingest_delivery): the given
    folder or s3:// URI, else the oldest delivery in the inbox (PMATCH_INBOX) not ingested yet.
    Pushes the new data version to the DVC remote and records the delivery in S3. Returns the
    result (delivery, rows, accepted, quarantined, data_version, ...), or None when no
    delivery is pending."""
    from pmatch.ingest import ingest_delivery, sync_catalogue

    space = workspace(project_dir)
    params = load_params(space.params)
    catalog = space.resolve(params.data.catalog)
    with s3_settings(project_settings(space)) as settings:
        # First, so that what is pending is read from the current catalogue's ledger
        # (ingest_delivery syncs again under the catalogue's lock in S3).
        sync_catalogue(space.root, catalog, settings)
        if not delivery:
            delivery = _pending_delivery(space, settings)
            if delivery is None:
                return None
        elif not delivery.startswith("s3://"):
            delivery = str(space.resolve(delivery))
        result = ingest_delivery(
            delivery, catalog, params, space.root / "reports" / "ingest", space.root, settings
        )
    document = result.as_json()
    if result.already_ingested:
        print(
            f"ingest: delivery {result.delivery} was already ingested with the same content; "
            f"nothing changed (data version {result.data_version})",
            flush=True,
        )
    else:
        print(
            f"ingest: delivery {result.delivery}: {result.accepted} of {result.rows} rows "
            f"accepted, quarantined {result.quarantined or 'none'}; data version "
            f"{result.previous_data_version or '(none)'} -> {result.data_version}; "
            f"report {result.report_html}",
            flush=True,
        )
    return document


def retrain_check(
    project_dir: str | Path | None = None, force: bool = False, reason: str | None = None
) -> dict:
    """Whether a retraining run has work to do: the current data version, params sha256 and
    code sha256 compared with the production version's manifest.

    Returns {retrain, message, data_version, params_sha256, code_sha256, production_version}.
    retrain is False only when all three equal production's and not force ("the model for
    data version X is already in production"); no production, an unreadable manifest or one
    without these fields means retrain (fail towards doing the work, which the gate guards).
    """
    from pmatch.catalog.version import catalog_version
    from pmatch.gate import sha256_bytes

    space = workspace(project_dir)
    params = load_params(space.params)
    catalog = space.resolve(params.data.catalog)
    pointer = catalog.with_name(f"{catalog.name}.dvc")
    if (catalog / "catalog.csv").is_file():
        data_version = catalog_version(catalog)
    elif pointer.is_file():
        # A run's workspace holds the .dvc file, not the data: its md5 is the same version.
        data_version = dvc_file_version(pointer)
    else:
        # A stage may build it (the sample), or validate will say what is missing.
        message = f"no catalogue at {catalog} yet: running the stages"
        print(f"retrain check: {message}", flush=True)
        return {"retrain": True, "message": message, "data_version": None}
    current = {
        "data_version": data_version,
        "params_sha256": sha256_bytes(space.params),
        "code_sha256": code_sha256(space.root),
    }
    with s3_settings(project_settings(space)) as settings:
        registry = open_registry(settings)
        pointer = registry.production()
        manifest = registry.manifest(pointer["version"]) if pointer else None
    production = pointer["version"] if pointer else None
    changed = [name for name, value in current.items() if (manifest or {}).get(name) != value]
    if force:
        retrain, message = True, f"force: retraining whatever changed ({reason or 'no reason'})"
    elif manifest is None:
        retrain, message = True, "no production model yet: training the first one"
    elif changed:
        retrain = True
        message = f"{', '.join(changed)} differ(s) from production {production}: retraining"
    else:
        retrain = False
        message = (
            f"the model for data version {current['data_version']} is already in production "
            f"({production}; params and code unchanged): nothing to retrain"
        )
    print(f"retrain check: {message}", flush=True)
    return {"retrain": retrain, "message": message, "production_version": production, **current}


def dvc_file_version(path: Path) -> str:
    """The data version a .dvc file names: its output's md5 without DVC's '.dir' suffix
    (what pmatch.catalog.version.catalog_version computes from the folder)."""
    import yaml

    document = yaml.safe_load(Path(path).read_text()) or {}
    outs = document.get("outs") or []
    if len(outs) != 1 or not outs[0].get("md5"):
        raise ValueError(f"{path}: not a .dvc file of one output with an md5; run `dvc add` again")
    return str(outs[0]["md5"]).removesuffix(".dir")


def _run_date(run_date) -> str:
    """The run's date as ISO 8601 text (a datetime, a string as given, or now at the CLI)."""
    from datetime import UTC

    if run_date is None:
        run_date = datetime.now(UTC).replace(microsecond=0)
    return run_date if isinstance(run_date, str) else run_date.isoformat()


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _git_commit(root: Path) -> str | None:
    """The project's git commit (HEAD), or None outside git."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None


@contextlib.contextmanager
def _version_files(space: Workspace, params):
    """The files a deployed version holds (name -> local path): the model's, its evaluation
    (metrics, reference scores, evaluation.json, the review files), params.yaml, the gate's
    decision as gate.json, and canary.csv with its photos under canary/ (canary.csv's
    image_path rewritten to them, so the version can be smoke-tested on its own)."""
    import hashlib
    import tempfile

    import pandas as pd

    from pmatch.artifacts import (
        CANARY_FILE,
        CANARY_FOLDER,
        ERRORS_FILE,
        ERRORS_REPORT_FILE,
        EVALUATION_FILE,
        GATE_FILE,
        METRICS_FILE,
        PLOTS_FILE,
        REFERENCE_FILES,
        REFERENCE_SCORES_FILE,
    )
    from pmatch.catalog.format import resolve_image
    from pmatch.gate import model_files

    evaluate_dir = space.evaluate_dir
    files = {
        **model_files(space.model_dir),
        METRICS_FILE: evaluate_dir / METRICS_FILE,
        REFERENCE_SCORES_FILE: evaluate_dir / REFERENCE_SCORES_FILE,
        **{name: evaluate_dir / name for name in REFERENCE_FILES},
        EVALUATION_FILE: evaluate_dir / EVALUATION_FILE,
        "params.yaml": space.params,
        GATE_FILE: space.gate_file,
    }
    # The version keeps its evaluation for review later.
    for name in (PLOTS_FILE, ERRORS_REPORT_FILE, ERRORS_FILE):
        if (evaluate_dir / name).is_file():
            files[name] = evaluate_dir / name
    if not (evaluate_dir / CANARY_FILE).is_file():
        raise FileNotFoundError(
            f"{evaluate_dir / CANARY_FILE}: missing; run `dvc repro evaluate` (with --catalog)"
        )
    catalog = space.resolve(params.data.catalog)
    canary = pd.read_csv(
        evaluate_dir / CANARY_FILE, dtype={"image_path": str, "text": str}, keep_default_na=False
    )
    names = []
    for image_path in canary["image_path"]:
        photo = resolve_image(catalog, image_path)
        # Named by content: the same photo is stored once, and the names never change.
        digest = hashlib.sha256(photo.read_bytes()).hexdigest()[:16]
        name = f"{CANARY_FOLDER}/{digest}{photo.suffix.lower()}"
        files[name] = photo
        names.append(name)
    with tempfile.TemporaryDirectory(prefix="pmatch-deploy-") as temporary:
        rewritten = Path(temporary) / CANARY_FILE
        canary.assign(image_path=names).to_csv(rewritten, index=False)
        files[CANARY_FILE] = rewritten
        yield files


def _smoke_in_fresh_process(root: Path, version: str, endpoint_url: str) -> str | None:
    """Runs `python -m pmatch.smoke` in a new process against the same S3 endpoint; returns
    None when it passes, else why it failed (its last line of output)."""
    import pmatch

    package_parent = str(Path(pmatch.__file__).resolve().parents[1])
    environment = {
        **os.environ,
        "PMATCH_S3_ENDPOINT_URL": endpoint_url,
        "PYTHONPATH": os.pathsep.join(
            part for part in (package_parent, os.environ.get("PYTHONPATH", "")) if part
        ),
    }
    command = [sys.executable, "-m", "pmatch.smoke", "--project", str(root), "--version", version]
    print(f"$ python {' '.join(command[1:])}", flush=True)
    result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
    if result.stdout.strip():
        print(result.stdout.strip(), flush=True)
    if result.returncode == 0:
        # TensorFlow's start-up chatter on stderr says nothing about the test.
        return None
    print(result.stderr.strip(), file=sys.stderr, flush=True)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit status {result.returncode}"
    return last.removeprefix("smoke test failed: ")


def monitor(
    delivery: str | Path,
    run_id: str,
    project_dir: str | Path | None = None,
    run_date: str | None = None,
    evidently_dir: str | Path | None = None,
) -> dict:
    """Watches one delivery: scores its listings with the production model, compares them
    with that model's reference (pmatch.monitor.signals), decides (pmatch.monitor.decide)
    and writes scores.csv, the Evidently report (drift.html, drift.json) and verdict.json
    under reports/monitor/<delivery>/<run id>/ and in S3 under monitoring/.

    delivery: a delivery folder (catalog.csv and its photos, optional label column), or an
    s3:// URI of one, downloaded into the project's deliveries/ folder first.
    run_date: the run's date (ISO; default now, at the command line): persistence and
    cooldown are read against it. evidently_dir: Evidently's UI workspace the report is
    added to (default the project's). Returns the verdict (see docs/design.md, Monitoring).
    """
    from pmatch.artifacts import (
        DRIFT_JSON_FILE,
        DRIFT_REPORT_FILE,
        HISTORY_HTML,
        METRICS_FILE,
        SCORES_FILE,
        VERDICT_FILE,
    )
    from pmatch.features.store import open_default_store
    from pmatch.model.inference import Matcher
    from pmatch.monitor.decide import decide, safe_name
    from pmatch.monitor.header import add_header
    from pmatch.monitor.history import write_history
    from pmatch.monitor.reference import describe_listings, load_reference
    from pmatch.monitor.review import SUSPECTS_FILE, write_suspects
    from pmatch.monitor.signals import compute_signals, labelled_rows, write_report
    from pmatch.monitor.workspace import add_report

    space = workspace(project_dir)
    params = load_params(space.params)
    when = _run_date(run_date)
    with s3_settings(project_settings(space)) as settings:
        if str(delivery).startswith("s3://"):
            from pmatch.ingest import delivery_name, download_delivery

            folder = download_delivery(
                str(delivery), settings, space.root / "deliveries" / delivery_name(delivery)
            )
        else:
            folder = space.resolve(delivery)
        listings_frame, left_out = _listings_to_watch(folder, params)
        name = safe_name(folder.name)
        run_dir = space.monitor_dir / name / safe_name(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        registry = open_registry(settings)
        model_version, model_dir = registry.download_production(space.model_cache)
        matcher = Matcher.load(model_dir, feature_store=open_default_store())
        reference = load_reference(model_dir)
        metrics = json.loads((model_dir / METRICS_FILE).read_text())
        current = describe_listings(matcher, folder, listings_frame)
        current.frame.to_csv(run_dir / SCORES_FILE, index=False)
        # Too few listings give no verdict, and signals that would mean nothing.
        enough = len(current.frame) >= params.monitor.min_listings
        signals = compute_signals(reference, current, params.monitor, metrics) if enough else {}
        decision = decide(
            signals,
            len(current.frame),
            params.monitor,
            registry.monitoring_verdicts(),
            registry.promotion_log(),
            run_id,
            when,
            name,
        )
        reports = (DRIFT_REPORT_FILE, DRIFT_JSON_FILE) if enough else ()
        snapshot = None
        if enough:
            snapshot = write_report(
                reference,
                current,
                params.monitor,
                signals,
                run_dir / DRIFT_REPORT_FILE,
                run_dir / DRIFT_JSON_FILE,
                title=f"pmatch drift: delivery {name}, run {run_id}, model {model_version}",
            )
        prefix = ("monitoring", name, safe_name(run_id))
        verdict = {
            "delivery": name,
            "delivery_uri": str(delivery),
            "run_id": run_id,
            "run_date": when,
            "model_version": model_version,
            "reference_data_version": reference.data_version,
            "listings": int(len(current.frame)),
            "labelled": int(len(labelled_rows(current.frame))),
            # Rows the data contract quarantines never reach production: not watched.
            "left_out": left_out,
            "min_listings": params.monitor.min_listings,
            **{key: decision[key] for key in ("drift", "reason") if key in decision},
            "signals": signals,
            **{key: value for key, value in decision.items() if key not in ("drift", "reason")},
            "threshold": matcher.threshold,
            "report_html": str(run_dir / DRIFT_REPORT_FILE) if enough else None,
            "report_json": str(run_dir / DRIFT_JSON_FILE) if enough else None,
            "suspects_html": str(run_dir / SUSPECTS_FILE),
            "scores_csv": str(run_dir / SCORES_FILE),
            "s3_uri": registry.uri(*prefix) + "/",
            "history_html": str(space.monitor_dir / HISTORY_HTML),
            "history_s3_uri": registry.uri("monitoring", HISTORY_HTML),
        }
        # The pages people review: suspect listings always, the report's header (model,
        # reference, delivery, each signal against its threshold, what happens next) when
        # there is a report, which also goes to Evidently's UI workspace.
        write_suspects(current.frame, folder, matcher.threshold, run_dir / SUSPECTS_FILE, verdict)
        if snapshot is not None:
            add_header(run_dir / DRIFT_REPORT_FILE, verdict, reference.frame, current.frame)
            add_report(snapshot, verdict, evidently_dir or space.evidently_dir)
        for file_name in (*reports, SCORES_FILE, SUSPECTS_FILE):
            registry.upload_file(run_dir / file_name, *prefix, file_name)
        # The verdict goes last: it is what the history and later decisions read.
        (run_dir / VERDICT_FILE).write_text(json.dumps(verdict, indent=2))
        registry.upload_file(run_dir / VERDICT_FILE, *prefix, VERDICT_FILE)
        history = write_history(
            registry.monitoring_verdicts(), registry.promotion_log(), space.monitor_dir
        )
        for file_name, path in history.items():
            registry.upload_file(path, "monitoring", file_name)
    drift = verdict.get("drift", "none")
    print(
        f"monitor: delivery {name}: {verdict['listings']} listings"
        f"{' (left out: ' + json.dumps(left_out) + ')' if left_out else ''}, drift={drift}"
        f"{' (' + verdict['reason'] + ')' if 'reason' in verdict else ''}, fired "
        f"{', '.join(verdict['fired']) or 'none'}; next: {verdict['next_step']}; report "
        f"{verdict['report_html'] or '(none)'}",
        flush=True,
    )
    return verdict


def _listings_to_watch(folder: Path, params) -> tuple:
    """The delivery's listings production would see (catalog frame), and {reason: count} of
    the rows left out: those the data contract quarantines (a missing or broken photo, an
    empty title, ...), as ingest does. Reviewed mismatches (label 0) stay: they are
    listings production scores, and their labels are what the labelled F1 reads."""
    from pmatch.catalog.format import read_catalog
    from pmatch.ingest import REVIEWED_MISMATCH, check_delivery

    _, _, quarantine = check_delivery(folder, params)
    left_out = {row: entry["reason"] for row, entry in quarantine.items()}
    left_out = {row: reason for row, reason in left_out.items() if reason != REVIEWED_MISMATCH}
    frame = read_catalog(folder)
    kept = [row for row in range(len(frame)) if row not in left_out]
    counts: dict[str, int] = {}
    for reason in left_out.values():
        counts[reason] = counts.get(reason, 0) + 1
    return frame.iloc[kept].reset_index(drop=True), counts


def project_settings(space: Workspace):
    """The environment's settings, with the project folder set to space's."""
    import dataclasses

    settings = load_settings()
    return dataclasses.replace(settings, project_dir=space.root)


def delivery_for_run(param: str | None, event_extras: list[dict]) -> str | None:
    """The delivery a monitoring run watches: the `delivery` param when given, else the
    `delivery` of the last triggering pmatch_catalog event that names one, else None.

    event_extras: the triggering asset events' extras, oldest first."""
    if param and str(param).strip():
        return str(param).strip()
    named = [str(extra["delivery"]) for extra in event_extras if extra.get("delivery")]
    return named[-1] if named else None
