"""Deliveries into the training catalogue: contract per row, quarantine, merge, a new data version.

A delivery is a folder in the catalogue format (catalog.csv and its photos) named by its date
(2026-01-08, or 2026-01-08-suffix), in the inbox (a local folder or an s3:// prefix). Ingesting
one checks every row against the data contract, quarantines the rows that fail (reports and S3
quarantine/<delivery>/), merges the rest into the catalogue (key product_id + variant: new rows
added, existing ones replaced; photos copied under content-addressed names), validates the
merged catalogue as a whole, swaps it in atomically under a file lock, and records the result
as a new DVC data version (dvc add, dvc push to the remote `pmatch`, deliveries/<delivery>/
ingest.json in S3).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import ctypes
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pmatch.artifacts import CATALOG_FILE
from pmatch.catalog.format import REQUIRED_COLUMNS, CatalogError, read_catalog_table
from pmatch.catalog.version import catalog_version
from pmatch.config import Params, Settings

# The catalogue's record of the deliveries it holds (one row each), inside the catalogue so
# every data version says which deliveries made it.
LEDGER_FILE = "deliveries.csv"
LEDGER_COLUMNS = ("delivery", "content_hash", "rows", "accepted", "quarantined")
# Where delivered photos go inside the catalogue, named by their sha256.
DELIVERED_IMAGES = "images/delivered"
# The optional review column of a delivery: 1 = the photo matches the title, 0 = it does not.
LABEL_COLUMN = "label"
REVIEWED_MISMATCH = "reviewed: photo does not match title"
ALREADY_IN_CATALOGUE = "photo already belongs to another product of the catalogue"
REPORT_JSON = "ingest.json"
# Where in the registry's prefix the catalogue's current .dvc file is kept.
CATALOG_POINTERS = "catalog"


def catalog_pointer_key(catalog: str | Path) -> tuple[str, str]:
    """The registry key parts of the .dvc file naming a catalogue's current version.

    catalog: the catalogue folder relative to the project (data/catalog)."""
    return (CATALOG_POINTERS, f"{Path(catalog).as_posix()}.dvc")


REPORT_HTML = "ingest.html"
# The lock object (in the registry's prefix) an ingest holds while it merges, so that
# ingests on machines sharing S3 take turns. A crashed ingest blocks the others for at most
# the expiry, the ingest task's timeout; a waiting one gives up after the wait.
CATALOG_LOCK = "locks/catalog.lock"
CATALOG_LOCK_EXPIRY_SECONDS = 60 * 60.0
CATALOG_LOCK_WAIT_SECONDS = 15 * 60.0
THUMBNAIL_SIDE = 96


class DeliveryRefused(ValueError):
    """A delivery broken as a whole; nothing of it was merged. The message says what to fix."""


@dataclass
class IngestResult:
    """What one ingest did; as_json() is what `pmatch ingest` prints."""

    delivery: str
    rows: int
    accepted: int
    quarantined: dict[str, int]
    data_version: str
    previous_data_version: str | None
    content_hash: str
    already_ingested: bool = False
    quarantined_rows: list[dict] = field(default_factory=list)
    dvc_file: str | None = None
    report_html: str | None = None
    s3_record: str | None = None

    def as_json(self) -> dict:
        return {
            "delivery": self.delivery,
            "rows": self.rows,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "data_version": self.data_version,
            "previous_data_version": self.previous_data_version,
            "already_ingested": self.already_ingested,
            "report_html": self.report_html,
            "s3_record": self.s3_record,
        }


# Inbox -----------------------------------------------------------------------------------


def is_s3(location: str) -> bool:
    return str(location).startswith("s3://")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def _client(settings: Settings):
    from pmatch.s3server import s3_client

    return s3_client(settings.s3_endpoint_url, settings.aws_region)


def delivery_name(source: str | Path) -> str:
    """A delivery's name: its folder's last part (2026-01-08)."""
    return str(source).rstrip("/").rsplit("/", 1)[-1]


def list_inbox(inbox: str | Path, settings: Settings | None = None) -> list[str]:
    """Every delivery in the inbox (folders holding catalog.csv), as sources, in name order."""
    if is_s3(str(inbox)):
        if settings is None:
            raise ValueError(f"{inbox}: an S3 inbox needs the S3 settings")
        bucket, prefix = _split_s3(str(inbox))
        paginator = _client(settings).get_paginator("list_objects_v2")
        names = set()
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else ""):
            for item in page.get("Contents", []):
                relative = item["Key"][len(prefix) + 1 if prefix else 0 :]
                parts = relative.split("/")
                if len(parts) == 2 and parts[1] == CATALOG_FILE:
                    names.add(parts[0])
        base = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return [f"{base}/{name}" for name in sorted(names)]
    folder = Path(inbox)
    if not folder.is_dir():
        return []
    return [
        str(path)
        for path in sorted(folder.iterdir())
        if path.is_dir() and (path / CATALOG_FILE).is_file()
    ]


def read_ledger(catalog: Path) -> pd.DataFrame:
    path = catalog / LEDGER_FILE
    if not path.is_file():
        return pd.DataFrame(columns=list(LEDGER_COLUMNS), dtype=str)
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def refused_file(catalog: Path) -> Path:
    """Beside the catalogue: the deliveries refused whole (name, reason), so --pending does not
    try them again and again; a fixed delivery comes under a new name or with --delivery."""
    return catalog.with_name(f".{catalog.name}.refused.csv")


def refused_deliveries(catalog: Path) -> set[str]:
    path = refused_file(catalog)
    if not path.is_file():
        return set()
    return set(pd.read_csv(path, dtype=str, keep_default_na=False)["delivery"])


def _record_refusal(catalog: Path, name: str, reason: str) -> None:
    path = refused_file(catalog)
    new = not path.is_file()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["delivery", "reason"])
        writer.writerow([name, reason.splitlines()[0][:300]])


def pending_deliveries(
    inbox: str | Path, catalog: str | Path, settings: Settings | None = None
) -> list[str]:
    """The inbox's deliveries the catalogue does not hold yet (by name) and that were not
    refused whole before, oldest first."""
    catalog = Path(catalog)
    done = set(read_ledger(catalog)["delivery"]) | refused_deliveries(catalog)
    return [source for source in list_inbox(inbox, settings) if delivery_name(source) not in done]


def download_delivery(source: str, settings: Settings, destination: Path) -> Path:
    """Copies an S3 delivery (every object under the prefix) into destination."""
    bucket, prefix = _split_s3(source)
    client = _client(settings)
    paginator = client.get_paginator("list_objects_v2")
    found = False
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for item in page.get("Contents", []):
            relative = item["Key"][len(prefix) + 1 :]
            if not relative or relative.endswith("/"):
                continue
            target = destination / relative
            if not target.resolve().is_relative_to(destination.resolve()):
                raise DeliveryRefused(
                    f"s3://{bucket}/{item['Key']}: the key leaves the delivery's prefix; "
                    "remove the object (keys must not hold '..')"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, item["Key"], str(target))
            found = True
    if not found:
        raise DeliveryRefused(f"{source}: no objects under this prefix; check the delivery's URI")
    return destination


# The contract per row ----------------------------------------------------------------------


def _reason(kind: str, column: str, row: pd.Series, params: Params) -> str:
    """A quarantine reason (short, countable) for one row failing one expectation."""
    if kind == "expect_column_values_to_not_be_null":
        return f"{column.removesuffix('_trimmed')} empty"
    if kind == "expect_column_values_to_be_unique":
        return "duplicate product_id + variant in the delivery"
    if kind == "expect_column_value_lengths_to_be_between":
        return f"title under {params.validate.min_title_chars} characters"
    if kind == "expect_column_values_to_be_in_set":
        return f"photo {str(row['image_status']).replace('_', ' ')}"
    if kind == "expect_column_values_to_be_null":
        return "same photo as another product of the delivery"
    return kind


def check_delivery(folder: Path, params: Params) -> tuple[pd.DataFrame, list[int], dict[int, dict]]:
    """Runs the data contract over a delivery's rows.

    Returns (catalog.csv as written, each row's line, {row: {reason, detail}} for the rows to
    quarantine). Raises DeliveryRefused when the delivery is broken as a whole: catalog.csv
    unreadable (missing, empty, not UTF-8, ragged), a required column missing, no rows.
    """
    from pmatch.validate.contract import _checked_frame, _exception_message, _run_suite

    try:
        table = read_catalog_table(folder)
    except CatalogError as error:
        raise DeliveryRefused(f"delivery refused whole: {error}") from error
    missing = [column for column in REQUIRED_COLUMNS if column not in table.frame.columns]
    if missing:
        raise DeliveryRefused(
            f"delivery refused whole: {table.path}: missing column(s) {', '.join(missing)} "
            f"(found {', '.join(table.frame.columns)}); add them to the header line (line 1)"
        )
    if table.frame.empty:
        raise DeliveryRefused(
            f"delivery refused whole: {table.path} has a header but no rows; a delivery "
            "brings one row per new or changed listing"
        )
    frame = _checked_frame(folder, table, params.validate)
    result = _run_suite(frame, params.validate)
    quarantine: dict[int, dict] = {}
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        column = config.kwargs.get("column", "")
        exception = _exception_message(item.exception_info or {})
        if exception:
            raise DeliveryRefused(
                f"delivery refused whole: {table.path}: expectation {config.type}({column}) "
                f"could not be evaluated ({exception.splitlines()[0][:160]})"
            )
        for index in (item.result or {}).get("unexpected_index_list") or []:
            row = frame.iloc[int(index)]
            detail = str(row.get("same_photo_as") or "") if "null" in config.type else ""
            quarantine.setdefault(
                int(index),
                {"reason": _reason(config.type, column, row, params), "detail": detail},
            )
    if LABEL_COLUMN in table.frame.columns:
        for index, value in enumerate(table.frame[LABEL_COLUMN].str.strip()):
            if value == "0":
                quarantine.setdefault(index, {"reason": REVIEWED_MISMATCH, "detail": ""})
            elif value not in ("", "1"):
                quarantine.setdefault(
                    index, {"reason": "label not 0 or 1", "detail": f"label {value!r}"}
                )
    return table.frame, table.lines, quarantine


# Merging --------------------------------------------------------------------------------


def _row_keys(frame: pd.DataFrame) -> pd.Series:
    product = frame["product_id"].str.strip()
    variant = frame["variant"].str.strip() if "variant" in frame.columns else ""
    return product.where(variant == "", product + "/" + variant)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _stored_photo(source: Path, staging: Path) -> str:
    """Copies a delivered photo into staging under its sha256; returns its image_path."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    image_path = f"{DELIVERED_IMAGES}/{digest[:32]}{source.suffix.lower()}"
    target = staging / image_path
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return image_path


