"""Restore an archive into a bucket: ``packvault extract REPO::NAME --target s3://bucket/prefix``.

Each file item becomes one object whose key is the prefix joined with the item path (``bucket/key`` for
an archive of a bucket, like a directory restore puts it at ``DIR/bucket/key``); ``strip_components``
drops leading path components, so ``strip_components=1`` puts objects back under their original keys.
Directories, links and devices have no S3 counterpart and are skipped (links and devices with a warning).

Verification is the same as a directory restore: every chunk is authenticated and its id recomputed by
the ``ChunkReader``.  An object is only created once all its data verified: small files are one PUT of
the buffered data, larger ones a multipart upload that is aborted (never completed) if a chunk fails, so
a bucket never shows a partial or wrong object under the restored key.  Memory per object is bounded by
one part.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import time
from collections.abc import Callable, Iterator

from ..errors import AccessDenied, BucketNotFound, EndpointUnreachable, NoCredentials, StorageError
from ..repository.reader import ChunkReader
from ..storage.accounting import RequestCounter
from ..storage.s3_client import make_client
from ..storage.s3_errors import is_not_found
from . import items as it
from .extract import ExtractStats, safe_relative
from .s3source import parse_source_url, s3_call

PART_SIZE = 16 * 1024 * 1024  # S3 minimum part size is 5 MiB; 16 MiB keeps requests few and memory flat
MAX_PARTS = 10_000
# failures that would fail every object alike end the restore instead of being reported per file
FATAL = (BucketNotFound, AccessDenied, NoCredentials, EndpointUnreachable)


class S3Restorer:
    """Writes file items of an archive as objects under ``s3://bucket/prefix``; API like ``Extractor``."""

    def __init__(
        self,
        reader: ChunkReader,
        target: str,
        *,
        dry_run: bool = False,
        strip_components: int = 0,
        progress: Callable[[ExtractStats, str], None] | None = None,
        client=None,
    ):
        self.reader = reader
        self.location = parse_source_url(target)
        self.dry_run = dry_run
        self.strip_components = strip_components
        self.progress = progress
        self.requests = RequestCounter()  # every HTTP attempt to the target bucket
        self.client = client if client is not None else make_client(self.location, self.requests)
        self.stats = ExtractStats()

    def error(self, path: str, message: str) -> None:
        self.stats.errors.append(f"{path}: {message}")
        print(f"error: {path}: {message}", file=sys.stderr)

    def warn(self, path: str, message: str) -> None:
        self.stats.warnings.append(f"{path}: {message}")
        print(f"warning: {path}: {message}", file=sys.stderr)

    def object_key(self, item: dict) -> str | None:
        """The destination key of an item, or None when it has no place under the target."""
        parts = safe_relative(item["p"]).split(b"/")[self.strip_components :]
        if not parts or parts == [b""]:
            return None
        rel = b"/".join(parts).decode("utf-8")  # S3 keys are UTF-8; other names raise UnicodeDecodeError
        return f"{self.location.prefix}/{rel}" if self.location.prefix else rel

    def check_target(self) -> None:
        """Fail fast (before reading the archive) when the target bucket is missing or unreachable."""
        if self.dry_run:
            return
        try:
            s3_call(self.location, f"write to {self.location.location()}", self._head_bucket)
        except StorageError as exc:
            if exc.__cause__ is not None and is_not_found(exc.__cause__):
                raise BucketNotFound(f"target bucket {self.location.bucket!r} does not exist") from exc
            raise

    def _head_bucket(self):
        return self.client.head_bucket(Bucket=self.location.bucket)

    def run(self, items: Iterator[dict]) -> ExtractStats:
        self.check_target()
        upload: _Upload | None = None
        try:
            for item, data in self.reader.iter_tagged(it.chunk_pairs(items)):
                if upload is None or item is not upload.item:
                    if upload is not None:
                        self._finish(upload)
                    upload = self._start(item)
                if upload is None or data is None:
                    continue
                if isinstance(data, BaseException):
                    upload.failed = upload.failed or str(data)
                    continue
                upload.write(data)
            if upload is not None:
                self._finish(upload)
                upload = None
        finally:
            if upload is not None:
                upload.abort()
        self.stats.duration = time.monotonic() - self.stats.started
        return self.stats

    def _start(self, item: dict) -> _Upload | None:
        path = it.path_str(item)
        if self.progress:
            self.progress(self.stats, path)
        kind = item["t"]
        if kind == it.DIR:
            self.stats.ndirs += 1
            return None
        if kind != it.FILE:
            self.stats.nother += 1
            self.warn(path, "not a regular file; a bucket cannot hold it (skipped)")
            return None
        self.stats.nfiles += 1
        try:
            key = self.object_key(item)
        except UnicodeDecodeError:
            self.error(path, "name is not valid UTF-8; an S3 key cannot hold it")
            return _Upload(self, item, None)
        if key is None:
            self.warn(path, "path is stripped away entirely (strip_components); skipped")
            return _Upload(self, item, None)
        return _Upload(self, item, key)

    def _finish(self, upload: _Upload) -> None:
        if upload.key is None:
            upload.abort()
            return
        if upload.failed:
            upload.abort()
            self.error(it.path_str(upload.item), f"not restored: {upload.failed}")
            return
        try:
            upload.complete()
        except FATAL:
            raise
        except StorageError as exc:
            upload.abort()
            self.error(it.path_str(upload.item), f"not restored: {exc}")
            return
        self.stats.bytes_written += upload.written


