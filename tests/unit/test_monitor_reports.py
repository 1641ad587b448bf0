"""Tests for what people review of monitoring: the report header, the drift history, the
suspect listings and the Evidently UI workspace."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from pmatch.monitor.header import HEADER_START, add_header, header_html
from pmatch.monitor.history import RUNS_SHOWN, history_frame, write_history
from pmatch.monitor.review import suspect_listings, write_suspects, write_suspects_page
from pmatch.monitor.workspace import add_report, workspace_runs
from pmatch.sample.shifts import write_delivery


def make_verdict(day: int, **changes) -> dict:
    """A verdict record of a run on 2026-01-DAY, with two signals; score fired."""
    date = f"2026-01-{day:02d}"
    verdict = {
        "delivery": date,
        "delivery_uri": f"data/inbox/{date}",
        "run_id": f"scheduled__{date}T00:00:00+00:00",
        "run_date": f"{date}T00:00:00+00:00",
        "model_version": "abcd1234-5678",
        "reference_data_version": "data-v1",
        "listings": 360,
        "labelled": 0,
        "min_listings": 50,
        "drift": True,
        "signals": {
            "score": {
                "kind": "score",
                "drift": True,
                "method": "wasserstein",
                "value": 0.21,
                "threshold": 0.15,
                "description": "score distribution (normed Wasserstein)",
                "reference_mean": 0.7,
                "current_mean": 0.5,
            },
            "photo_brightness": {
                "kind": "input",
                "drift": False,
                "method": "wasserstein",
                "value": 0.04,
                "threshold": 0.2,
                "description": "mean grey level of the photo",
                "reference_mean": 140.0,
                "current_mean": 138.0,
            },
        },
        "fired": ["score"],
        "persistence": {"k": 2, "n": 3, "recent_drift": [True, False, True]},
        "cooldown_until": None,
        "retrain": True,
        "retrain_reason": f"drift in score (2 of the last 3 runs) on delivery {date}",
        "next_step": "retrain started",
        "threshold": 0.5,
        "suspects_html": "suspects.html",
        "report_html": "drift.html",
        "s3_uri": f"s3://pmatch/pmatch/monitoring/{date}/scheduled__{date}/",
    }
    verdict.update(changes)
    return verdict


def quiet(day: int, **changes) -> dict:
    """A run without drift."""
    verdict = make_verdict(day, drift=False, fired=[], retrain=False, next_step="nothing")
    verdict["signals"]["score"].update(drift=False, value=0.05)
    verdict.pop("retrain_reason")
    verdict.update(changes)
    return verdict


@pytest.fixture(scope="module")
def evidently_run(tmp_path_factory):
    """A real Evidently report on a score column: (snapshot, saved HTML path)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    rng = np.random.default_rng(0)
    definition = DataDefinition(numerical_columns=["score"])
    reference = Dataset.from_pandas(
        pd.DataFrame({"score": rng.beta(5, 2, 200)}), data_definition=definition
    )
    current = Dataset.from_pandas(
        pd.DataFrame({"score": rng.beta(2, 2, 60)}), data_definition=definition
    )
    snapshot = Report([ValueDrift(column="score")]).run(
        current_data=current, reference_data=reference
    )
    html = tmp_path_factory.mktemp("evidently") / "drift.html"
    snapshot.save_html(str(html))
    return snapshot, html


