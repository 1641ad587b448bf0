"""`pmatch monitor` and pmatch_monitor on small deliveries, and `pmatch score` on a few pairs."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def deliveries(retrained):
    """Small deliveries of products the model never saw, written into the project's inbox."""
    from pmatch.sample.shifts import write_delivery

    project, _, _ = retrained
    folders = {
        name: write_delivery(
            project / "data/inbox" / name, shift=shift, listings=listings, seed=seed
        )
        for name, shift, listings, seed in (
            ("tiny", "none", 12, 1),
            ("unshifted", "none", 200, 2),
            ("dark-1", "dark", 200, 3),
            ("dark-2", "dark", 200, 4),
        )
    }
    # The tiny delivery also brings a row whose photo is missing: the contract quarantines
    # it, so production never sees it and monitoring leaves it out (naming why).
    tiny = pd.read_csv(folders["tiny"] / "catalog.csv", dtype=str, keep_default_na=False)
    broken = tiny.iloc[[0]].assign(product_id="BROKEN", image_path="images/missing.png")
    pd.concat([tiny, broken]).to_csv(folders["tiny"] / "catalog.csv", index=False)
    # The darker deliveries come unreviewed: their verdict rests on the other signals.
    for name in ("dark-1", "dark-2"):
        catalog = pd.read_csv(folders[name] / "catalog.csv", dtype=str, keep_default_na=False)
        catalog.assign(label="").to_csv(folders[name] / "catalog.csv", index=False)
    return folders


@pytest.fixture(scope="module")
def monitored(retrained, deliveries):
    """pmatch_monitor on two darkened deliveries a day apart, after the cooldown that the
    retrained fixture's promotion (2026-11-02) started: the first drift waits for
    persistence, the second (2 of the last 3 runs, with force_retrain) starts a retrain.
    Returns the project, the registry, the runs and {triggered run id: its conf}."""
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    from pmatch.main_job import queued_runs, run_dag

    project, _, registry = retrained
    before = set(queued_runs("pmatch_retrain"))
    runs = {}
    for day, name in enumerate(("dark-1", "dark-2")):
        runs[name] = run_dag(
            "pmatch_monitor",
            datetime(2026, 11, 6 + day, tzinfo=UTC),
            {"delivery": str(deliveries[name]), "force_retrain": name == "dark-2"},
        )
    triggered = set(queued_runs("pmatch_retrain")) - before
    with create_session() as session:
        confs = {
            run.run_id: run.conf
            for run in session.query(DagRun).filter(DagRun.run_id.in_(triggered))
        }
    return project, registry, runs, confs


def verdict_of(project, delivery: str) -> dict:
    return json.loads(
        next((project / "reports/monitor" / delivery).glob("*/verdict.json")).read_text()
    )


def test_monitor_cli_prints_the_verdict_with_drift_and_retrain(retrained, deliveries, params):
    project, _, _ = retrained
    minimum = params.monitor.min_listings
    command = [sys.executable, "-m", "pmatch.cli", "monitor", "--project", str(project)]
    tiny = json.loads(
        run(
            [*command, "--delivery", str(deliveries["tiny"]), "--run-date", "2026-11-20"], project
        ).stdout
    )
    assert "drift" not in tiny
    assert tiny["reason"] == f"too few listings: 12 < monitor.min_listings {minimum}"
    assert tiny["retrain"] is False and tiny["report_html"] is None
    assert tiny["left_out"] == {"photo missing": 1}

    verdict = json.loads(
        run(
            # Dated after the darker deliveries' runs, so it is not in their persistence window.
            [*command, "--delivery", str(deliveries["unshifted"]), "--run-date", "2026-11-21"],
            project,
        ).stdout
    )
    assert isinstance(verdict["drift"], bool) and verdict["retrain"] is False
    assert verdict["listings"] == 200 and verdict["labelled"] == 200
    assert verdict["reference_data_version"] and verdict["model_version"]
    # Every signal, labels included (the generator labels every listing).
    assert set(verdict["signals"]) == {
        "score", "below_threshold_share", "photo_brightness", "photo_contrast",
        "photo_sharpness", "photo_size", "title_length", "title_oov_share", "title_charset",
        "image_embeddings", "text_embeddings", "labels_f1",
    }  # fmt: skip
    report = json.loads(Path(verdict["report_json"]).read_text())
    assert report["metrics"] and report["tests"]
    html = Path(verdict["report_html"]).read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and len(html) > 100_000
    scores = pd.read_csv(verdict["scores_csv"])
    assert {"score", "below_threshold", "label", "photo_brightness"} <= set(scores.columns)


def test_monitor_cli_reads_a_delivery_from_an_s3_prefix(retrained, deliveries):
    """A delivery in an S3 inbox (as under Celery, where workers share no folder) is
    downloaded into the project and watched like a local one."""
    from tests.conftest import TEST_BUCKET

    project, _, registry = retrained
    for path in deliveries["tiny"].rglob("*"):
        if path.is_file():
            key = f"monitor-inbox/tiny-s3/{path.relative_to(deliveries['tiny']).as_posix()}"
            registry.client.upload_file(str(path), TEST_BUCKET, key)
    uri = f"s3://{TEST_BUCKET}/monitor-inbox/tiny-s3"
    verdict = json.loads(
        run(
            [sys.executable, "-m", "pmatch.cli", "monitor", "--project", str(project)]
            + ["--delivery", uri, "--run-date", "2026-11-22"],
            project,
        ).stdout
    )
    assert verdict["delivery"] == "tiny-s3" and verdict["delivery_uri"] == uri
    assert verdict["listings"] == 12 and verdict["left_out"] == {"photo missing": 1}
    assert (project / "deliveries/tiny-s3/catalog.csv").is_file()


