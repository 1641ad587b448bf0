"""The model registry against the real local S3 server: faults an operator meets, one per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pmatch.config import Settings
from pmatch.registry import (
    LOCK_FILE,
    ModelRegistry,
    PromotionConflict,
    RegistryError,
    file_sha256,
    folder_sha256,
    version_id,
)
from pmatch.s3server import LOCAL_CREDENTIALS, LocalS3Server, ensure_bucket, s3_client
from tests.conftest import ROOT, free_port

BUCKET = "pmatch-registry-test"
WHEN = "2026-11-02T03:00:00+00:00"


@pytest.fixture
def credentials(monkeypatch, tmp_path):
    """Sign with the embedded server's account; keep any real AWS profile out."""
    for name, value in LOCAL_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def registry(local_s3, credentials):
    """A registry of its own (a fresh prefix) in the session's local S3 server."""
    client = s3_client(local_s3)
    ensure_bucket(client, BUCKET)
    return ModelRegistry(client, BUCKET, f"test-{uuid.uuid4().hex[:8]}")


def model_files(folder: Path, seed: str, size: int = 2048) -> dict[str, Path]:
    """A small version's files: a model, its vocabulary and a canary photo under canary/."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "model.keras": folder / "model.keras",
        "vocab.json": folder / "vocab.json",
        "canary/photo-1.jpg": folder / "photo-1.jpg",
    }
    files["model.keras"].write_bytes((seed.encode() * size)[:size])
    files["vocab.json"].write_text(json.dumps({"seed": seed}))
    files["canary/photo-1.jpg"].write_bytes(bytes(range(256)) + seed.encode())
    return files


def publish(registry, folder: Path, seed: str, created_at: str = WHEN) -> str:
    files = model_files(folder / seed, seed)
    version = version_id(folder_sha256(files), file_sha256(files["vocab.json"]))
    registry.publish(version, files, {"created_at": created_at, "f1": 0.8})
    return version


def objects(registry, *parts) -> dict[str, dict]:
    listing = registry.client.list_objects_v2(
        Bucket=registry.bucket, Prefix=registry.key(*parts) + "/"
    )
    return {item["Key"]: item for item in listing.get("Contents", [])}


def test_the_version_id_comes_from_the_content():
    assert version_id("a" * 64, "b" * 64) == "aaaaaaaaaaaaaaaa-bbbbbbbb"
    assert version_id("a" * 64, "b" * 64) == version_id("a" * 64, "b" * 64)


def test_publishing_the_same_version_twice_creates_nothing_the_second_time(registry, tmp_path):
    files = model_files(tmp_path / "one", "one")
    uri, created = registry.publish("v1", files, {"created_at": WHEN})
    assert created and uri == registry.uri("models", "v1")
    before = objects(registry, "models", "v1")

    uri, created = registry.publish("v1", files, {"created_at": WHEN})

    assert created is False
    assert objects(registry, "models", "v1") == before, "nothing was uploaded again"
    manifest = registry.manifest("v1")
    assert manifest["files"]["canary/photo-1.jpg"] == file_sha256(files["canary/photo-1.jpg"])
    assert [each["version"] for each in registry.versions()] == ["v1"]


def test_a_complete_version_is_immutable(registry, tmp_path):
    registry.publish("v1", model_files(tmp_path / "one", "one"), {})
    with pytest.raises(RegistryError, match=r"immutable.*model\.keras"):
        registry.publish("v1", model_files(tmp_path / "two", "two"), {})


def test_a_publish_killed_midway_leaves_no_manifest_and_its_retry_completes(credentials, tmp_path):
    files = model_files(tmp_path / "files", "crash")
    port = free_port()
    data = tmp_path / "s3"
    with LocalS3Server(data, port=port) as server:
        client = s3_client(server.endpoint_url)
        ensure_bucket(client, BUCKET)
        registry = ModelRegistry(client, BUCKET, "crash")
        uploads = []

        def kill_after_two(**_):
            uploads.append(1)
            if len(uploads) == 2:
                server.stop()

        client.meta.events.register("after-call.s3.PutObject", kill_after_two)
        with pytest.raises(RegistryError, match=f"cannot reach S3 at {server.endpoint_url}"):
            registry.publish("v1", files, {"created_at": WHEN})

    with LocalS3Server(data, port=port) as server:
        client = s3_client(server.endpoint_url)
        registry = ModelRegistry(client, BUCKET, "crash")
        # Two of three files made it, the manifest did not: the version is not visible.
        assert len(objects(registry, "models", "v1")) == 2
        assert registry.manifest("v1") is None
        assert registry.versions() == []
        written = []
        client.meta.events.register(
            "before-parameter-build.s3.PutObject", lambda params, **_: written.append(params["Key"])
        )

        uri, created = registry.publish("v1", files, {"created_at": WHEN})

        assert created is True
        # The retry uploaded only the missing file, then the manifest, last.
        # (The conditional-write probe under locks/ is not part of the version.)
        assert [key for key in written if "/models/" in key] == [
            registry.key("models", "v1", "vocab.json"),
            registry.key("models", "v1", "manifest.json"),
        ]
        assert registry.manifest("v1")["files"] == {
            name: file_sha256(path) for name, path in files.items()
        }


def test_the_embedded_server_ignores_conditional_writes_so_a_lock_is_used(registry):
    assert registry.conditional_writes is False
    assert objects(registry, "locks") == {}, "the probe cleans up after itself"


def test_two_promotions_at_once_move_the_pointer_once(registry, local_s3, tmp_path):
    first = publish(registry, tmp_path, "first")
    rivals = [publish(registry, tmp_path, "left"), publish(registry, tmp_path, "right")]
    registry.promote(first, reason="run 1", when=WHEN, expected_current=None)
    start = threading.Barrier(2)
    outcomes = {}

    def promote(version):
        own = ModelRegistry(s3_client(local_s3), BUCKET, registry.prefix)
        start.wait()
        try:
            outcomes[version] = own.promote(
                version, reason=f"run {version}", when=WHEN, expected_current=first
            )
        except PromotionConflict as error:
            outcomes[version] = error

    threads = [threading.Thread(target=promote, args=(version,)) for version in rivals]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    winners = [version for version in rivals if isinstance(outcomes[version], dict)]
    losers = [version for version in rivals if isinstance(outcomes[version], PromotionConflict)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    pointer = registry.production()
    assert pointer["version"] == winners[0] and pointer["previous_version"] == first
    log = registry.promotion_log()
    assert [(entry["from_version"], entry["to_version"]) for entry in log] == [
        (None, first),
        (first, winners[0]),
    ]
    assert objects(registry, "locks") == {}, "the lock is released"


class FakeTime:
    """A wall clock that advances only when slept on."""

    def __init__(self, now: float) -> None:
        self.now = now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_crashed_holders_lock_expires_but_a_live_one_blocks(registry, tmp_path):
    version = publish(registry, tmp_path, "one")
    fake = FakeTime(1_000_000.0)
    timed = ModelRegistry(
        registry.client, BUCKET, registry.prefix, clock=fake.clock, sleep=fake.sleep
    )
    lock = registry.key(LOCK_FILE)

    def leave_lock(expires_at):
        registry.client.put_object(
            Bucket=BUCKET, Key=lock, Body=json.dumps({"owner": "x", "expires_at": expires_at})
        )

    leave_lock(fake.now + 600)
    with pytest.raises(PromotionConflict, match="another promotion holds .*production.lock"):
        timed.promote(version, reason="test", when=WHEN, expected_current=None)
    assert registry.production() is None

    leave_lock(fake.now - 1)
    assert (
        timed.promote(version, reason="test", when=WHEN, expected_current=None)["version"]
        == version
    )


def test_a_promotion_based_on_a_stale_pointer_is_refused(registry, tmp_path):
    one, two = publish(registry, tmp_path, "one"), publish(registry, tmp_path, "two")
    registry.promote(one, reason="run 1", when=WHEN, expected_current=None)
    with pytest.raises(PromotionConflict, match=f"production moved to {one}"):
        registry.promote(two, reason="run 2", when=WHEN, expected_current=None)
    assert registry.production()["version"] == one
    # Promoting what production already is writes nothing.
    assert registry.promote(one, reason="again", when=WHEN, expected_current=None)["version"] == one
    assert len(registry.promotion_log()) == 1


def test_rollback_returns_to_the_previous_version_and_logs_it(registry, tmp_path):
    one, two = publish(registry, tmp_path, "one"), publish(registry, tmp_path, "two")
    # An Airflow task passes the run's date as a datetime.
    registry.promote(
        one, reason="run 1", when=datetime(2026, 11, 1, 3, tzinfo=UTC), expected_current=None
    )
    registry.promote(two, reason="run 2", when="2026-11-02T03:00:00+00:00", expected_current=one)

    pointer = registry.rollback(reason="smoke test failed", when="2026-11-02T03:05:00+00:00")

    assert pointer["version"] == one and pointer["previous_version"] == two
    assert registry.promotion_log()[0]["when"] == "2026-11-01T03:00:00+00:00"
    last = registry.promotion_log()[-1]
    assert last == {
        "when": "2026-11-02T03:05:00+00:00",
        "from_version": two,
        "to_version": one,
        "reason": "smoke test failed",
        "action": "rollback",
    }
    with pytest.raises(RegistryError, match="not a complete version"):
        registry.rollback(to="no-such-version", reason="test", when=WHEN)


def put_pointer(registry, body: bytes) -> None:
    registry.client.put_object(Bucket=BUCKET, Key=registry.key("production.json"), Body=body)


def test_a_pointer_that_is_not_json_names_production_json_and_the_repair(registry, tmp_path):
    put_pointer(registry, b"<html>oops</html>")
    with pytest.raises(RegistryError) as raised:
        registry.production()
    message = str(raised.value)
    assert "production.json" in message and "not JSON" in message
    assert "pmatch models rollback --to VERSION" in message and "\n" not in message

    put_pointer(registry, b'{"uri": "s3://x"}')
    with pytest.raises(RegistryError, match="lacks the key 'version'"):
        registry.production()
    # Only an explicit repair overwrites it.
    version = publish(registry, tmp_path, "one")
    with pytest.raises(RegistryError, match="production.json"):
        registry.promote(version, reason="deploy", when=WHEN, expected_current=None)
    registry.promote(version, reason="repair", when=WHEN, expected_current=None, repair=True)
    assert registry.production()["version"] == version


def test_a_pointer_to_a_missing_version_is_read_but_cannot_be_downloaded(registry, tmp_path):
    put_pointer(registry, json.dumps({"version": "ghost-1234"}).encode())
    assert registry.production()["version"] == "ghost-1234"
    with pytest.raises(RegistryError, match="ghost-1234: no such complete version"):
        registry.download_production(tmp_path / "cache")


def test_a_tampered_local_copy_is_downloaded_again(registry, tmp_path):
    version = publish(registry, tmp_path, "one")
    registry.promote(version, reason="run 1", when=WHEN, expected_current=None)
    production, folder = registry.download_production(tmp_path / "cache")
    assert production == version
    original = (folder / "model.keras").read_bytes()
    # Same size, still readable: only the checksum tells.
    (folder / "model.keras").write_bytes(bytes(reversed(original)))
    (folder / "canary" / "photo-1.jpg").unlink()

    with pytest.warns(UserWarning, match=r"model\.keras: differs from"):
        again = registry.download(version, tmp_path / "cache")

    assert again == folder
    assert (folder / "model.keras").read_bytes() == original
    assert (folder / "canary" / "photo-1.jpg").is_file()


def test_a_missing_bucket_elsewhere_is_an_error_not_created(local_s3, credentials):
    from pmatch.storage import open_registry

    settings = Settings(s3_endpoint_url=local_s3, s3_bucket="pmatch-mistyped")
    with pytest.raises(RegistryError) as raised:
        open_registry(settings)
    assert str(raised.value) == (
        f"bucket 'pmatch-mistyped' does not exist at {local_s3}; create it or fix PMATCH_S3_BUCKET"
    )
    with pytest.raises(Exception, match="404|Not Found"):
        s3_client(local_s3).head_bucket(Bucket="pmatch-mistyped")


def test_the_embedded_servers_bucket_is_created(credentials, tmp_path):
    from pmatch.storage import open_registry, s3_settings

    settings = Settings(
        project_dir=tmp_path, local_s3_port=free_port(), s3_bucket="pmatch-embedded"
    )
    with s3_settings(settings) as running:
        assert open_registry(running).production() is None
        s3_client(running.s3_endpoint_url).head_bucket(Bucket="pmatch-embedded")


def test_an_endpoint_that_is_down_is_one_line_naming_it(credentials):
    endpoint = f"http://127.0.0.1:{free_port()}"
    registry = ModelRegistry(s3_client(endpoint), BUCKET, "down")
    with pytest.raises(RegistryError) as raised:
        registry.production()
    assert str(raised.value) == (
        f"cannot reach S3 at {endpoint} (connection refused) for "
        f"s3://{BUCKET}/down/production.json: start the server or fix PMATCH_S3_ENDPOINT_URL"
    )


def test_wrong_or_missing_credentials_are_one_line(local_s3, credentials, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "SOMEONE-ELSE")
    with pytest.raises(RegistryError, match=r"refused access to .*InvalidAccessKeyId.*credentials"):
        ModelRegistry(s3_client(local_s3), BUCKET, "creds").production()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(RegistryError, match="no AWS credentials .* AWS_ACCESS_KEY_ID"):
        ModelRegistry(s3_client(local_s3), BUCKET, "creds").production()


# The command line, in a fresh process, as an operator runs it.


def pmatch(*arguments, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "pmatch.cli", *arguments],
        env=env,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"pmatch {' '.join(arguments)}: {result.stderr}")
    return result


@pytest.fixture
def operator_env(registry, local_s3, tmp_path):
    return {
        **os.environ,
        **LOCAL_CREDENTIALS,
        "PYTHONPATH": str(ROOT / "src"),
        "PMATCH_PROJECT_DIR": str(tmp_path),
        "PMATCH_S3_ENDPOINT_URL": local_s3,
        "PMATCH_S3_BUCKET": BUCKET,
        "PMATCH_S3_PREFIX": registry.prefix,
        "USER": "ada",
    }


def test_models_list_show_promote_rollback(registry, operator_env, tmp_path):
    one = publish(registry, tmp_path, "one", created_at="2026-11-01T03:00:00+00:00")
    two = publish(registry, tmp_path, "two", created_at="2026-11-02T03:00:00+00:00")
    registry.promote(one, reason="run 1", when=WHEN, expected_current=None)

    promoted = pmatch(
        "models", "promote", two, "--reason", "better on the new catalogue", env=operator_env
    )
    assert json.loads(promoted.stdout)["version"] == two

    rows = [
        json.loads(line) for line in pmatch("models", "list", env=operator_env).stdout.splitlines()
    ]
    assert [(row["version"], row["status"]) for row in rows] == [
        (one, "previous"),
        (two, "production"),
    ]
    assert set(rows[0]) == {"version", "created_at", "model_sha256", "data_version", "f1", "status"}

    shown = json.loads(pmatch("models", "show", two, env=operator_env).stdout)
    assert shown["in_production"] is True and shown["manifest"]["version"] == two
    assert shown["promotions"][-1]["reason"] == "better on the new catalogue"

    pmatch("models", "rollback", env=operator_env)
    assert registry.production()["version"] == one
    assert registry.promotion_log()[-1]["reason"] == "command line by ada"
    assert registry.promotion_log()[-1]["action"] == "rollback"


def test_models_promote_repairs_a_broken_pointer(registry, operator_env, tmp_path):
    version = publish(registry, tmp_path, "one")
    put_pointer(registry, b"not json")
    listed = pmatch("models", "list", env=operator_env)
    assert "production.json" in listed.stderr and json.loads(listed.stdout)["status"] == "other"

    pmatch("models", "rollback", "--to", version, env=operator_env)

    assert registry.production()["version"] == version


def test_errors_are_one_line_and_debug_shows_the_traceback(registry, operator_env):
    result = pmatch("models", "show", "no-such-version", env=operator_env, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"pmatch models: error: {registry.uri('models', 'no-such-version')}: no such complete "
        "version; `pmatch models list` shows them"
    ]
    down = {**operator_env, "PMATCH_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    result = pmatch("models", "list", env=down, check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach S3 at http://127.0.0.1:" in result.stderr

    result = pmatch("--debug", "models", "show", "no-such-version", env=operator_env, check=False)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RegistryError" in result.stderr