def _write_table(frame: pd.DataFrame, path: Path) -> None:
    # A new file (never written through a hard link to the previous version's file).
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    frame.to_csv(path, index=False, lineterminator="\n")


def _merge(
    catalog: Path,
    staging: Path,
    delivery_dir: Path,
    delivery: pd.DataFrame,
    accepted: list[int],
) -> tuple[pd.DataFrame, list[int]]:
    """Writes into staging the catalogue with the accepted delivery rows merged in.

    Returns (the merged catalog.csv, the merged rows that came from the delivery).
    """
    if (catalog / CATALOG_FILE).is_file():
        shutil.copytree(catalog, staging, copy_function=_link_or_copy, dirs_exist_ok=True)
        current = read_catalog_table(catalog).frame
    else:
        current = pd.DataFrame(columns=["product_id", "variant", "title", "image_path"], dtype=str)
    incoming = delivery.iloc[accepted].drop(columns=[LABEL_COLUMN], errors="ignore").copy()
    incoming["image_path"] = [
        _stored_photo(delivery_dir / path.strip(), staging) for path in incoming["image_path"]
    ]
    replaced = _row_keys(current).isin(set(_row_keys(incoming)))
    kept = current[~replaced]
    columns = list(current.columns) + [c for c in incoming.columns if c not in current.columns]
    merged = pd.concat([kept, incoming], ignore_index=True).reindex(columns=columns).fillna("")
    # Photos only the replaced rows used leave the catalogue with them.
    still_used = set(merged["image_path"].str.strip())
    for old in set(current[replaced]["image_path"].str.strip()) - still_used:
        with contextlib.suppress(FileNotFoundError):
            (staging / old).unlink()
    _write_table(merged, staging / CATALOG_FILE)
    return merged, list(range(len(kept), len(merged)))


