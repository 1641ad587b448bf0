"""Airflow notifiers for pmatch's DAGs: a failure log file, the embedded default alert."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import BaseNotifier

# The setting naming the failure log; by default it is AIRFLOW_HOME/pmatch_failures.jsonl.
FAILURE_LOG_SETTING = "PMATCH_FAILURE_LOG"


def failure_log_path() -> Path:
    """Where FailureLogNotifier appends: PMATCH_FAILURE_LOG, else
    $AIRFLOW_HOME/pmatch_failures.jsonl (AIRFLOW_HOME defaulting to ~/airflow, as Airflow's)."""
    configured = os.environ.get(FAILURE_LOG_SETTING, "").strip()
    if configured:
        return Path(configured).expanduser()
    airflow_home = os.environ.get("AIRFLOW_HOME", "").strip() or "~/airflow"
    return Path(airflow_home).expanduser() / "pmatch_failures.jsonl"


class FailureLogNotifier(BaseNotifier):
    """Appends one JSON line per failure to the failure log (see failure_log_path) and logs it.

    Used as `on_failure_callback` of a task (`scope` "task": the line names the task, its
    try, the exception and the task's log URL) or of a DAG (`scope` "run": a failed or
    timed-out run; `reason` says why, the task fields name the last failed task, if any). To alert by mail or Slack instead, or as well, pass the
    providers' notifiers, configured through an Airflow connection, next to this one, e.g.
    `SmtpNotifier(to=..., smtp_conn_id="smtp_default")` from
    airflow.providers.smtp.notifications.smtp (installed), or the Slack provider's
    `SlackNotifier(slack_conn_id=..., channel=...)` once apache-airflow-providers-slack is.

    path: the file to append to (default: failure_log_path() when the failure happens).
    """

    def __init__(self, path: str | os.PathLike | None = None):
        super().__init__()
        self.path = path

    def render_template_fields(self, context, jinja_env=None) -> None:
        # Nothing here is a template. Airflow's rendering asks the context's DAG for a Jinja
        # environment, which a run-level callback's DAG (a SerializedDAG under dag.test())
        # does not have, and the failure would go unrecorded.
        return None

    def notify(self, context) -> None:
        record = failure_record(context)
        path = Path(self.path) if self.path else failure_log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write per line, in append mode: concurrent failures do not interleave lines.
        with path.open("a", encoding="utf-8") as log_file:
            log_file.write(json.dumps(record, default=str) + "\n")
        self.log.error(
            "pmatch %s failure: dag %s, task %s, run %s, try %s: %s (log: %s; recorded in %s)",
            record["scope"],
            record["dag_id"],
            record["task_id"],
            record["run_id"],
            record["try_number"],
            record["exception"],
            record["log_url"],
            path,
        )


def failure_record(context) -> dict:
    """The failure's JSON record from an Airflow callback's context (a task's or a DAG's)."""
    task_instance = context.get("ti") or context.get("task_instance")
    dag_run = context.get("dag_run")
    dag = context.get("dag")
    exception = context.get("exception")
    if isinstance(exception, BaseException):
        exception = f"{type(exception).__name__}: {exception}"
    log_url = None
    if task_instance is not None:
        try:
            log_url = task_instance.log_url
        except Exception:  # The URL is a convenience; the record matters more.
            log_url = None
    return {
        # Airflow passes a `reason` to a DAG's callbacks only.
        "scope": "run" if "reason" in context else "task",
        "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dag_id": getattr(task_instance, "dag_id", None)
        or getattr(dag_run, "dag_id", None)
        or getattr(dag, "dag_id", None),
        "task_id": getattr(task_instance, "task_id", None),
        "run_id": context.get("run_id") or getattr(dag_run, "run_id", None),
        "try_number": getattr(task_instance, "try_number", None),
        "exception": None if exception is None else str(exception),
        "reason": context.get("reason"),
        "log_url": log_url,
    }
