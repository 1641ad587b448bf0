"""Airflow 3's REST API as an operator calls it: a JWT from /auth/token, JSON in and out."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

FINISHED = ("success", "failed")


class AirflowApi:
    """Calls base_url's REST API as user with password (SimpleAuthManager)."""

    def __init__(self, base_url: str, password: str, user: str = "admin"):
        self.base_url = base_url
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.token = None
        self.token = self.call("POST", "/auth/token", {"username": user, "password": password})[
            "access_token"
        ]

    def call(self, method: str, path: str, body: dict | None = None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data, headers, method=method)
        with self.opener.open(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def wait_for_dag(self, dag_id: str, timeout: float) -> None:
        """Waits until the DAG processor has parsed dag_id."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("GET", f"/api/v2/dags/{dag_id}")
                return
            except urllib.error.HTTPError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{dag_id} was not parsed within {timeout:g} s") from None
                time.sleep(2)

    def trigger(self, dag_id: str, logical_date: str | None = None, conf: dict | None = None):
        """Triggers a run; logical_date None is the REST API's default (no logical date)."""
        body = {"logical_date": logical_date, "conf": conf or {}}
        return self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)

    def run_path(self, dag_id: str, run_id: str) -> str:
        return f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id)}"

    def wait_for_run(self, dag_id: str, run_id: str, deadline: float) -> tuple[str, dict]:
        """Follows a run until it ends or time.monotonic() passes deadline; returns its state
        and its task instances by task id."""
        path = self.run_path(dag_id, run_id)
        while (state := self.call("GET", path)["state"]) not in FINISHED:
            if time.monotonic() > deadline:
                raise AssertionError(f"{dag_id} run {run_id} still {state}: {self.tasks(path)}")
            time.sleep(3)
        return state, self.tasks(path)

    def tasks(self, run_path: str) -> dict:
        instances = self.call("GET", run_path + "/taskInstances")["task_instances"]
        return {each["task_id"]: each for each in instances}
