"""pmatch_monitor on an unshifted and a shifted batch, and `pmatch score` on a few pairs."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import pandas as pd
import pytest

from tests.conftest import run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def monitored(retrained):
    from pmatch.main_job import queued_runs, run_dag

    project, _, registry = retrained
    before = set(queued_runs("pmatch_retrain"))
    runs = {}
    for hour, batch in enumerate(("unshifted", "shifted")):
        runs[batch] = run_dag(
            "pmatch_monitor",
            datetime(2026, 11, 3, hour, tzinfo=UTC),
            {"batch": f"data/sample/batches/{batch}"},
        )
    triggered = set(queued_runs("pmatch_retrain")) - before
    return project, registry, runs, triggered


def test_unshifted_batch_is_not_flagged(monitored):
    project, _, runs, _ = monitored
    run_info = runs["unshifted"]
    assert run_info["tasks"]["monitor"]["state"] == "success"
    verdict = json.loads(
        next((project / "reports/monitor/unshifted").glob("*/verdict.json")).read_text()
    )
    assert verdict["drift"] is False, verdict
    # No drift: the retrain trigger is skipped.
    assert run_info["tasks"]["trigger_retrain"]["state"] == "skipped"


def test_shifted_batch_is_flagged_and_triggers_retraining(monitored):
    project, registry, runs, triggered = monitored
    run_info = runs["shifted"]
    verdict = json.loads(
        next((project / "reports/monitor/shifted").glob("*/verdict.json")).read_text()
    )
    assert verdict["drift"] is True, verdict
    assert verdict["current_mean_score"] < verdict["reference_mean_score"]
    assert run_info["tasks"]["trigger_retrain"]["state"] == "success"
    assert len(triggered) == 1


def test_reports_are_saved_locally_and_in_s3(monitored):
    project, registry, _, _ = monitored
    for batch in ("unshifted", "shifted"):
        folder = next((project / "reports/monitor" / batch).iterdir())
        html = (folder / "drift.html").read_text()
        # Evidently's self-contained report: its scripts and the metric's data are inlined.
        assert html.lstrip().lower().startswith("<!doctype html") and len(html) > 100_000
        assert "ValueDrift" in (folder / "drift.json").read_text()
        assert json.loads((folder / "drift.json").read_text())["metrics"]
        verdict = json.loads((folder / "verdict.json").read_text())
        bucket, _, prefix = verdict["s3_uri"].removeprefix("s3://").partition("/")
        listing = registry.client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        names = {item["Key"].rsplit("/", 1)[-1] for item in listing["Contents"]}
        assert names == {"drift.html", "drift.json", "verdict.json", "scores.csv"}


def test_drift_history_lists_both_runs_locally_and_in_s3(monitored):
    project, registry, runs, _ = monitored
    history = pd.read_csv(project / "reports/monitor/history.csv", keep_default_na=False)
    ours = history[history["run_id"].isin([run["run_id"] for run in runs.values()])]
    assert ours.set_index("batch")["drift"].to_dict() == {"unshifted": False, "shifted": True}
    # The run date is the DAG run's logical date, not the clock's.
    assert set(ours["run_date"]) == {"2026-11-03"}
    for report in ours["report"]:
        assert (project / "reports/monitor" / report).is_file()
    assert "flagged as drift" in (project / "reports/monitor/history.html").read_text()
    for name in ("history.html", "history.csv", "history.png"):
        registry.client.head_object(Bucket=registry.bucket, Key=registry.key("monitoring", name))


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
