"""Connects to the model registry's S3, starting the embedded local server when none is set."""

from __future__ import annotations

import contextlib
import dataclasses
import os

from pmatch.config import Settings

# Endpoints of the embedded servers s3_settings is running now. Only their buckets are
# created on demand: anywhere else a missing bucket is more likely a typo in
# PMATCH_S3_BUCKET than a wish for a new, empty registry.
_EMBEDDED_ENDPOINTS: set[str] = set()


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
        _EMBEDDED_ENDPOINTS.add(server.endpoint_url)
        try:
            yield dataclasses.replace(settings, s3_endpoint_url=server.endpoint_url)
        finally:
            _EMBEDDED_ENDPOINTS.discard(server.endpoint_url)


def started_embedded_server(settings: Settings) -> bool:
    """Whether settings point at an embedded server that s3_settings started in this process."""
    return bool(settings.s3_endpoint_url) and settings.s3_endpoint_url in _EMBEDDED_ENDPOINTS


def open_registry(settings: Settings, create_bucket: bool | None = None):
    """The registry settings name. create_bucket: None creates a missing bucket only on the
    embedded server that s3_settings started; elsewhere a missing bucket is a RegistryError."""
    from pmatch.registry import ModelRegistry

    if create_bucket is None:
        create_bucket = started_embedded_server(settings)
    return ModelRegistry.from_settings(settings, create_bucket=create_bucket)
