"""What an Airflow task needs from Airflow: its run's id and date, and the S3 connection."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, MutableMapping
from datetime import datetime

log = logging.getLogger(__name__)

# The setting naming the Airflow connection that holds pmatch's S3 endpoint and credentials.
CONNECTION_SETTING = "PMATCH_AIRFLOW_CONN_ID"
DEFAULT_CONNECTION_ID = "pmatch_s3"


def run_date(context: Mapping) -> datetime:
    """The run's date: its logical date, else the time it was due, dag_run.run_after.

    A run triggered over the REST API without a logical date (the API's default) has none,
    and then its context has no `ds` either.

    context: the task's Airflow context (`**context` of a @task function).
    """
    logical_date = context.get("logical_date")
    if logical_date is not None:
        return logical_date
    dag_run = context.get("dag_run")
    if dag_run is None or getattr(dag_run, "run_after", None) is None:
        raise ValueError(
            "The task context has neither a logical_date nor dag_run.run_after; "
            "pass the context of an Airflow task (`def task(**context)`)."
        )
    return dag_run.run_after


def run_day(context: Mapping) -> str:
    """The run's date as YYYY-MM-DD (what `ds` holds when the run has a logical date).

    context: the task's Airflow context.
    """
    return run_date(context).strftime("%Y-%m-%d")


def run_id_and_date(context: Mapping) -> tuple[str, datetime]:
    """The run's id and date (see run_date).

    context: the task's Airflow context.
    """
    return context["run_id"], run_date(context)


def log_run_params(context: Mapping) -> dict:
    """Logs why the run happened (the `reason` and `force` params, which the run's conf
    overrides) and returns them, so every task's log says it.

    context: the task's Airflow context.
    """
    params = context.get("params") or {}
    run_params = {
        "reason": params.get("reason") or "unspecified",
        "force": bool(params.get("force")),
    }
    log.info(
        "Run %s: reason %r, force %s",
        context.get("run_id"),
        run_params["reason"],
        run_params["force"],
    )
    return run_params


def use_airflow_s3_connection(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Points pmatch at the S3 of an Airflow connection, when one is defined; call it inside a
    task, before pmatch.pipeline opens the registry (never at DAG parse time).

    The connection (Amazon provider, conn type `aws`) is the one PMATCH_AIRFLOW_CONN_ID
    names (default `pmatch_s3`): its extra's `endpoint_url` becomes PMATCH_S3_ENDPOINT_URL,
    its login and password (or the extra's keys, as the provider reads them)
    AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN), its extra's
    `region_name` AWS_REGION. A field the connection leaves empty keeps the environment's
    value. Without such a connection nothing changes, and pmatch reads the environment as the
    CLI does. The task process, and what it starts (dvc, the smoke test), sees the values.

    environ: the environment to update (default: this process's).
    Returns the connection id used, or None when there is none.
    """
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    environ = os.environ if environ is None else environ
    connection_id = environ.get(CONNECTION_SETTING, "").strip() or DEFAULT_CONNECTION_ID
    try:
        connection = Connection.get(connection_id)
    except AirflowNotFoundException:
        log.info("No Airflow connection %r: S3 settings come from the environment", connection_id)
        return None
    from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper

    # The provider's own reading of the connection, so its documented fields all work.
    aws = AwsConnectionWrapper(connection)
    values = {
        "PMATCH_S3_ENDPOINT_URL": aws.endpoint_url,
        "AWS_ACCESS_KEY_ID": aws.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": aws.aws_secret_access_key,
        "AWS_SESSION_TOKEN": aws.aws_session_token,
        "AWS_REGION": aws.region_name,
    }
    exported = {name: value for name, value in values.items() if value}
    if aws.aws_access_key_id and not aws.aws_session_token:
        # A session token from the environment belongs to other keys and would break these.
        environ.pop("AWS_SESSION_TOKEN", None)
    environ.update(exported)
    # Names only: the values include secrets.
    log.info(
        "S3 from Airflow connection %r (endpoint %s); set %s",
        connection_id,
        aws.endpoint_url or "(the environment's)",
        ", ".join(sorted(exported)) or "nothing",
    )
    return connection_id