def frames(rng: np.random.Generator, listings: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    reference = pd.DataFrame(
        {"score": rng.beta(5, 2, 680), "photo_brightness": rng.normal(140, 20, 680)}
    )
    current = pd.DataFrame(
        {"score": rng.beta(2, 2, listings), "photo_brightness": rng.normal(100, 20, listings)}
    )
    return reference, current


# The report header.


def test_header_names_the_run_the_signals_and_what_happens_next():
    reference, current = frames(np.random.default_rng(1), 360)
    page = header_html(make_verdict(8), reference, current)

    for expected in (
        "abcd1234-5678",
        "data-v1",
        "2026-01-08",
        "data/inbox/2026-01-08",
        "360 listings",
        "retrain started",
        "drift in score (2 of the last 3 runs)",
        "Drift in score",
        "wasserstein",
        "0.210",
        "0.150",
    ):
        assert expected in page, expected
    # The fired signal is highlighted and listed first; the other passes.
    rows = re.findall(r'<tr class="([^"]*)"><td>([a-z_]+)</td>', page)
    assert rows[0] == ("fired", "score")
    assert ("", "photo_brightness") in rows
    # The densities are inlined, nothing is fetched, and a 360-listing delivery is not noisy.
    assert "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page
    assert "noisy" not in page


def test_header_of_a_small_delivery_and_of_no_verdict():
    reference, current = frames(np.random.default_rng(2), 60)
    small = header_html(make_verdict(8, listings=60), reference, current)
    assert "60 listings: the distances below are noisy" in small

    verdict = quiet(9, listings=12, next_step="no verdict: too few listings")
    verdict.pop("drift")
    verdict["reason"] = "too few listings: 12 < monitor.min_listings 50"
    page = header_html(verdict)
    assert "No verdict: too few listings: 12 &lt; monitor.min_listings 50" in page
    assert "data:image/png" not in page


def test_add_header_goes_right_after_body_once(evidently_run, tmp_path):
    _, saved = evidently_run
    report = tmp_path / "drift.html"
    report.write_text(saved.read_text(encoding="utf-8"), encoding="utf-8")
    reference, current = frames(np.random.default_rng(3), 360)

    add_header(report, make_verdict(8), reference, current)
    add_header(report, make_verdict(8, next_step="waiting for persistence (1 of 2 runs)"))

    page = report.read_text(encoding="utf-8")
    assert page.count(HEADER_START) == 1
    assert "waiting for persistence (1 of 2 runs)" in page
    body = re.search(r"<body[^>]*>", page)
    assert page[body.end() :].lstrip().startswith(HEADER_START)
    # Evidently's own report is still there after the header.
    assert len(page) > len(saved.read_text(encoding="utf-8"))


def test_add_header_refuses_a_file_that_is_not_a_report(tmp_path):
    report = tmp_path / "drift.json"
    report.write_text("{}")
    with pytest.raises(ValueError, match="drift.json: no <body> tag"):
        add_header(report, make_verdict(8))


# The drift history.


def test_history_orders_runs_in_time_and_links_retrains_to_their_deploys(tmp_path):
    old_format = {
        "batch": "data/sample/batches/unshifted",
        "run_id": "manual__old",
        "run_date": "2025-12-30",
        "drift": False,
        "drift_score": 0.03,
        "threshold": 0.15,
        "current_pairs": 360,
        "report_html": "reports/monitor/unshifted/manual__old/drift.html",
    }
    verdicts = [
        quiet(10, report_html=None),  # too few listings: no report to link
        make_verdict(8),  # retrain: deployed the same day
        make_verdict(9, run_id="manual__b"),  # two runs on the 9th, ordered by run id
        quiet(9, run_id="manual__a"),
        # A retrain that deployed nothing.
        make_verdict(
            10,
            run_id="manual__late",
            s3_uri="s3://pmatch/pmatch/monitoring/2026-01-10/manual__late/",
        ),
        old_format,
    ]
    promotions = [
        {
            "when": "2026-01-08T06:30:00+00:00",
            "from_version": "abcd1234-5678",
            "to_version": "beef0000-1111",
            "reason": "pmatch_retrain run",
            "action": "promote",
        },
        {
            "when": "2026-01-09T12:00:00+00:00",
            "from_version": "beef0000-1111",
            "to_version": "abcd1234-5678",
            "reason": "pmatch models rollback",
            "action": "rollback",
        },
    ]
    history = history_frame(verdicts, promotions)

    assert list(history["run_id"]) == [
        "manual__old",
        "scheduled__2026-01-08T00:00:00+00:00",
        "manual__a",
        "manual__b",
        "manual__late",
        "scheduled__2026-01-10T00:00:00+00:00",
    ]
    assert history.loc[0, "delivery"] == "unshifted"
    assert history.loc[0, "score_value"] == pytest.approx(0.03)
    outcomes = dict(zip(history["run_id"], history["retrain_outcome"], strict=True))
    assert outcomes["scheduled__2026-01-08T00:00:00+00:00"] == (
        "deployed beef0000-1111 at 2026-01-08T06:30:00+00:00"
    )
    # The rollback on the 9th is no retrain's outcome.
    assert outcomes["manual__b"] == "no deploy"
    assert outcomes["manual__late"] == "no deploy"
    assert outcomes["manual__a"] == ""

    paths = write_history(verdicts, promotions, tmp_path)
    page = paths["history.html"].read_text(encoding="utf-8")
    assert "deployed beef0000-1111" in page
    assert "beef0000-1111" in page and "rollback" in page
    assert 'href="2026-01-08/scheduled__2026-01-08/drift.html"' in page
    assert 'href="2026-01-08/scheduled__2026-01-08/suspects.html"' in page
    assert 'href="unshifted/manual__old/drift.html"' in page
    assert 'href="2026-01-10/scheduled__2026-01-10/drift.html"' not in page
    assert paths["history.png"].stat().st_size > 10_000
    assert len(pd.read_csv(paths["history.csv"])) == len(verdicts)


def test_history_of_many_runs_shows_the_latest_and_keeps_all_in_the_csv(tmp_path):
    start = pd.Timestamp("2026-01-01", tz="UTC")
    verdicts = []
    for day in range(120):
        date = start + pd.Timedelta(days=day)
        verdicts.append(
            quiet(
                1,
                delivery=date.strftime("%Y-%m-%d"),
                run_id=f"scheduled__{date.isoformat()}",
                run_date=date.isoformat(),
            )
        )
    paths = write_history(verdicts, [], tmp_path)
    page = paths["history.html"].read_text(encoding="utf-8")
    assert page.count('<tr class="ok">') == RUNS_SHOWN
    assert f"{RUNS_SHOWN} of 120" in page
    # Newest first.
    assert page.index("2026-04-30") < page.index("2026-04-29")
    assert len(pd.read_csv(paths["history.csv"])) == 120


# The suspect listings.


@pytest.fixture(scope="module")
def delivery(tmp_path_factory):
    """A 20-listing delivery with labels, and scores as monitoring writes them."""
    folder = write_delivery(
        tmp_path_factory.mktemp("inbox") / "2026-01-08", shift="none", listings=20, seed=4
    )
    catalog = pd.read_csv(folder / "catalog.csv", keep_default_na=False)
    scores = catalog[["product_id", "variant", "title", "image_path", "label"]].copy()
    # Listings that are not genuine score low, as a good model scores them.
    scores["score"] = np.where(scores["label"] == 1, 0.9, 0.3) - np.arange(len(scores)) * 0.01
    scores["below_threshold"] = scores["score"] < 0.5
    return folder, scores


def test_suspects_page_shows_the_listings_below_the_threshold_lowest_first(delivery, tmp_path):
    folder, scores = delivery
    out = write_suspects(scores, folder, 0.5, tmp_path / "suspects.html", make_verdict(8))
    page = out.read_text(encoding="utf-8")

    suspects = suspect_listings(scores, 0.5)
    assert len(suspects) == int((scores["label"] == 0).sum()) > 0
    assert list(suspects["score"]) == sorted(suspects["score"])
    assert page.count("data:image/jpeg;base64,") == len(suspects)
    shown = [float(value) for value in re.findall(r'<td class="score">([0-9.]+)</td>', page)]
    assert shown == sorted(shown) and len(shown) == len(suspects)
    assert "does not match (0)" in page
    assert f"{len(suspects)} of 20 listings below 0.500" in page
    for title in suspects["title"]:
        assert title.replace("&", "&amp;") in page


def test_suspects_of_several_deliveries_newest_first(delivery, tmp_path):
    folder, scores = delivery
    older = (make_verdict(7), scores, folder)
    newer = (make_verdict(9), scores.drop(columns="label"), folder)
    page = write_suspects_page([older, newer], None, tmp_path / "all.html").read_text()
    assert page.index("Delivery 2026-01-09") < page.index("Delivery 2026-01-07")
    assert page.count("<th>reviewed label</th>") == 1


def test_suspects_need_the_score_column(delivery):
    _, scores = delivery
    with pytest.raises(ValueError, match=r"lack the column\(s\) \['score'\]"):
        suspect_listings(scores.drop(columns="score"), 0.5)


# The Evidently UI workspace.


def test_reports_added_to_the_workspace_read_back_once_per_run(evidently_run, tmp_path):
    snapshot, _ = evidently_run
    workspace = tmp_path / "evidently"
    snapshot_file = tmp_path / "snapshot.json"
    snapshot_file.write_text(snapshot.dumps())

    first = add_report(snapshot, make_verdict(8), workspace)
    # A retry of the same run replaces its report.
    assert add_report(snapshot_file, make_verdict(8), workspace) == first
    add_report(snapshot, quiet(9), workspace)

    runs = workspace_runs(workspace)
    assert [run["name"] for run in runs] == [
        "2026-01-08 (scheduled__2026-01-08T00:00:00+00:00)",
        "2026-01-09 (scheduled__2026-01-09T00:00:00+00:00)",
    ]
    assert runs[0]["id"] == str(first)
    assert {"drift", "retrain", "fired score", "model abcd1234-5678"} <= set(runs[0]["tags"])
    assert "no drift" in runs[1]["tags"]
    assert runs[0]["metadata"]["next_step"] == "retrain started"
    assert json.loads(runs[0]["metadata"]["listings"]) == 360
    assert runs[0]["timestamp"] == pd.Timestamp("2026-01-08").to_pydatetime()
    assert runs[0]["metrics"] >= 1
    # The dashboard plots the report's metric over the runs: one panel, added once.
    from evidently.ui.workspace import Workspace

    from pmatch.monitor.workspace import project_id

    dashboard = Workspace(str(workspace)).get_dashboard(project_id())
    assert [panel.title for panel in dashboard.panels] == ["Value drift for score"]
    assert [tab.title for tab in dashboard.tabs] == ["Signals"]


def test_workspace_refuses_results_json(evidently_run, tmp_path):
    snapshot, _ = evidently_run
    results = tmp_path / "drift.json"
    snapshot.save_json(str(results))
    with pytest.raises(ValueError, match="not a saved Evidently snapshot"):
        add_report(results, make_verdict(8), tmp_path / "evidently")
