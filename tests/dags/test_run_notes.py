"""A pmatch_retrain run's reason becomes its note, through the plugin's listener."""

from __future__ import annotations

from types import SimpleNamespace

# Importing Airflow puts plugins/ (AIRFLOW__CORE__PLUGINS_FOLDER, set by tests/conftest.py)
# on sys.path, as in the scheduler.
import airflow.sdk  # noqa: F401
import pmatch_run_notes

from pmatch.run_notes import NOTE_LIMIT, run_note


def test_the_reason_or_the_default_becomes_the_note():
    assert run_note("pmatch_retrain", {"reason": "drift: score, dark photos"}, None) == (
        "reason: drift: score, dark photos"
    )
    # A scheduled or asset-triggered run has no conf: the reason param's default.
    assert run_note("pmatch_retrain", {}, None) == "reason: scheduled"
    assert run_note("pmatch_retrain", {"reason": "x", "force": True}, None) == (
        "reason: x (forced: retrain even if nothing changed)"
    )


def test_a_person_s_note_is_kept_and_a_note_is_written_once():
    note = run_note("pmatch_retrain", {"reason": "new photos"}, "triggered by Ana")
    assert note == "triggered by Ana\n\nreason: new photos"
    assert run_note("pmatch_retrain", {"reason": "new photos"}, note) is None
    assert run_note("pmatch_monitor", {"reason": "x"}, None) is None


def test_a_long_reason_is_cut_to_airflow_s_limit():
    note = run_note("pmatch_retrain", {"reason": "s" * 2000}, None)
    assert len(note) == NOTE_LIMIT and note.endswith("…")


def test_the_listener_sets_the_note_of_a_starting_run():
    run = SimpleNamespace(dag_id="pmatch_retrain", conf={"reason": "drift"}, note=None)
    pmatch_run_notes.on_dag_run_running(run, "started")
    assert run.note == "reason: drift"
    other = SimpleNamespace(dag_id="pmatch_monitor", conf={}, note=None)
    pmatch_run_notes.on_dag_run_running(other, "started")
    assert other.note is None


def test_the_plugin_registers_the_listener_with_airflow():
    from airflow.listeners.listener import get_listener_manager

    registered = get_listener_manager().pm.get_plugins()
    assert any(getattr(plugin, "__name__", "") == "pmatch_run_notes" for plugin in registered)
