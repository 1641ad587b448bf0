"""Connects to the model registry's S3, starting the embedded local server when none is set."""

from __future__ import annotations

import contextlib
import dataclasses
import os

from pmatch.config import Settings


@contextlib.contextmanager
def s3_settings(settings: Settings):
    """Yields settings with an S3 endpoint that answers.

    With PMATCH_S3_ENDPOINT_URL set, that endpoint (AWS, MinIO...) is used as it is, with
    credentials from the standard AWS chain. Without it, pmatch's embedded S3 server is
    started on loopback over settings.local_s3_dir (objects persist there between runs)
    and stopped on exit; its fixed local credentials are put in this process's environment.
    """
    if settings.s3_endpoint_url:
        yield settings
        return
    from pmatch.s3server import LOCAL_CREDENTIALS, LocalS3Server

    directory = settings.local_s3_dir
    if not directory.is_absolute():
        directory = settings.project_dir / directory
    os.environ.update(LOCAL_CREDENTIALS)
    with LocalS3Server(directory, port=settings.local_s3_port) as server:
        yield dataclasses.replace(settings, s3_endpoint_url=server.endpoint_url)


def open_registry(settings: Settings):
    from pmatch.registry import ModelRegistry

    return ModelRegistry.from_settings(settings)
