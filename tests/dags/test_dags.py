"""Both DAGs load without errors, import fast and clean, and wire the stages in order."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT, run


@pytest.fixture(scope="module")
def dag_bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_dags_load_without_import_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert {"pmatch_retrain", "pmatch_monitor"} <= set(dag_bag.dags)


def test_retrain_runs_the_stages_in_order(dag_bag):
    dag = dag_bag.dags["pmatch_retrain"]
    order = ["validate", "preprocess", "train", "evaluate", "gate", "deploy"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    assert dag.doc_md and "dvc repro" in dag.doc_md
    assert dag.schedule == "@weekly"


def test_monitor_triggers_retrain(dag_bag):
    dag = dag_bag.dags["pmatch_monitor"]
    trigger = dag.get_task("trigger_retrain")
    assert trigger.trigger_dag_id == "pmatch_retrain"
    assert dag.get_task("drift_detected").downstream_task_ids == {"trigger_retrain"}
    assert "batch" in dag.params
    assert dag.schedule == "@daily"


@pytest.mark.parametrize("name", ["pmatch_retrain.py", "pmatch_monitor.py"])
def test_dag_files_import_without_heavy_libraries(name):
    """Parsing a DAG file must not import TensorFlow, Great Expectations or Evidently."""
    code = (
        "import runpy, sys; runpy.run_path(sys.argv[1]); "
        "print(sorted(m for m in ('tensorflow', 'keras', 'great_expectations', 'evidently', "
        "'pandas') if m in sys.modules))"
    )
    result = run([sys.executable, "-c", code, str(ROOT / "dags" / name)], ROOT)
    heavy = result.stdout.strip().splitlines()[-1]
    assert (
        "tensorflow" not in heavy and "great_expectations" not in heavy and "evidently" not in heavy
    ), heavy
