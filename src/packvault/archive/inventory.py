"""Reading an S3 Inventory report: the (key, size) of every object, for a scale-out plan without a LIST.

S3 Inventory writes, per report, ``<destination prefix>/<source bucket>/<config id>/<date>/manifest.json``::

    {"sourceBucket": "b", "destinationBucket": "arn:aws:s3:::dest", "fileFormat": "CSV" | "Parquet" | "ORC",
     "fileSchema": "Bucket, Key, Size, LastModifiedDate, ETag" (CSV) or a Parquet message schema,
     "files": [{"key": "prefix/b/id/data/....csv.gz", "size": 123, "MD5checksum": "..."}, ...]}

CSV data files are gzip-compressed, without a header, with the columns ``fileSchema`` names; their keys are
URL-encoded (``%2F``, ``+`` for a space, as S3 writes them).  Parquet files hold the columns ``bucket``,
``key``, ``size``, ... with plain keys.  ORC is not read (pyarrow's ORC reader is not in every build): such a
report is refused with one line.  The data files live in the manifest's destination bucket, reached through
the same endpoint and credentials as the manifest's URL.

Every data file is downloaded to a temporary file and read from there in batches (CSV by line, Parquet by
row group), so memory stays bounded whatever the size of the report.  Objects whose ``IsLatest`` column says
``false`` (a report of all versions) and delete markers are skipped: the plan is made of current objects.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import unquote_plus

from ..errors import UsageError
from ..storage.buckets import Bucket, BucketLocation, Buckets
from .s3source import parse_source_url

_DOWNLOAD_CHUNK = 8 * 1024 * 1024


@dataclass
class InventoryRead:
    """What reading the report cost and saw."""

    files: int = 0
    bytes_read: int = 0
    objects: int = 0
    skipped: int = 0  # rows of other buckets or prefixes, old versions, delete markers
    requests: dict = field(default_factory=dict)


def _bucket_of(arn_or_name: str) -> str:
    return arn_or_name.rsplit(":", 1)[-1] if arn_or_name.startswith("arn:") else arn_or_name


def _download(bucket: Bucket, key: str, into) -> int:
    """Stream the object ``key`` into the open binary file ``into``; its size."""
    head = bucket.head(key, f"read s3://{bucket.name}/{key}")
    if head is None:
        raise UsageError(f"the inventory file s3://{bucket.name}/{key} does not exist", hint="check the manifest URL")
    reader = bucket.open(key, etag=head.etag, size=head.size)
    total = 0
    try:
        while True:
            data = reader.read(_DOWNLOAD_CHUNK)
            if not data:
                break
            into.write(data)
            total += len(data)
    finally:
        reader.close()
    into.seek(0)
    return total


def read_manifest(manifest_url: str, buckets: Buckets, settings=None) -> tuple[dict, BucketLocation]:
    location = parse_source_url(manifest_url, settings)
    if not location.prefix.endswith(".json"):
        raise UsageError(f"{manifest_url} is no inventory manifest", hint="give the URL of its manifest.json")
    with tempfile.TemporaryFile(prefix="packvault-inventory-") as f:
        _download(buckets.bucket(location), location.prefix, f)
        try:
            manifest = json.load(f)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"{manifest_url} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise UsageError(f"{manifest_url} is no S3 Inventory manifest (no 'files' list)")
    return manifest, location


def inventory_records(
    manifest_url: str,
    source: BucketLocation,
    *,
    settings=None,
    read: InventoryRead | None = None,
) -> Iterator[tuple[str, int]]:
    """(key, size) of every current object of ``source`` (its bucket, below its prefix) in the report."""
    read = read if read is not None else InventoryRead()
    buckets = Buckets()
    try:
        manifest, location = read_manifest(manifest_url, buckets, settings)
        fmt = str(manifest.get("fileFormat", "CSV")).upper()
        if fmt not in ("CSV", "PARQUET"):
            raise UsageError(
                f"inventory format {fmt} is not supported", hint="configure the inventory as CSV or Parquet"
            )
        reported = manifest.get("sourceBucket")
        if reported and reported != source.bucket:
            raise UsageError(f"the inventory is of bucket {reported!r}, not of {source.bucket!r}")
        destination = _bucket_of(str(manifest.get("destinationBucket") or location.bucket))
        data_bucket = buckets.bucket(replace(location, bucket=destination, prefix=""))
        columns = [c.strip() for c in str(manifest.get("fileSchema", "")).split(",")] if fmt == "CSV" else []
        below = source.prefix + "/" if source.prefix else ""
        for entry in manifest["files"]:
            key = entry.get("key") if isinstance(entry, dict) else None
            if not isinstance(key, str):
                raise UsageError(f"{manifest_url}: a file entry without a key")
            with tempfile.TemporaryFile(prefix="packvault-inventory-") as f:
                read.bytes_read += _download(data_bucket, key, f)
                read.files += 1
                _verify_md5(f, entry, key)
                rows = _csv_rows(f, columns) if fmt == "CSV" else _parquet_rows(f)
                for bucket_name, obj_key, size, current in rows:
                    if bucket_name != source.bucket or not obj_key.startswith(below) or not current:
                        read.skipped += 1
                        continue
                    read.objects += 1
                    yield obj_key, size
    finally:
        read.requests = buckets.request_stats()


def _verify_md5(f, entry: dict, key: str) -> None:
    expected = entry.get("MD5checksum")
    if not expected:
        return
    digest = hashlib.md5(usedforsecurity=False)
    for block in iter(lambda: f.read(_DOWNLOAD_CHUNK), b""):
        digest.update(block)
    f.seek(0)
    if digest.hexdigest() != expected:
        raise UsageError(f"inventory file {key} does not match its MD5 in the manifest", hint="the report is damaged")


def _csv_rows(f, columns: list[str]) -> Iterator[tuple[str, str, int, bool]]:
    lowered = [c.lower() for c in columns]
    try:
        bucket_at, key_at, size_at = lowered.index("bucket"), lowered.index("key"), lowered.index("size")
    except ValueError:
        raise UsageError("the inventory's fileSchema must name Bucket, Key and Size") from None
    latest_at = lowered.index("islatest") if "islatest" in lowered else None
    marker_at = lowered.index("isdeletemarker") if "isdeletemarker" in lowered else None
    with gzip.GzipFile(fileobj=f) as gz, io.TextIOWrapper(gz, encoding="utf-8", newline="") as text:
        for row in csv.reader(text):
            if not row:
                continue
            current = (latest_at is None or row[latest_at].lower() != "false") and (
                marker_at is None or row[marker_at].lower() != "true"
            )
            yield row[bucket_at], unquote_plus(row[key_at]), int(row[size_at] or 0), current


def _parquet_rows(f) -> Iterator[tuple[str, str, int, bool]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(f)
    names = {name.lower(): name for name in parquet.schema_arrow.names}
    if not {"bucket", "key", "size"} <= set(names):
        raise UsageError("the inventory's Parquet files must have the columns bucket, key and size")
    wanted = [names[c] for c in ("bucket", "key", "size", "is_latest", "is_delete_marker") if c in names]
    for batch in parquet.iter_batches(columns=wanted):
        data = batch.to_pydict()  # one batch (a bounded number of rows) at a time
        latest = data.get(names.get("is_latest", ""), [None] * batch.num_rows)
        markers = data.get(names.get("is_delete_marker", ""), [None] * batch.num_rows)
        for bucket_name, key, size, is_latest, is_marker in zip(
            data[names["bucket"]], data[names["key"]], data[names["size"]], latest, markers, strict=True
        ):
            yield bucket_name, key, int(size or 0), is_latest is not False and is_marker is not True
