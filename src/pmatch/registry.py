"""S3 model registry: immutable version prefixes and a `production` pointer.

Layout under s3://BUCKET/PREFIX/:
  models/VERSION/       model.keras, vocab.json, preprocessing.json, metrics.json,
                        reference_scores.csv, params.yaml, gate.json, manifest.json, and
                        what people review of the version: evaluation.png, errors.html,
                        errors.csv
  production.json       {"version": ..., "uri": ..., "promoted_at": ...}
  monitoring/BATCH/RUN/ drift.html, drift.json, scores.csv, verdict.json of one run
  monitoring/history.*  every run's verdict side by side (csv, png, html)

manifest.json is written last: a version without it is incomplete and never promoted.
The pointer is one small object, so moving it is a single atomic PUT.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

MANIFEST_FILE = "manifest.json"
POINTER_FILE = "production.json"


class RegistryError(RuntimeError):
    """The registry refused an operation; the message names the version or key."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelRegistry:
    """A model registry in one bucket and key prefix.

    client: a boto3 S3 client (see pmatch.s3server.s3_client); bucket, prefix: where it lives.
    """

    client: object
    bucket: str
    prefix: str

    @classmethod
    def from_settings(cls, settings) -> ModelRegistry:
        from pmatch.s3server import ensure_bucket, s3_client

        client = s3_client(settings.s3_endpoint_url, settings.aws_region)
        ensure_bucket(client, settings.s3_bucket)
        return cls(client, settings.s3_bucket, settings.s3_prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(part.strip("/") for part in (self.prefix, *parts) if part)

    def uri(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def _read_json(self, key: str) -> dict | None:
        if not self._exists(key):
            return None
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return json.loads(body)

    def _put_json(self, key: str, document: dict) -> None:
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            ContentType="application/json",
            Body=json.dumps(document, indent=2, sort_keys=True).encode(),
        )

    def upload_file(self, path: str | Path, *parts: str) -> str:
        self.client.upload_file(str(path), self.bucket, self.key(*parts))
        return self.uri(*parts)

    def production(self) -> dict | None:
        """The production pointer, or None when nothing was ever promoted."""
        return self._read_json(self.key(POINTER_FILE))

    def manifest(self, version: str) -> dict | None:
        return self._read_json(self.key("models", version, MANIFEST_FILE))

    def production_metrics(self) -> tuple[str | None, dict | None]:
        """(version, metrics) of the production model; (None, None) when there is none."""
        pointer = self.production()
        if pointer is None:
            return None, None
        version = pointer["version"]
        return version, self._read_json(self.key("models", version, "metrics.json"))

    def versions(self) -> list[str]:
        """Complete versions (those with a manifest), oldest first."""
        paginator = self.client.get_paginator("list_objects_v2")
        found = set()
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key("models") + "/"):
            for item in page.get("Contents", []):
                parts = item["Key"][len(self.key("models")) + 1 :].split("/")
                if len(parts) == 2 and parts[1] == MANIFEST_FILE:
                    found.add(parts[0])
        return sorted(found)

    def monitoring_verdicts(self) -> list[dict]:
        """Every monitoring run's verdict (monitoring/BATCH/RUN/verdict.json), in key order.

        A verdict that is not valid JSON is left out with a warning naming its key, so one
        damaged file does not hide the others.
        """
        prefix = self.key("monitoring") + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        verdicts = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                parts = item["Key"][len(prefix) :].split("/")
                if len(parts) != 3 or parts[2] != "verdict.json":
                    continue
                body = self.client.get_object(Bucket=self.bucket, Key=item["Key"])["Body"].read()
                try:
                    verdicts.append(json.loads(body))
                except json.JSONDecodeError as error:
                    warnings.warn(
                        f"s3://{self.bucket}/{item['Key']}: not a verdict ({error}); "
                        "left out of the drift history",
                        stacklevel=2,
                    )
        return verdicts

    def publish(self, version: str, files: dict[str, Path], metadata: dict) -> str:
        """Uploads files under models/VERSION/ and then its manifest; never overwrites.

        files: object name -> local path. metadata: extra manifest fields (run id, F1...).
        Raises RegistryError if the version already exists, complete or not.
        """
        prefix = self.key("models", version) + "/"
        # No MaxKeys: s3rver answers InternalError to MaxKeys=1 on a non-empty prefix.
        existing = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        if existing.get("KeyCount", 0) or existing.get("Contents"):
            raise RegistryError(
                f"{self.uri('models', version)} already exists; versions are immutable, "
                "deploy under a new version id"
            )
        checksums = {}
        for name, path in sorted(files.items()):
            path = Path(path)
            if not path.is_file():
                raise RegistryError(
                    f"{path}: missing, cannot publish version {version} without {name}"
                )
            checksums[name] = _sha256(path)
            self.upload_file(path, "models", version, name)
        manifest = {"version": version, "files": checksums, **metadata}
        self._put_json(self.key("models", version, MANIFEST_FILE), manifest)
        return self.uri("models", version)

    def promote(self, version: str, promoted_at: str) -> dict:
        """Points production at a complete version (one atomic PUT); returns the pointer."""
        if self.manifest(version) is None:
            raise RegistryError(
                f"{self.uri('models', version)} has no {MANIFEST_FILE}; only complete versions "
                "can be promoted"
            )
        previous = self.production()
        pointer = {
            "version": version,
            "uri": self.uri("models", version),
            "promoted_at": promoted_at,
            "previous_version": previous["version"] if previous else None,
        }
        self._put_json(self.key(POINTER_FILE), pointer)
        return pointer

    def download(self, version: str, destination: str | Path) -> Path:
        """Downloads a complete version into destination/VERSION, checking every checksum.

        Versions are immutable, so a folder already downloaded and checked is reused.
        """
        manifest = self.manifest(version)
        if manifest is None:
            raise RegistryError(f"{self.uri('models', version)}: no such complete version")
        target = Path(destination) / version
        done_marker = target / MANIFEST_FILE
        if done_marker.is_file() and json.loads(done_marker.read_text()) == manifest:
            return target
        target.mkdir(parents=True, exist_ok=True)
        for name, checksum in manifest["files"].items():
            local = target / name
            self.client.download_file(self.bucket, self.key("models", version, name), str(local))
            if _sha256(local) != checksum:
                raise RegistryError(
                    f"{self.uri('models', version, name)}: checksum mismatch after download"
                )
        done_marker.write_text(json.dumps(manifest))
        return target

    def download_production(self, destination: str | Path) -> Path:
        pointer = self.production()
        if pointer is None:
            raise RegistryError(
                f"{self.uri(POINTER_FILE)}: no production model yet; run the retraining "
                "pipeline (`make run` or the pmatch_retrain DAG) first, or pass --model"
            )
        return self.download(pointer["version"], destination)