class _Upload:
    """One object being written: buffered up to a part, then a multipart upload completed at the end."""

    def __init__(self, restorer: S3Restorer, item: dict, key: str | None):
        self.restorer = restorer
        self.item = item
        self.key = key
        self.failed: str | None = None
        self.written = 0
        size = int(item.get("s", 0))
        self.part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []

    @property
    def _bucket(self) -> str:
        return self.restorer.location.bucket

    def write(self, data: bytes) -> None:
        if self.failed or self.key is None:
            return
        self.buffer += data
        self.written += len(data)
        while len(self.buffer) >= self.part_size and not self.failed:
            part = bytes(self.buffer[: self.part_size])
            del self.buffer[: self.part_size]
            try:
                self._upload_part(part)
            except FATAL:
                raise
            except StorageError as exc:
                self.failed = str(exc)  # reported (and the upload aborted) when the object ends

    def _upload_part(self, data: bytes) -> None:
        if self.restorer.dry_run:
            return
        client = self.restorer.client
        if self.upload_id is None:
            response = self._s3(client.create_multipart_upload, Bucket=self._bucket, Key=self.key)
            self.upload_id = response["UploadId"]
        number = len(self.parts) + 1
        response = self._s3(
            client.upload_part,
            Bucket=self._bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ContentMD5=_md5(data),
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def complete(self) -> None:
        if self.restorer.dry_run:
            return
        client = self.restorer.client
        if self.upload_id is None:
            data = bytes(self.buffer)
            self._s3(client.put_object, Bucket=self._bucket, Key=self.key, Body=data, ContentMD5=_md5(data))
            self.buffer = bytearray()
            return
        if self.buffer:
            self._upload_part(bytes(self.buffer))
            self.buffer = bytearray()
        self._s3(
            client.complete_multipart_upload,
            Bucket=self._bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )
        self.upload_id = None

    def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is not None and not self.restorer.dry_run:
            upload_id, self.upload_id = self.upload_id, None
            try:
                self.restorer.client.abort_multipart_upload(Bucket=self._bucket, Key=self.key, UploadId=upload_id)
            except Exception as exc:  # noqa: BLE001 - best effort; a lifecycle rule removes leftovers
                self.restorer.warn(it.path_str(self.item), f"could not abort the multipart upload: {exc}")

    def _s3(self, method, **kwargs):
        """One request with bounded retries.  Repeating a PUT or a part is harmless: same key, same bytes."""
        return s3_call(self.restorer.location, f"write s3://{self._bucket}/{self.key}", lambda: method(**kwargs))


def _md5(data: bytes) -> str:
    """Content-MD5: the service verifies every upload against it (bit errors in transit are refused)."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
