"""The local S3 server: boto3 round trips, multipart uploads, persistence, clear errors."""

from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig

from pmatch import s3server
from pmatch.s3server import (
    LOCAL_CREDENTIALS,
    LocalS3Server,
    LocalS3ServerError,
    ensure_bucket,
    s3_client,
)

pytestmark = pytest.mark.integration

BUCKET = "pmatch-test"
MEBIBYTE = 1024 * 1024


def free_port() -> int:
    """Return a loopback port nothing listens on, as chosen by the kernel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(autouse=True)
def local_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Sign with s3rver's account and keep any real AWS profile out of the tests."""
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "s3"


@pytest.fixture
def server(data_dir: Path):
    with LocalS3Server(data_dir, port=free_port()) as running_server:
        yield running_server


def test_put_get_list_head_round_trip(server: LocalS3Server) -> None:
    client = s3_client(server.endpoint_url)
    assert ensure_bucket(client, BUCKET) is True
    assert ensure_bucket(client, BUCKET) is False, "an existing bucket is left alone"

    client.put_object(Bucket=BUCKET, Key="models/v1/model.keras", Body=b"weights")
    client.put_object(Bucket=BUCKET, Key="models/LATEST", Body=b"v1")

    body = client.get_object(Bucket=BUCKET, Key="models/v1/model.keras")["Body"].read()
    assert body == b"weights"

    listing = client.list_objects_v2(Bucket=BUCKET, Prefix="models/")
    assert sorted(item["Key"] for item in listing["Contents"]) == [
        "models/LATEST",
        "models/v1/model.keras",
    ]

    head = client.head_object(Bucket=BUCKET, Key="models/LATEST")
    assert head["ContentLength"] == 2

    client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": "models/LATEST"}]})
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix="models/")
    assert [item["Key"] for item in listing["Contents"]] == ["models/v1/model.keras"]


def test_listings_longer_than_one_page_continue(server: LocalS3Server) -> None:
    """A truncated listing's continuation token works (s3rver needs Node's legacy OpenSSL
    provider for it); DVC's remote lists thousands of objects this way."""
    client = s3_client(server.endpoint_url)
    ensure_bucket(client, BUCKET)
    keys = [f"paged/{index:02d}" for index in range(5)]
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="paged/", PaginationConfig={"PageSize": 2}
    )
    listed = [item["Key"] for page in pages for item in page.get("Contents", [])]
    assert listed == keys


def test_multipart_upload_file_round_trips_byte_identical(
    server: LocalS3Server, tmp_path: Path
) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(random.Random(7).randbytes(12 * MEBIBYTE))
    client = s3_client(server.endpoint_url)
    ensure_bucket(client, BUCKET)
    uploaded_part_numbers: list[int] = []
    client.meta.events.register(
        "before-parameter-build.s3.UploadPart",
        lambda params, **_: uploaded_part_numbers.append(params["PartNumber"]),
    )

    # 5 MiB parts (the S3 minimum) split 12 MiB into three parts.
    transfer = TransferConfig(multipart_threshold=5 * MEBIBYTE, multipart_chunksize=5 * MEBIBYTE)
    client.upload_file(str(source), BUCKET, "models/v2/model.bin", Config=transfer)

    # s3rver's ETag for a multipart object is the MD5 of the whole object, unlike AWS's
    # "<md5 of part md5s>-<parts>", so the parts are counted on the client instead.
    assert sorted(uploaded_part_numbers) == [1, 2, 3]
    head = client.head_object(Bucket=BUCKET, Key="models/v2/model.bin")
    assert head["ContentLength"] == 12 * MEBIBYTE

    downloaded = tmp_path / "downloaded.bin"
    client.download_file(BUCKET, "models/v2/model.bin", str(downloaded))
    assert sha256_of(downloaded) == sha256_of(source)


def test_objects_persist_across_server_restarts(data_dir: Path) -> None:
    port = free_port()
    with LocalS3Server(data_dir, port=port) as first_server:
        client = s3_client(first_server.endpoint_url)
        ensure_bucket(client, BUCKET)
        client.put_object(Bucket=BUCKET, Key="models/LATEST", Body=b"v7")
    assert not first_server.running

    with LocalS3Server(data_dir, port=port) as second_server:
        client = s3_client(second_server.endpoint_url)
        assert ensure_bucket(client, BUCKET) is False
        body = client.get_object(Bucket=BUCKET, Key="models/LATEST")["Body"].read()
        assert body == b"v7"


def test_busy_port_fails_naming_the_port_and_the_setting(
    server: LocalS3Server, tmp_path: Path
) -> None:
    second_server = LocalS3Server(tmp_path / "other", port=server.port)
    try:
        with pytest.raises(LocalS3ServerError) as raised:
            second_server.start()
    finally:
        second_server.stop()
    message = str(raised.value)
    assert f"Port {server.port}" in message
    assert "PMATCH_LOCAL_S3_PORT" in message
    assert not second_server.running
    # The first server is untouched by the failed attempt.
    assert ensure_bucket(s3_client(server.endpoint_url), BUCKET) is True


def test_port_taken_after_the_check_still_names_the_port(
    server: LocalS3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Skipping the early check reproduces another program grabbing the port between
    # the check and s3rver's own listen call.
    monkeypatch.setattr(s3server, "_port_is_free", lambda host, port: True)
    second_server = LocalS3Server(tmp_path / "other", port=server.port)
    try:
        with pytest.raises(LocalS3ServerError, match="PMATCH_LOCAL_S3_PORT") as raised:
            second_server.start()
    finally:
        second_server.stop()
    assert str(second_server.log_path) in str(raised.value)
    assert not second_server.running


def test_wrong_credentials_are_refused_with_a_hint(
    server: LocalS3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEREALKEY")
    with pytest.raises(PermissionError, match="AWS_ACCESS_KEY_ID=S3RVER"):
        ensure_bucket(s3_client(server.endpoint_url), BUCKET)


def test_missing_install_says_to_run_setup(tmp_path: Path) -> None:
    unset_up = LocalS3Server(tmp_path / "s3", port=free_port(), tools_dir=tmp_path / "tools")
    with pytest.raises(RuntimeError, match="make setup"):
        unset_up.start()
