"""The project's DVC remote `pmatch`: data versions kept on the registry's S3, beside the models."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

from pmatch.config import Settings

REMOTE_NAME = "pmatch"
# The prefix of the bucket that holds DVC's content-addressed files (beside the registry's).
REMOTE_PREFIX = "dvc"
# Lines of DVC's output an error quotes.
QUOTED_LINES = 20


class DvcRemoteError(RuntimeError):
    """A `dvc push` or `dvc pull` failed; the message names the remote and DVC's last words."""


def remote_url(settings: Settings) -> str:
    """s3://<bucket>/dvc: the DVC remote on the same S3 bucket as the model registry."""
    return f"s3://{settings.s3_bucket}/{REMOTE_PREFIX}"


def configure_remote(project_root: str | Path, settings: Settings) -> str:
    """Writes the remote `pmatch` (s3://<bucket>/dvc, the settings' endpoint and region) into
    the project's .dvc/config.local and makes it the default remote; returns its URL.

    project_root: a DVC project (holds .dvc/). settings: an endpoint already resolved (for the
    embedded server, the one pmatch.storage.s3_settings yields), since its port comes from the
    settings at run time; config.local is not committed, so each machine writes its own.
    Credentials are not written: DVC reads them from the standard AWS chain (environment).
    """
    from dvc.config import Config

    dvc_dir = Path(project_root) / ".dvc"
    if not dvc_dir.is_dir():
        raise DvcRemoteError(
            f"{Path(project_root).resolve()}: not a DVC project (no .dvc/); run `dvc init` "
            "there, or run pmatch from the project root"
        )
    url = remote_url(settings)
    remote = {"url": url, "region": settings.aws_region}
    if settings.s3_endpoint_url:
        remote["endpointurl"] = settings.s3_endpoint_url
    with Config(dvc_dir=str(dvc_dir), validate=False).edit("local") as config:
        config["remote"][REMOTE_NAME] = remote
        config["core"]["remote"] = REMOTE_NAME
    return url


def _run_dvc(project_root: Path, verb: str, targets: list[str]) -> None:
    """Runs `dvc <verb> -r pmatch <targets>` with this interpreter, echoing its output."""
    command = [sys.executable, "-m", "dvc", verb, "-r", REMOTE_NAME, *targets]
    environment = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    tail: collections.deque[str] = collections.deque(maxlen=QUOTED_LINES)
    with subprocess.Popen(
        command,
        cwd=project_root,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
            tail.append(line.rstrip())
    if process.returncode != 0:
        said = "\n".join(f"    {line}" for line in tail)
        raise DvcRemoteError(
            f"dvc {verb} to remote {REMOTE_NAME!r} failed (exit {process.returncode}) in "
            f"{project_root}; check that the S3 endpoint in .dvc/config.local answers and the "
            f"bucket exists (pmatch.dvc_remote.configure_remote writes both). DVC said:\n{said}"
        )


def push(project_root: str | Path, targets: list[str]) -> None:
    """`dvc push -r pmatch <targets>` in project_root (targets: .dvc files or stage outputs)."""
    _run_dvc(Path(project_root), "push", list(targets))


def pull(project_root: str | Path, targets: list[str]) -> None:
    """`dvc pull -r pmatch <targets>` in project_root: restores those versions from S3."""
    _run_dvc(Path(project_root), "pull", list(targets))