def _conflicts_with_catalogue(staging: Path, delivered_rows: list[int], params: Params) -> dict:
    """{merged row: detail} for delivered rows whose photo another catalogue product holds."""
    from pmatch.validate.contract import _checked_frame

    table = read_catalog_table(staging)
    frame = _checked_frame(staging, table, params.validate)
    conflicts = {
        row: str(frame["same_photo_as"].iloc[row])
        for row in delivered_rows
        if frame["same_photo_as"].iloc[row] is not None
    }
    # A byte-identical photo is stored under the same content-addressed name as the
    # catalogue's copy, so it shows as one file named by two products: also a conflict here.
    delivered = set(delivered_rows)
    products = table.frame["product_id"].str.strip()
    owners: dict[str, int] = {}
    for row, image_path in enumerate(table.frame["image_path"].str.strip()):
        if row not in delivered:
            owners.setdefault(image_path, row)
    for row in delivered_rows:
        owner = owners.get(table.frame["image_path"].iloc[row].strip())
        if owner is not None and products[owner] != products[row] and row not in conflicts:
            conflicts[row] = (
                f"line {table.line(owner)} of the catalogue (product {products[owner]!r}): "
                "byte-identical photo"
            )
    return conflicts


# Swapping a folder in -----------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(first: Path, second: Path) -> bool:
    """Swaps two folders in one atomic step (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    status = renameat2(
        _AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE
    )
    return status == 0


def swap_in(staging: Path, catalog: Path) -> None:
    """Makes staging the catalogue. Readers see the old folder or the new one, never a mix:
    an atomic exchange where the kernel has one, else two renames (a crash between them
    leaves the old version beside the catalogue as .<name>.previous, which ingest restores)."""
    if not catalog.exists():
        staging.rename(catalog)
        return
    if _exchange(staging, catalog):
        shutil.rmtree(staging)
        return
    previous = catalog.with_name(f".{catalog.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    catalog.rename(previous)
    staging.rename(catalog)
    shutil.rmtree(previous)


def _recover(catalog: Path) -> None:
    """Puts back a previous version a crash left between the two renames of swap_in."""
    previous = catalog.with_name(f".{catalog.name}.previous")
    if previous.is_dir() and not catalog.exists():
        previous.rename(catalog)
    for stale in catalog.parent.glob(f".{catalog.name}.ingest-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def catalogue_lock(catalog: Path):
    """Holds an exclusive lock on the catalogue (a file beside it) while ingesting; a second
    ingest waits. The kernel drops the lock when a process dies, so a crash never wedges it."""
    catalog.parent.mkdir(parents=True, exist_ok=True)
    with open(catalog.with_name(f".{catalog.name}.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# DVC ----------------------------------------------------------------------------------------


def _dvc_project(catalog: Path, project_root: Path | None) -> Path | None:
    """The DVC project that tracks the catalogue, or None (an untracked catalogue)."""
    if project_root is None or not (project_root / ".dvc").is_dir():
        return None
    if not catalog.resolve().is_relative_to(project_root.resolve()):
        return None
    return project_root


def _dvc_add(project: Path, catalog: Path) -> Path:
    relative = catalog.resolve().relative_to(project.resolve())
    completed = subprocess.run(
        [sys.executable, "-m", "dvc", "add", str(relative)],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"dvc add {relative} failed in {project}: "
            f"{(completed.stderr.strip() or completed.stdout.strip())[-800:]}; the "
            "catalogue holds the new version, run `dvc add` there again to record it"
        )
    return project / f"{relative}.dvc"


# The report --------------------------------------------------------------------------------


def _thumbnail(path: Path) -> str | None:
    """A small JPEG of the photo as a data: URI, or None when it cannot be decoded safely."""
    from PIL import Image

    try:
        if not path.is_file() or path.stat().st_size > 20_000_000:
            return None
        with Image.open(path) as image:
            if image.width * image.height > 40_000_000:
                return None
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=80)
    except Exception:  # Not an image, truncated: the row's reason says so already.
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _write_report(report_dir: Path, document: dict, quarantined_rows: list[dict]) -> Path:
    from pmatch.templates import render_page

    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / REPORT_JSON).write_text(json.dumps(document, indent=2, default=str))
    page = report_dir / REPORT_HTML
    page.write_text(
        render_page("ingest.html.j2", report=document, rows=quarantined_rows), encoding="utf-8"
    )
    return page


# Ingest ------------------------------------------------------------------------------------


def ingest_delivery(
    source: str | Path,
    catalog: str | Path,
    params: Params,
    report_root: str | Path,
    project_root: str | Path | None = None,
    settings: Settings | None = None,
) -> IngestResult:
    """Ingests one delivery (a local folder or an s3:// URI) into the catalogue folder.

    report_root: reports/ingest; the report goes to <report_root>/<delivery>/.
    project_root: the DVC project whose data/catalog.dvc tracks the catalogue (None or a
    folder without .dvc/: the catalogue is not tracked). settings: S3 with a resolved endpoint
    (pmatch.storage.s3_settings) to push the data version to the DVC remote and record the
    delivery and its quarantine in S3; None keeps everything local. With both, the merge
    runs under the catalogue's lock in S3 on top of the version S3 names (shared_catalogue).
    Raises DeliveryRefused (nothing merged) when the delivery is broken as a whole.
    """
    catalog = Path(catalog)
    name = delivery_name(source)
    project = _dvc_project(catalog, Path(project_root) if project_root else None)
    report_dir = Path(report_root) / name
    with tempfile.TemporaryDirectory(prefix="pmatch-delivery-") as scratch:
        if is_s3(str(source)):
            if settings is None:
                raise ValueError(f"{source}: an S3 delivery needs the S3 settings")
            delivery_dir = download_delivery(str(source), settings, Path(scratch) / name)
        else:
            delivery_dir = Path(source)
            if not delivery_dir.is_dir():
                raise DeliveryRefused(f"{delivery_dir}: no such delivery folder")
        # This machine's lock, then S3's (every ingest takes them in this order).
        with catalogue_lock(catalog):
            _recover(catalog)
            with shared_catalogue(project, catalog, settings):
                return _merge_and_publish(
                    delivery_dir, name, catalog, params, report_dir, project, settings
                )


def _merge_and_publish(
    delivery_dir: Path,
    name: str,
    catalog: Path,
    params: Params,
    report_dir: Path,
    project: Path | None,
    settings: Settings | None,
) -> IngestResult:
    try:
        result = _ingest_locked(delivery_dir, name, catalog, params, report_dir, project)
    except DeliveryRefused as refused:
        _record_refusal(catalog, name, str(refused))
        raise
    if result.already_ingested:
        # A retry after a failed push or S3 write: finish publishing what is there.
        if settings is not None and not _recorded(settings, name):
            _finish_publishing(result, project, catalog, report_dir, settings)
        return result
    if project is not None:
        result.dvc_file = str(_dvc_add(project, catalog))
    if settings is not None:
        _publish(result, project, report_dir, settings)
    return result


@contextlib.contextmanager
def shared_catalogue(project: Path | None, catalog: Path, settings: Settings | None):
    """While an ingest merges, with S3: holds the catalogue's lock in S3 (CATALOG_LOCK: one
    ingest at a time on every machine sharing the prefix) and first brings this machine's
    catalogue to the version S3 names as current (sync_catalogue), so that no ingest merges
    into a stale version and overwrites another machine's. Without S3 or DVC: nothing."""
    if settings is None or project is None:
        yield
        return
    from pmatch.storage import open_registry

    with open_registry(settings).lock(
        CATALOG_LOCK,
        expiry_seconds=CATALOG_LOCK_EXPIRY_SECONDS,
        wait_seconds=CATALOG_LOCK_WAIT_SECONDS,
        holder="ingest",
    ):
        sync_catalogue(project, catalog, settings)
        yield


