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
    order = ["check", "validate", "preprocess", "train", "evaluate", "gate", "deploy"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert dag.get_task(upstream).downstream_task_ids == {downstream}
    assert dag.doc_md and "dvc repro" in dag.doc_md


def test_retrain_runs_weekly_or_on_a_new_catalogue_and_emits_the_model(dag_bag):
    from airflow.sdk import Asset, AssetOrTimeSchedule

    dag = dag_bag.dags["pmatch_retrain"]
    assert isinstance(dag.timetable, AssetOrTimeSchedule)
    assert dag.timetable.asset_condition == Asset(name="pmatch_catalog")
    assert dag.timetable.timetable.expression == "0 0 * * 0"  # @weekly
    assert dag.get_task("deploy").outlets == [Asset(name="pmatch_model")]
    assert "pmatch_catalog" in dag.doc_md


def test_retrain_params_default_to_a_scheduled_unforced_run(dag_bag):
    params = dag_bag.dags["pmatch_retrain"].params
    assert params["reason"] == "scheduled"
    assert params["force"] is False
    assert "dvc repro --force" in params.get_param("force").description


@pytest.mark.parametrize("dag_id", ["pmatch_retrain", "pmatch_monitor", "pmatch_ingest"])
def test_every_task_has_a_timeout_a_doc_and_the_failure_notifier(dag_bag, dag_id):
    from pmatch_notifiers import FailureLogNotifier

    dag = dag_bag.dags[dag_id]
    assert dag.dagrun_timeout is not None
    assert isinstance(dag.on_failure_callback, FailureLogNotifier)
    for task in dag.tasks:
        assert task.execution_timeout is not None, task.task_id
        assert task.doc_md, task.task_id
        assert any(isinstance(c, FailureLogNotifier) for c in task.on_failure_callback), (
            task.task_id
        )


@pytest.mark.parametrize(
    ("dag_id", "task_id", "retried"),
    [
        ("pmatch_retrain", "snapshot", True),
        ("pmatch_retrain", "check", True),
        # A stage task pulls its inputs and pushes its outputs through S3 (retried); a
        # stage that fails itself raises AirflowFailException, which no retry follows.
        ("pmatch_retrain", "validate", True),
        ("pmatch_retrain", "preprocess", True),
        ("pmatch_retrain", "train", True),
        ("pmatch_retrain", "evaluate", True),
        ("pmatch_retrain", "gate", True),
        ("pmatch_retrain", "deploy", True),
        ("pmatch_monitor", "monitor", True),
        ("pmatch_ingest", "pending", False),
        ("pmatch_ingest", "ingest", True),
    ],
)
def test_only_tasks_that_can_fail_transiently_retry_with_backoff(dag_bag, dag_id, task_id, retried):
    task = dag_bag.dags[dag_id].get_task(task_id)
    if retried:
        assert task.retries >= 1
        # Airflow 3.3 reads this as a multiplier: True (1) would keep the delay constant.
        assert task.retry_exponential_backoff > 1
        assert task.max_retry_delay is not None
    else:
        assert task.retries == 0


def test_ingest_finds_a_pending_delivery_then_emits_the_catalogue(dag_bag):
    from airflow.sdk import Asset

    dag = dag_bag.dags["pmatch_ingest"]
    assert dag.get_task("pending").downstream_task_ids == {"ingest"}
    assert dag.get_task("ingest").outlets == [Asset(name="pmatch_catalog")]
    assert dag.params["delivery"] == ""
    assert "skipped" in dag.doc_md and "pmatch_catalog" in dag.doc_md


def test_monitor_runs_on_the_catalogue_asset_and_triggers_retrain_when_decided(dag_bag):
    dag = dag_bag.dags["pmatch_monitor"]
    trigger = dag.get_task("trigger_retrain")
    assert trigger.trigger_dag_id == "pmatch_retrain"
    assert dag.get_task("retrain_decided").downstream_task_ids == {"retrain_conf"}
    assert dag.get_task("retrain_conf").downstream_task_ids == {"trigger_retrain"}
    assert dag.get_task("find_delivery").downstream_task_ids == {"monitor"}
    assert "delivery" in dag.params and "batch" not in dag.params
    # The retrain's conf (the verdict's reason, force from force_retrain) is retrain_conf's
    # return value, not a template.
    assert trigger.conf.operator.task_id == "retrain_conf"
    assert dag.params["force_retrain"] is False
    assert [asset.name for asset in dag.timetable.asset_condition.objects] == ["pmatch_catalog"]
    # Finding the delivery never retries: no delivery is a skip, not a transient failure.
    assert dag.get_task("find_delivery").retries == 0


@pytest.mark.parametrize("name", ["pmatch_retrain.py", "pmatch_monitor.py", "pmatch_ingest.py"])
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
