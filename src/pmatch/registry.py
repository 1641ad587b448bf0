"""S3 model registry: content-addressed versions, a guarded production pointer, a promotion log.

Layout under s3://BUCKET/PREFIX/:
  models/VERSION/       model.keras, vocab.json, preprocessing.json, metrics.json,
                        evaluation.json, reference_scores.csv, params.yaml, gate.json, what
                        people review (evaluation.png, errors.html, errors.csv), canary.csv and
                        its photos under canary/ (the smoke test's pairs), and manifest.json
                        ({"version", "files": {name: sha256}, created_at, model_sha256,
                        data_version, f1, threshold, git_commit, params_sha256,
                        code_sha256, run_id, ...})
  production.json       {"version", "uri", "promoted_at", "previous_version", "reason"}
  promotions/WHEN-N.json one object per pointer move: {"when", "from_version", "to_version",
                        "reason", "action"}; named so that they sort by time, then by a counter
  locks/production.lock {"owner", "expires_at"} while a promotion runs on a server without
                        conditional writes
  locks/catalog.lock    the same while an ingest (on whatever machine) merges a delivery
  monitoring/BATCH/RUN/ drift.html, drift.json, scores.csv, verdict.json of one run
  monitoring/history.*  every run's verdict side by side (csv, png, html)

A version id comes from its content (the model's sha256 and the data version), so a retry
finds the half-done upload and completes it. manifest.json is written last: a version
without it is incomplete, invisible to versions() and never promoted.

Two promotions at once must not both move the pointer. Servers that honour conditional
PUTs (If-Match / If-None-Match: AWS S3 since 2024, MinIO, Ceph RGW) get a conditional
write of the pointer against the ETag that was read. s3rver, pmatch's embedded server,
ignores those headers on PUT (lib/controllers/object.js only looks at If-None-Match on
GET), so there the pointer is moved under a lock object with an owner token and an
expiry. Which path runs is probed once per registry (ModelRegistry.conditional_writes).

Every S3 or credential fault is raised as a RegistryError whose one-line message names the
endpoint, the bucket or key, and what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

MANIFEST_FILE = "manifest.json"
POINTER_FILE = "production.json"
PROMOTIONS_FOLDER = "promotions"
LOCK_FILE = "locks/production.lock"
# A crashed holder blocks promotions for at most this long (wall-clock seconds).
LOCK_EXPIRY_SECONDS = 60.0
# After writing its token a contender waits this long before reading the lock back: a
# rival that read "free" just before our write overwrites it within this delay, and then
# the read-back shows the rival's token, not ours.
LOCK_SETTLE_SECONDS = 0.5
# How long a promotion waits for another one's lock before giving up.
LOCK_WAIT_SECONDS = 30.0
LOCK_RETRY_SECONDS = 0.25
REPAIR_HINT = (
    "repair it with `pmatch models rollback --to VERSION` or `pmatch models promote VERSION`"
)


class RegistryError(RuntimeError):
    """The registry refused an operation or S3 failed; the message names the key and the fix."""


class PromotionConflict(RegistryError):
    """The production pointer moved between reading it and writing it."""


def version_id(model_sha256: str, data_version: str) -> str:
    """A version id from the content: the same model on the same data always gets the same id."""
    if not model_sha256 or not data_version:
        raise ValueError(
            "a version id needs the model's sha256 and the data version; "
            f"got {model_sha256!r} and {data_version!r}"
        )
    return f"{model_sha256[:16]}-{data_version[:8]}"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(files: dict[str, Path]) -> str:
    """One digest over the files' names and contents (name -> sha256 pairs, sorted by name)."""
    listing = "\n".join(f"{name}\t{file_sha256(path)}" for name, path in sorted(files.items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def _log_stamp(when: str) -> str:
    """when (ISO 8601) as a UTC stamp that sorts as text: 20261102T030000.000000Z."""
    try:
        moment = datetime.fromisoformat(str(when))
    except ValueError as error:
        raise ValueError(f"promotion time {when!r} is not an ISO 8601 date") from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")


def _json_default(value: object) -> str:
    """Dates (a run's date in a manifest) as ISO 8601, paths as text."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot go into a registry JSON object")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


class ModelRegistry:
    """A model registry in one bucket and key prefix.

    client: a boto3 S3 client (see pmatch.s3server.s3_client); bucket, prefix: where it lives.
    clock, sleep: wall-clock time in seconds and a sleep function, used only by the lock
    (tests pass their own).
    """

    def __init__(
        self,
        client,
        bucket: str,
        prefix: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = getattr(getattr(client, "meta", None), "endpoint_url", None) or "AWS"
        self.clock = clock
        self.sleep = sleep
        self._conditional_writes: bool | None = None

    @classmethod
    def from_settings(cls, settings, create_bucket: bool = False) -> ModelRegistry:
        """The registry that settings name; checks that its bucket exists.

        create_bucket: create a missing bucket; only for the embedded server that pmatch
        started itself (pmatch.storage.s3_settings knows). Elsewhere a missing bucket is an
        error: a mistyped PMATCH_S3_BUCKET must not become an empty registry.
        """
        from pmatch.s3server import ensure_bucket, s3_client

        client = s3_client(settings.s3_endpoint_url, settings.aws_region)
        registry = cls(client, settings.s3_bucket, settings.s3_prefix)
        with registry._translated(None):
            if create_bucket:
                try:
                    ensure_bucket(client, registry.bucket)
                except PermissionError as error:
                    raise RegistryError(_one_line(error)) from error
            else:
                client.head_bucket(Bucket=registry.bucket)
        return registry

    # Keys and S3 calls, each translating faults into RegistryError.

    def key(self, *parts: str) -> str:
        return "/".join(part.strip("/") for part in (self.prefix, *parts) if part)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    @contextlib.contextmanager
    def _translated(self, key: str | None) -> Iterator[None]:
        """Turns botocore faults raised inside into one-line RegistryErrors naming the key."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        where = f"s3://{self.bucket}/{key}" if key else f"bucket '{self.bucket}'"
        endpoint = self.endpoint_url
        try:
            yield
        except (EndpointConnectionError, ConnectTimeoutError, ConnectionClosedError) as error:
            cause = str(getattr(error, "kwargs", {}).get("error", error))
            reason = "connection refused" if "refused" in cause.lower() else _one_line(cause)
            raise RegistryError(
                f"cannot reach S3 at {endpoint} ({reason}) for {where}: start the server or "
                "fix PMATCH_S3_ENDPOINT_URL"
            ) from error
        except ReadTimeoutError as error:
            raise RegistryError(
                f"S3 at {endpoint} did not answer in time for {where}: check the server's "
                "health or PMATCH_S3_ENDPOINT_URL"
            ) from error
        except NoCredentialsError as error:
            raise RegistryError(
                f"no AWS credentials to sign requests to S3 at {endpoint} ({where}): set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE (the embedded "
                "server accepts S3RVER / S3RVER)"
            ) from error
        except PartialCredentialsError as error:
            raise RegistryError(
                f"incomplete AWS credentials for S3 at {endpoint} ({where}): {_one_line(error)}; "
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
            ) from error
        except ClientError as error:
            details = error.response.get("Error", {})
            code = str(details.get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchBucket",) or (key is None and code in ("404", "NotFound")):
                raise RegistryError(
                    f"bucket '{self.bucket}' does not exist at {endpoint}; create it or fix "
                    "PMATCH_S3_BUCKET"
                ) from error
            if (
                code
                in (
                    "403",
                    "AccessDenied",
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "Forbidden",
                )
                or status == 403
            ):
                raise RegistryError(
                    f"S3 at {endpoint} refused access to {where} ({code or 'HTTP 403'}): check "
                    "the credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_PROFILE; "
                    "the embedded server accepts only S3RVER / S3RVER) and the bucket's "
                    "policy, or pick another bucket with PMATCH_S3_BUCKET"
                ) from error
            raise RegistryError(
                f"S3 at {endpoint} answered {code or status} "
                f"({_one_line(details.get('Message', error))}) for {where}"
            ) from error
        except BotoCoreError as error:
            raise RegistryError(
                f"S3 at {endpoint} failed for {where}: {_one_line(error)}"
            ) from error

    @staticmethod
    def _error_code(error) -> str:
        return str(error.response.get("Error", {}).get("Code", ""))

    def _get(self, key: str) -> tuple[bytes, str] | None:
        """(body, ETag) of the object at key, None when there is none."""
        from botocore.exceptions import ClientError

        with self._translated(key):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if self._error_code(error) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise
            return answer["Body"].read(), answer.get("ETag", "")

    def _head(self, key: str) -> dict | None:
        from botocore.exceptions import ClientError

        with self._translated(key):
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as error:
                if self._error_code(error) in ("404", "NoSuchKey", "NotFound"):
                    return None
                raise

    def _put(self, key: str, body: bytes, **conditions) -> None:
        """PUT body at key; conditions: IfMatch / IfNoneMatch, where the server honours them.

        Raises PromotionConflict when a condition fails (HTTP 412, or 409 while a
        concurrent conditional write is in flight on AWS).
        """
        from botocore.exceptions import ClientError

        with self._translated(key):
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    **conditions,
                )
            except ClientError as error:
                if conditions and self._error_code(error) in (
                    "PreconditionFailed",
                    "412",
                    "ConditionalRequestConflict",
                ):
                    raise PromotionConflict(
                        f"s3://{self.bucket}/{key} changed while it was being written; "
                        "read it again and retry"
                    ) from error
                raise

    def _put_json(self, key: str, document: dict, **conditions) -> None:
        body = json.dumps(document, indent=2, sort_keys=True, default=_json_default)
        self._put(key, body.encode(), **conditions)

    def _delete(self, key: str) -> None:
        with self._translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def _list(self, prefix: str) -> list[dict]:
        with self._translated(prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            return [
                item
                for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
                for item in page.get("Contents", [])
            ]

    def _parse_json(self, body: bytes, key: str, what: str, repair: str) -> dict:
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RegistryError(
                f"s3://{self.bucket}/{key} is not {what} (not JSON: {_one_line(error)}); {repair}"
            ) from error
        if not isinstance(document, dict):
            raise RegistryError(
                f"s3://{self.bucket}/{key} is not {what} (a JSON {type(document).__name__}, "
                f"not an object); {repair}"
            )
        return document

    def read_file(self, *parts: str) -> bytes | None:
        """The object at the key of parts (under the prefix), or None when there is none."""
        found = self._get(self.key(*parts))
        return None if found is None else found[0]

    def upload_file(self, path: str | Path, *parts: str) -> str:
        key = self.key(*parts)
        with self._translated(key):
            self.client.upload_file(str(path), self.bucket, key)
        return self.uri(*parts)

    # Conditional writes or a lock.

    @property
    def conditional_writes(self) -> bool:
        """Whether the server honours If-None-Match / If-Match on PUT; probed once.

        The probe writes an object under locks/, then writes it again with
        If-None-Match: * — a server that honours the header answers 412 Precondition
        Failed; one that ignores it (s3rver) overwrites the object.
        """
        if self._conditional_writes is None:
            from botocore.exceptions import ClientError

            key = self.key("locks", f"conditional-write-probe-{uuid.uuid4().hex}")
            self._put(key, b"{}")
            try:
                with self._translated(key):
                    try:
                        self.client.put_object(
                            Bucket=self.bucket, Key=key, Body=b"{}", IfNoneMatch="*"
                        )
                        self._conditional_writes = False
                    except ClientError as error:
                        code = self._error_code(error)
                        if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                            self._conditional_writes = True
                        elif code in ("NotImplemented", "501", "InvalidArgument", "400"):
                            self._conditional_writes = False
                        else:
                            raise
            finally:
                self._delete(key)
        return self._conditional_writes

    def _read_lock(self, name: str = LOCK_FILE) -> dict | None:
        found = self._get(self.key(name))
        if found is None:
            return None
        try:
            lock = json.loads(found[0])
        except (json.JSONDecodeError, UnicodeDecodeError):
            # A damaged lock counts as expired; it is overwritten by the next contender.
            return None
        return lock if isinstance(lock, dict) else None

    def _production_lock(self):
        """Holds locks/production.lock while a promotion moves the pointer (see lock)."""
        return self.lock(
            LOCK_FILE,
            expiry_seconds=LOCK_EXPIRY_SECONDS,
            wait_seconds=LOCK_WAIT_SECONDS,
            holder="promotion",
            error=PromotionConflict,
        )

    @contextlib.contextmanager
    def lock(
        self,
        name: str,
        *,
        expiry_seconds: float,
        wait_seconds: float,
        holder: str,
        error: type[RegistryError] = RegistryError,
    ) -> Iterator[str]:
        """Holds the lock object `name` (under the prefix) while the block runs; yields the
        owner token. Works on any S3 server, with or without conditional writes.

        Acquire: read the lock (absent or expired means free), write our token with an
        expiry, wait LOCK_SETTLE_SECONDS, read it back and hold it only if the token is
        ours. Release: delete it if it is still ours. A holder that crashed blocks others
        for at most expiry_seconds; a contender gives up after wait_seconds with error,
        naming the lock, its owner and when it expires (holder: what holds such a lock,
        for the message). This is sound as long as no contender takes longer than the
        settle delay between reading "free" and writing its token.
        """
        token = uuid.uuid4().hex
        key = self.key(name)
        deadline = self.clock() + wait_seconds
        while True:
            current = self._read_lock(name)
            now = self.clock()
            expired = current is None or float(current.get("expires_at", 0) or 0) < now
            if expired:
                self._put_json(key, {"owner": token, "expires_at": now + expiry_seconds})
                self.sleep(LOCK_SETTLE_SECONDS)
                back = self._read_lock(name)
                if back is not None and back.get("owner") == token:
                    break
                current = back
            if self.clock() > deadline:
                held = current or {}
                raise error(
                    f"another {holder} holds {self.uri(name)} (owner {held.get('owner')}, "
                    f"expires at {held.get('expires_at')}); try again once it is done, or "
                    f"after {expiry_seconds:g} s if it crashed (or delete {self.uri(name)} "
                    f"when you are sure no {holder} runs)"
                )
            self.sleep(LOCK_RETRY_SECONDS)
        try:
            yield token
        finally:
            back = self._read_lock(name)
            if back is not None and back.get("owner") == token:
                self._delete(key)

    # The production pointer and its log.

    def _read_pointer(self) -> tuple[dict | None, str | None]:
        """(pointer, ETag); (None, None) when nothing was ever promoted."""
        key = self.key(POINTER_FILE)
        found = self._get(key)
        if found is None:
            return None, None
        body, etag = found
        pointer = self._parse_json(body, key, "a production pointer", REPAIR_HINT)
        if not isinstance(pointer.get("version"), str) or not pointer["version"]:
            raise RegistryError(
                f"{self.uri(POINTER_FILE)} is not a production pointer (it lacks the key "
                f"'version'); {REPAIR_HINT}"
            )
        return pointer, etag

    def production(self) -> dict | None:
        """The production pointer, or None when nothing was ever promoted.

        Raises RegistryError when production.json exists but is not a pointer.
        """
        return self._read_pointer()[0]

    def production_metrics(self) -> tuple[str | None, dict | None]:
        """(version, metrics) of the production model; (None, None) when there is none."""
        pointer = self.production()
        if pointer is None:
            return None, None
        version = pointer["version"]
        key = self.key("models", version, "metrics.json")
        found = self._get(key)
        if found is None:
            return version, None
        return version, self._parse_json(found[0], key, "metrics", "evaluate the version again")

    def promote(
        self,
        version: str,
        *,
        reason: str,
        when: str,
        expected_current: str | None,
        repair: bool = False,
    ) -> dict:
        """Moves production to a complete version; returns the new pointer.

        reason: why (a run id, a command); when: the time of the decision (the run's date,
        or now at the command line), ISO 8601. expected_current: the version the caller
        based its decision on (None = nothing in production); if the pointer names another
        one, PromotionConflict and nothing is written. repair: allow overwriting a
        production.json that is not a pointer (the command line's repair path).
        Promoting the version already in production returns the pointer, writing nothing.
        """
        return self._move(version, reason, when, expected_current, "promote", repair)

    def rollback(
        self, *, to: str | None = None, reason: str, when: str, repair: bool = False
    ) -> dict:
        """Moves production to `to`, or to the pointer's previous_version; returns the pointer.

        The new pointer's previous_version is the version rolled back from.
        """
        current = None
        try:
            current = self.production()
        except RegistryError:
            if not (repair and to):
                raise
        if to is None:
            if current is None:
                raise RegistryError(
                    f"{self.uri(POINTER_FILE)}: nothing is in production, so there is nothing "
                    "to roll back; promote a version with `pmatch models promote VERSION`"
                )
            to = current.get("previous_version")
            if not to:
                raise RegistryError(
                    f"production ({current['version']}) has no previous version to roll back "
                    "to; name one with `pmatch models rollback --to VERSION` (`pmatch models "
                    "list` shows them)"
                )
        expected = current["version"] if current else None
        return self._move(to, reason, when, expected, "rollback", repair)

    def _move(
        self,
        version: str,
        reason: str,
        when: str,
        expected_current: str | None,
        action: str,
        repair: bool,
    ) -> dict:
        if self.manifest(version) is None:
            raise RegistryError(
                f"{self.uri('models', version)} is not a complete version (no {MANIFEST_FILE}); "
                "only complete versions can go to production (`pmatch models list` shows them)"
            )
        # A datetime (the run's date) is recorded as ISO 8601 text.
        when = when.isoformat() if hasattr(when, "isoformat") else str(when)
        stamp = _log_stamp(when)
        if self.conditional_writes:
            return self._move_once(version, reason, when, stamp, expected_current, action, repair)
        with self._production_lock() as token:
            return self._move_once(
                version, reason, when, stamp, expected_current, action, repair, token
            )

    def _move_once(
        self, version, reason, when, stamp, expected_current, action, repair, token=None
    ) -> dict:
        conditional = self.conditional_writes
        try:
            current, etag = self._read_pointer()
            broken = False
        except RegistryError:
            if not repair:
                raise
            # The repair path overwrites whatever is there; the ETag still guards the write.
            found = self._get(self.key(POINTER_FILE))
            current, etag, broken = None, found[1] if found else None, True
        current_version = current["version"] if current else None
        if current_version == version:
            return current
        if not broken and current_version != expected_current:
            raise PromotionConflict(
                f"production moved to {current_version} (the caller expected "
                f"{expected_current}); nothing was written. Check `pmatch models list` and "
                "decide again"
            )
        pointer = {
            "version": version,
            "uri": self.uri("models", version),
            "promoted_at": when,
            "previous_version": current_version,
            "reason": reason,
        }
        conditions = {}
        if conditional:
            conditions = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        elif token is not None and (self._read_lock() or {}).get("owner") != token:
            # A rival overwrote our lock (it read "free" longer than the settle delay ago).
            raise PromotionConflict(
                f"{self.uri(LOCK_FILE)} was taken over by another promotion; nothing was "
                "written. Check `pmatch models list` and decide again"
            )
        self._put_json(self.key(POINTER_FILE), pointer, **conditions)
        self._append_log(
            {
                "when": when,
                "from_version": current_version,
                "to_version": version,
                "reason": reason,
                "action": action,
            },
            stamp,
            conditional,
        )
        return pointer

    def _append_log(self, entry: dict, stamp: str, conditional: bool) -> None:
        """Writes one log object promotions/STAMP-COUNTER.json after the pointer moved.

        The counter (one more than the entries so far) orders moves within the same
        second; with conditional writes a clash on the name tries the next counter.
        """
        prefix = self.key(PROMOTIONS_FOLDER) + "/"
        count = len(self._list(prefix))
        for attempt in range(100):
            key = f"{prefix}{stamp}-{count + 1 + attempt:06d}.json"
            try:
                if conditional:
                    self._put_json(key, entry, IfNoneMatch="*")
                else:
                    self._put_json(key, entry)
                return
            except PromotionConflict:
                continue
        raise RegistryError(f"{self.uri(PROMOTIONS_FOLDER)}: could not name a new log entry")

    def promotion_log(self) -> list[dict]:
        """Every pointer move, oldest first (by time, then counter)."""
        prefix = self.key(PROMOTIONS_FOLDER) + "/"
        entries = []
        for item in sorted(self._list(prefix), key=lambda item: item["Key"]):
            found = self._get(item["Key"])
            if found is None:
                continue
            entries.append(
                self._parse_json(
                    found[0], item["Key"], "a promotion log entry", "delete or restore that object"
                )
            )
        return entries

    # Versions.

    def manifest(self, version: str) -> dict | None:
        """The manifest of a complete version; None when there is no complete version of that id."""
        key = self.key("models", version, MANIFEST_FILE)
        found = self._get(key)
        if found is None:
            return None
        repair = (
            f"publish version {version} again (a retry of its deploy rewrites it) or delete "
            f"{self.uri('models', version)}"
        )
        manifest = self._parse_json(found[0], key, "a version manifest", repair)
        if not isinstance(manifest.get("files"), dict):
            raise RegistryError(
                f"s3://{self.bucket}/{key} is not a version manifest (it lacks the key "
                f"'files'); {repair}"
            )
        return manifest

    def versions(self) -> list[dict]:
        """The complete versions' manifests, oldest created_at first."""
        models = self.key("models") + "/"
        found = set()
        for item in self._list(models):
            parts = item["Key"][len(models) :].split("/")
            if len(parts) == 2 and parts[1] == MANIFEST_FILE:
                found.add(parts[0])
        manifests = [self.manifest(version) for version in sorted(found)]
        return sorted(
            (manifest for manifest in manifests if manifest is not None),
            key=lambda manifest: (str(manifest.get("created_at") or ""), manifest["version"]),
        )

    def monitoring_verdicts(self) -> list[dict]:
        """Every monitoring run's verdict (monitoring/BATCH/RUN/verdict.json), in key order.

        A verdict that is not valid JSON is left out with a warning naming its key, so one
        damaged file does not hide the others.
        """
        prefix = self.key("monitoring") + "/"
        verdicts = []
        for item in self._list(prefix):
            parts = item["Key"][len(prefix) :].split("/")
            if len(parts) != 3 or parts[2] != "verdict.json":
                continue
            found = self._get(item["Key"])
            if found is None:
                continue
            try:
                verdicts.append(json.loads(found[0]))
            except json.JSONDecodeError as error:
                warnings.warn(
                    f"s3://{self.bucket}/{item['Key']}: not a verdict ({error}); "
                    "left out of the drift history",
                    stacklevel=2,
                )
        return verdicts

    def _remote_sha256(self, key: str) -> str | None:
        """The sha256 recorded in an uploaded object's metadata, None when absent."""
        head = self._head(key)
        if head is None:
            return None
        return head.get("Metadata", {}).get("sha256")

    def publish(self, version: str, files: dict[str, Path], metadata: dict) -> tuple[str, bool]:
        """Uploads files under models/VERSION/, then its manifest; idempotent and resumable.

        files: object name ("model.keras", "canary/photo-1.jpg") -> local path. metadata:
        the manifest's other fields (created_at, model_sha256, data_version, f1, ...).
        Uploads only what is missing or differs (each object carries its sha256 in its
        metadata), so a retry after a crash completes the version; the manifest is written
        last, conditionally where the server supports it. Returns (uri, created): created is
        False when an identical complete version already existed. A complete version whose
        manifest lists other checksums is immutable: RegistryError.
        """
        clash = {"version", "files"} & set(metadata)
        if clash:
            raise ValueError(f"manifest metadata may not set {', '.join(sorted(clash))}")
        checksums = {}
        for name, path in sorted(files.items()):
            path = Path(path)
            if not path.is_file():
                raise RegistryError(
                    f"{path}: missing, cannot publish version {version} without {name}"
                )
            if name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"object name {name!r} must be a relative path inside the version")
            checksums[name] = file_sha256(path)
        uri = self.uri("models", version)
        existing = self.manifest(version)
        if existing is not None:
            return uri, self._same_version(version, existing, checksums)
        for name, checksum in checksums.items():
            key = self.key("models", version, name)
            if self._remote_sha256(key) == checksum:
                continue
            with self._translated(key):
                self.client.upload_file(
                    str(files[name]), self.bucket, key, ExtraArgs={"Metadata": {"sha256": checksum}}
                )
        manifest = {"version": version, "files": checksums, **metadata}
        conditions = {"IfNoneMatch": "*"} if self.conditional_writes else {}
        try:
            self._put_json(self.key("models", version, MANIFEST_FILE), manifest, **conditions)
        except PromotionConflict:
            # Another publisher completed the version first.
            return uri, self._same_version(version, self.manifest(version), checksums)
        return uri, True

    def _same_version(self, version: str, existing: dict | None, checksums: dict) -> bool:
        """False when the complete version holds exactly these files; else RegistryError."""
        if existing is not None and existing["files"] == checksums:
            return False
        theirs = existing["files"] if existing else {}
        differing = sorted(
            name for name in set(theirs) | set(checksums) if theirs.get(name) != checksums.get(name)
        )
        raise RegistryError(
            f"{self.uri('models', version)} is complete and immutable but holds other files "
            f"({', '.join(differing)} differ); a version id names one content, so deploy "
            "under the id of this content"
        )

    def download(self, version: str, destination: str | Path) -> Path:
        """Downloads a complete version into destination/VERSION and returns that folder.

        Every file is checked against the manifest's sha256 every time, a reused local copy
        included: a file that is missing or differs is downloaded again, with a warning.
        """
        manifest = self.manifest(version)
        if manifest is None:
            raise RegistryError(
                f"{self.uri('models', version)}: no such complete version (no {MANIFEST_FILE}); "
                "`pmatch models list` shows the complete versions"
            )
        target = Path(destination) / version
        for name, checksum in sorted(manifest["files"].items()):
            if name.startswith("/") or ".." in name.split("/"):
                raise RegistryError(
                    f"{self.uri('models', version, MANIFEST_FILE)} names {name!r}, outside the "
                    "version's folder; publish the version again"
                )
            local = target / name
            if local.is_file():
                if file_sha256(local) == checksum:
                    continue
                warnings.warn(
                    f"{local}: differs from {self.uri('models', version, MANIFEST_FILE)} "
                    "(corrupt or changed); downloading it again",
                    stacklevel=2,
                )
            self._download_checked(version, name, checksum, local)
        (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return target

    def _download_checked(self, version: str, name: str, checksum: str, local: Path) -> None:
        """Downloads one object beside local, checks it, then moves it into place."""
        key = self.key("models", version, name)
        local.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{local.name}.", dir=local.parent)
        os.close(handle)
        try:
            with self._translated(key):
                self.client.download_file(self.bucket, key, temporary)
            if file_sha256(temporary) != checksum:
                raise RegistryError(
                    f"s3://{self.bucket}/{key}: its sha256 differs from the version's manifest "
                    "after download; the stored object is damaged, publish the version again"
                )
            os.replace(temporary, local)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def download_production(self, destination: str | Path) -> tuple[str, Path]:
        """(version, folder) of the production model, downloaded and checked."""
        pointer = self.production()
        if pointer is None:
            raise RegistryError(
                f"{self.uri(POINTER_FILE)}: no production model yet; run the retraining "
                "pipeline (`make run` or the pmatch_retrain DAG) first, or pass --model"
            )
        return pointer["version"], self.download(pointer["version"], destination)