def sync_catalogue(project: Path, catalog: Path, settings: Settings) -> bool:
    """Brings the catalogue of the DVC project to the version S3 names as current (the .dvc
    file the last ingest, on whatever machine, left under catalog/ in the registry): writes
    that .dvc file and `dvc pull`s it. Nothing to do when they agree, when S3 names none
    yet, or for a catalogue outside the DVC project. Returns whether it pulled."""
    from pmatch import dvc_remote
    from pmatch.storage import open_registry

    project, catalog = Path(project).resolve(), Path(catalog).resolve()
    if not catalog.is_relative_to(project) or not (project / ".dvc").is_dir():
        return False
    key = catalog_pointer_key(catalog.relative_to(project))
    relative = key[-1]
    current = open_registry(settings).read_file(*key)
    local = project / relative
    if current is None or (local.is_file() and local.read_bytes() == current):
        return False
    print(
        f"ingest: {relative} here differs from the current one in S3 (another machine "
        "ingested since): pulling S3's version first",
        flush=True,
    )
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(current)
    dvc_remote.configure_remote(project, settings)
    dvc_remote.pull(project, [relative])
    return True


def _recorded(settings: Settings, name: str) -> bool:
    """Whether S3 holds deliveries/<name>/ingest.json already."""
    from pmatch.storage import open_registry

    registry = open_registry(settings)
    listed = registry.client.list_objects_v2(
        Bucket=registry.bucket, Prefix=registry.key("deliveries", name, REPORT_JSON)
    )
    return bool(listed.get("Contents"))