@dataclass(frozen=True)
class Deployment:
    version: str
    uri: str
    pointer: dict


def version_id(run_date, model_path: str | Path) -> str:
    """A version id from the run's date and the model's content: 20261127T0300Z-1a2b3c4d."""
    return f"{run_date.strftime('%Y%m%dT%H%M%SZ')}-{_sha256(Path(model_path))[:8]}"


def deploy(
    registry: ModelRegistry,
    model_dir: str | Path,
    evaluate_dir: str | Path,
    params_path: str | Path,
    gate_path: str | Path,
    run_date,
    run_id: str,
) -> Deployment:
    """Publishes the candidate as a new version and points production at it.

    Refuses unless the gate decision at gate_path says deploy. run_date: the run's logical
    date (a timezone-aware datetime), used for the version id and the pointer's timestamp.
    """
    from pmatch.artifacts import (
        ERRORS_FILE,
        ERRORS_REPORT_FILE,
        METRICS_FILE,
        MINILM_VOCABULARY_FILE,
        MODEL_FILE,
        PLOTS_FILE,
        PREPROCESSING_FILE,
        REFERENCE_SCORES_FILE,
        VOCABULARY_FILE,
    )
    from pmatch.gate import GateDecision

    gate_path = Path(gate_path)
    if not gate_path.is_file():
        raise RegistryError(f"{gate_path}: no gate decision; run `pmatch gate` first")
    decision = GateDecision.load(gate_path)
    if not decision.deploy:
        raise RegistryError(
            f"the gate refused this model ({'; '.join(decision.reasons)}); not deploying"
        )
    model_dir, evaluate_dir = Path(model_dir), Path(evaluate_dir)
    files = {
        MODEL_FILE: model_dir / MODEL_FILE,
        VOCABULARY_FILE: model_dir / VOCABULARY_FILE,
        PREPROCESSING_FILE: model_dir / PREPROCESSING_FILE,
        METRICS_FILE: evaluate_dir / METRICS_FILE,
        REFERENCE_SCORES_FILE: evaluate_dir / REFERENCE_SCORES_FILE,
        "params.yaml": Path(params_path),
        "gate.json": gate_path,
    }
    if (model_dir / MINILM_VOCABULARY_FILE).is_file():
        files[MINILM_VOCABULARY_FILE] = model_dir / MINILM_VOCABULARY_FILE
    # The version keeps its evaluation for review later (evaluate dirs written before the
    # error report existed lack it).
    for name in (PLOTS_FILE, ERRORS_REPORT_FILE, ERRORS_FILE):
        if (evaluate_dir / name).is_file():
            files[name] = evaluate_dir / name
    version = version_id(run_date, files[MODEL_FILE])
    metrics = json.loads(files[METRICS_FILE].read_text())
    uri = registry.publish(
        version,
        files,
        {
            "run_id": run_id,
            "run_date": run_date.isoformat(),
            "f1": metrics.get("f1"),
            "threshold": metrics.get("threshold"),
        },
    )
    pointer = registry.promote(version, promoted_at=run_date.isoformat())
    return Deployment(version, uri, pointer)
