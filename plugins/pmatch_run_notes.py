"""An Airflow listener that writes each pmatch_retrain run's `reason` into the run's note.

The reason comes from the trigger form, the REST API's conf or the monitoring DAG's trigger
(which names the drift signals that fired); a scheduled or asset-triggered run gets the
DAG's default. The scheduler calls the listener when it starts a run, so the note shows in
the grid view before the first task runs (pmatch.run_notes has the rule).
"""

from __future__ import annotations

import sys

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from pmatch.run_notes import run_note


@hookimpl
def on_dag_run_running(dag_run, msg: str) -> None:
    note = run_note(dag_run.dag_id, dag_run.conf, dag_run.note)
    if note is not None:
        # The scheduler's session holds dag_run and commits the note with the run's state.
        dag_run.note = note


class PmatchRunNotes(AirflowPlugin):
    name = "pmatch_run_notes"
    listeners = [sys.modules[__name__]]