def _finish_publishing(
    result: IngestResult, project: Path | None, catalog: Path, report_dir: Path, settings
) -> None:
    if project is not None:
        result.dvc_file = str(_dvc_add(project, catalog))
    saved = report_dir / REPORT_JSON
    if saved.is_file():
        document = json.loads(saved.read_text())
        result.quarantined = document.get("quarantined", {})
        result.quarantined_rows = document.get("quarantined_rows", [])
        result.previous_data_version = document.get("previous_data_version")
    _publish(result, project, report_dir, settings)


def _ingest_locked(
    delivery_dir: Path,
    name: str,
    catalog: Path,
    params: Params,
    report_dir: Path,
    project: Path | None,
) -> IngestResult:
    content_hash = catalog_version(delivery_dir) if (delivery_dir / CATALOG_FILE).is_file() else ""
    previous = catalog_version(catalog) if (catalog / CATALOG_FILE).is_file() else None
    ledger = read_ledger(catalog)
    done = ledger[(ledger["delivery"] == name) & (ledger["content_hash"] == content_hash)]
    if content_hash and not done.empty:
        return IngestResult(
            delivery=name,
            rows=int(done["rows"].iloc[-1]),
            accepted=int(done["accepted"].iloc[-1]),
            quarantined={},
            data_version=previous,
            previous_data_version=previous,
            content_hash=content_hash,
            already_ingested=True,
        )
    try:
        frame, lines, quarantine = check_delivery(delivery_dir, params)
    except DeliveryRefused as error:
        _write_report(report_dir, {"delivery": name, "refused": str(error)}, [])
        raise
    failing = sum(1 for entry in quarantine.values() if entry["reason"] != REVIEWED_MISMATCH)
    if failing > params.ingest.max_rejected_share * len(frame):
        reasons = _counts(quarantine)
        message = (
            f"delivery {name} refused whole: {failing} of {len(frame)} rows fail the data "
            f"contract ({', '.join(f'{reason}: {count}' for reason, count in reasons.items())}), "
            f"more than ingest.max_rejected_share ({params.ingest.max_rejected_share}); fix the "
            f"delivery at its source and deliver it again (report: {report_dir / REPORT_HTML})"
        )
        rows = _quarantined_rows(frame, lines, quarantine, delivery_dir)
        _write_report(report_dir, {"delivery": name, "refused": message}, rows)
        raise DeliveryRefused(message)

    staging = Path(tempfile.mkdtemp(prefix=f".{catalog.name}.ingest-", dir=catalog.parent))
    try:
        os.chmod(staging, 0o755)
        accepted = [row for row in range(len(frame)) if row not in quarantine]
        merged, delivered = _merge(catalog, staging, delivery_dir, frame, accepted)
        conflicts = _conflicts_with_catalogue(staging, delivered, params)
        if conflicts:
            for merged_row, detail in conflicts.items():
                row = accepted[delivered.index(merged_row)]
                quarantine[row] = {"reason": ALREADY_IN_CATALOGUE, "detail": detail}
            accepted = [row for row in accepted if row not in quarantine]
            shutil.rmtree(staging)
            staging.mkdir()
            merged, delivered = _merge(catalog, staging, delivery_dir, frame, accepted)
        ledger_row = {
            "delivery": name,
            "content_hash": content_hash,
            "rows": str(len(frame)),
            "accepted": str(len(accepted)),
            "quarantined": str(len(quarantine)),
        }
        ledger = pd.concat([ledger, pd.DataFrame([ledger_row])], ignore_index=True)
        _write_table(ledger, staging / LEDGER_FILE)
        _validate_whole(staging, params, report_dir, name)
        swap_in(staging, catalog)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    rows = _quarantined_rows(frame, lines, quarantine, delivery_dir)
    result = IngestResult(
        delivery=name,
        rows=len(frame),
        accepted=len(accepted),
        quarantined=_counts(quarantine),
        data_version=catalog_version(catalog),
        previous_data_version=previous,
        content_hash=content_hash,
        quarantined_rows=rows,
    )
    page = _write_report(report_dir, _document(result), rows)
    result.report_html = str(page)
    return result