def test_darker_photos_wait_for_persistence_then_retrain_with_a_reason(monitored):
    project, _, runs, triggered = monitored
    # Each DAG run wrote its reports into its own workspace, not into the project.
    first, second = (verdict_of(Path(runs[name]["workspace"]), name) for name in runs)
    assert not (project / "reports/monitor/dark-1").exists()
    assert first["signals"]["photo_brightness"]["drift"] is True
    assert first["drift"] is True, first
    assert first["retrain"] is False and first["next_step"].startswith("waiting for persistence")
    assert runs["dark-1"]["tasks"]["trigger_retrain"]["state"] == "skipped"
    # The Evidently report holds each signal's test; brightness's failed.
    report = json.loads(Path(first["report_json"]).read_text())
    failed = [test["name"] for test in report["tests"] if test["status"] == "FAIL"]
    assert any("photo_brightness" in name for name in failed), failed
    assert first["labelled"] == 0 and "labels_f1" not in first["signals"]
    assert second["drift"] is True and second["retrain"] is True, second
    assert "photo_brightness" in second["retrain_reason"]
    assert runs["dark-2"]["tasks"]["trigger_retrain"]["state"] == "success"
    # The retrain starts with the verdict's reason, and force as the run's force_retrain.
    assert list(triggered.values()) == [{"reason": second["retrain_reason"], "force": True}]
    # The run date is the DAG run's logical date, not the clock's.
    assert second["run_date"].startswith("2026-11-07")


def test_reports_are_saved_locally_and_in_s3(monitored):
    _, registry, runs, _ = monitored
    verdict = verdict_of(Path(runs["dark-1"]["workspace"]), "dark-1")
    bucket, _, prefix = verdict["s3_uri"].removeprefix("s3://").partition("/")
    listing = registry.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    names = {item["Key"].rsplit("/", 1)[-1] for item in listing["Contents"]}
    assert names == {"drift.html", "drift.json", "verdict.json", "scores.csv", "suspects.html"}
    # The report opens with pmatch's header: the model, the delivery and what happens next.
    page = Path(verdict["report_html"]).read_text()
    assert verdict["model_version"] in page and verdict["next_step"] in page
    history = registry.client.list_objects_v2(
        Bucket=bucket, Prefix=registry.key("monitoring", "history")
    )
    assert {item["Key"].rsplit("/", 1)[-1] for item in history.get("Contents", [])} >= {
        "history.html",
        "history.csv",
        "history.png",
    }


def test_a_run_without_a_delivery_is_skipped_not_failed(retrained):
    from pmatch.main_job import run_dag

    run_info = run_dag("pmatch_monitor", datetime(2026, 11, 8, tzinfo=UTC))
    assert run_info["tasks"]["find_delivery"]["state"] == "skipped"
    assert run_info["tasks"]["monitor"]["state"] == "skipped"
    assert run_info["state"] == "success"


def test_score_cli_with_production_model(retrained, tmp_path):
    project, _, _ = retrained
    batch = project / "data/sample/batches/unshifted"
    pairs = pd.read_csv(batch / "pairs.csv")
    first = pairs["product_id"].iloc[0]
    chosen = pairs[(pairs["product_id"] == first) & pairs["pair_kind"].isin(["match", "random"])]
    chosen = chosen.assign(image_path=[str(batch / path) for path in chosen["image_path"]])
    chosen.to_csv(tmp_path / "pairs.csv", index=False)
    run(
        [
            sys.executable,
            "-m",
            "pmatch.cli",
            "score",
            "--pairs",
            str(tmp_path / "pairs.csv"),
            "--out",
            str(tmp_path / "scored.csv"),
            "--project",
            str(project),
        ],
        project,
    )
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert list(scored.columns) == [*chosen.columns, "score", "match"]
    assert scored["score"].between(0, 1).all()
    match_score = scored.loc[scored["pair_kind"] == "match", "score"].iloc[0]
    other_score = scored.loc[scored["pair_kind"] == "random", "score"].iloc[0]
    assert match_score > other_score, scored


def test_score_cli_with_local_model_and_bad_input(retrained, tmp_path):
    project, _, _ = retrained
    batch = project / "data/sample/batches/unshifted"
    pairs = pd.read_csv(batch / "pairs.csv").head(20)
    pairs["image_path"] = [str(batch / path) for path in pairs["image_path"]]
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    run(
        [
            sys.executable,
            "-m",
            "pmatch.cli",
            "score",
            "--pairs",
            str(tmp_path / "pairs.csv"),
            "--out",
            str(tmp_path / "scored.csv"),
            "--model",
            "models/candidate",
        ],
        project,
    )
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert len(scored) == 20 and scored["score"].between(0, 1).all()
    assert (
        scored.groupby("expected_match")["score"].mean()[1]
        > scored.groupby("expected_match")["score"].mean()[0]
    )

    pairs.loc[4, "image_path"] = str(tmp_path / "missing.png")
    pairs.to_csv(tmp_path / "bad.csv", index=False)
    result = run(
        [
            sys.executable,
            "-m",
            "pmatch.cli",
            "score",
            "--pairs",
            str(tmp_path / "bad.csv"),
            "--out",
            str(tmp_path / "bad_scored.csv"),
            "--model",
            "models/candidate",
        ],
        project,
        check=False,
    )
    assert result.returncode == 1
    assert "line 6" in result.stderr and "missing.png" in result.stderr
    assert not (tmp_path / "bad_scored.csv").exists()
