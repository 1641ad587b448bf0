"""The note a pmatch_retrain run carries in Airflow: its `reason`.

plugins/pmatch_run_notes.py writes it when the scheduler starts a run; the main job writes
it for the runs it runs with `dag.test()`, which no scheduler starts.
"""

from __future__ import annotations

# The DAG whose runs carry a reason, and the reason of a run whose conf names none (a
# scheduled or asset-triggered run): the default of the DAG's `reason` param.
RETRAIN_DAG_ID = "pmatch_retrain"
DEFAULT_REASON = "scheduled"
# Airflow stores notes of at most 1,000 characters.
NOTE_LIMIT = 1000


def run_note(dag_id: str, conf: dict | None, note: str | None) -> str | None:
    """The note dag_id's run with this conf should carry, or None when its current note
    needs no change. A note a person wrote when triggering is kept, the reason below it."""
    if dag_id != RETRAIN_DAG_ID:
        return None
    conf = conf or {}
    line = f"reason: {str(conf.get('reason') or DEFAULT_REASON).strip()}"
    if conf.get("force"):
        line += " (forced: retrain even if nothing changed)"
    if note and line in note:
        return None
    text = f"{note.rstrip()}\n\n{line}" if note else line
    return text if len(text) <= NOTE_LIMIT else text[: NOTE_LIMIT - 1] + "…"