def _validate_whole(staging: Path, params: Params, report_dir: Path, name: str) -> None:
    """The merged catalogue must meet the whole contract, or nothing is swapped in."""
    from pmatch.validate.contract import CatalogValidationError, validate_catalog

    try:
        validate_catalog(staging, params.validate, report_dir / "merged_contract")
    except CatalogValidationError as error:
        raise DeliveryRefused(
            f"delivery {name} refused: the catalogue with it merged breaks the data contract "
            f"(the catalogue is unchanged; page: {report_dir / 'merged_contract'}):\n{error}"
        ) from error


def _counts(quarantine: dict[int, dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in quarantine.values():
        counts[entry["reason"]] = counts.get(entry["reason"], 0) + 1
    return dict(sorted(counts.items()))


def _quarantined_rows(
    frame: pd.DataFrame, lines: list[int], quarantine: dict[int, dict], delivery_dir: Path
) -> list[dict]:
    from pmatch.catalog.format import image_location_problem

    rows = []
    for index in sorted(quarantine):
        record = frame.iloc[index]
        image_path = str(record.get("image_path", "")).strip()
        inside = image_path and not image_location_problem(delivery_dir, image_path)
        photo = delivery_dir / image_path if inside else None
        rows.append(
            {
                "line": lines[index],
                "product_id": record.get("product_id", ""),
                "variant": record.get("variant", ""),
                "title": record.get("title", ""),
                "image_path": image_path,
                "reason": quarantine[index]["reason"],
                "detail": quarantine[index]["detail"],
                "photo": str(photo) if photo is not None and photo.is_file() else None,
                "thumbnail": _thumbnail(photo) if photo is not None else None,
            }
        )
    return rows


def _document(result: IngestResult) -> dict:
    document = result.as_json()
    document["content_hash"] = result.content_hash
    document["quarantined_rows"] = [
        {key: value for key, value in row.items() if key != "thumbnail"}
        for row in result.quarantined_rows
    ]
    return document


def _publish(result: IngestResult, project: Path | None, report_dir: Path, settings: Settings):
    """Pushes the data version to the DVC remote and records the delivery in S3."""
    from pmatch import dvc_remote
    from pmatch.storage import open_registry

    registry = open_registry(settings)
    document = _document(result)
    if project is not None and result.dvc_file:
        dvc_remote.configure_remote(project, settings)
        dvc_remote.push(project, [str(Path(result.dvc_file).relative_to(project))])
        document["dvc_file"] = Path(result.dvc_file).read_text()
        document["dvc_remote"] = dvc_remote.remote_url(settings)
    for row in result.quarantined_rows:
        if row.get("photo") and Path(row["photo"]).is_file():
            row["s3_uri"] = registry.upload_file(
                row["photo"], "quarantine", result.delivery, row["image_path"]
            )
    document["quarantined_rows"] = [
        {key: value for key, value in row.items() if key != "thumbnail"}
        for row in result.quarantined_rows
    ]
    (report_dir / REPORT_JSON).write_text(json.dumps(document, indent=2, default=str))
    registry.upload_file(report_dir / REPORT_HTML, "quarantine", result.delivery, REPORT_HTML)
    result.s3_record = registry.upload_file(
        report_dir / REPORT_JSON, "deliveries", result.delivery, REPORT_JSON
    )
    if project is not None and result.dvc_file:
        # Last, once the data is in the remote: the catalogue's current version, which runs
        # on any machine snapshot (pmatch.run_tasks.start) and later ingests start from.
        catalog = Path(result.dvc_file).relative_to(project).with_suffix("")
        registry.upload_file(result.dvc_file, *catalog_pointer_key(catalog))
