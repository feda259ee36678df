"""Restore an archive into a bucket: ``packvault extract REPO::NAME --target s3://bucket/prefix``.

Each file item becomes one object whose key is the prefix joined with the item path (``bucket/key`` for
an archive of a bucket, like a directory restore puts it at ``DIR/bucket/key``); ``strip_components``
drops leading path components, so ``strip_components=1`` puts objects back under their original keys.
Directories, links and devices have no S3 counterpart and are skipped (links and devices with a warning).

Existing keys: by default a key is written create-only (``If-None-Match: *``), so a restore into a bucket
never replaces an object; one that exists is kept and counted as skipped.  ``overwrite`` chooses otherwise,
with the directory restore's names: ``always`` writes unconditionally; ``if-newer`` replaces an object whose
LastModified is older than the archived mtime and ``if-changed`` one whose content differs (same size and
the same ETag, the one recorded when it was backed up from a bucket or the MD5 of a single-part object,
count as unchanged); both look the object up first (one HEAD per file) and replace it only if it is still
the object they looked at (``If-Match``); ``never`` is the default.  Items with unsafe names
(``items.unsafe_item_reason``) are skipped with a warning, as in a directory restore.

Verification is the same as a directory restore: every chunk is authenticated and its id recomputed by
the ``ChunkReader``.  An object is only created once all its data verified: small files are one PUT of
the buffered data, larger ones a multipart upload that is aborted (never completed) if a chunk fails, so
a bucket never shows a partial or wrong object under the restored key.  Memory per object is bounded by
one part.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable, Iterator

from ..errors import AccessDenied, BucketNotFound, EndpointUnreachable, NoCredentials, StorageError, UsageError
from ..repository.reader import ChunkReader
from ..storage.buckets import NOT_FOUND, PRECONDITION_FAILED, Buckets, ObjectInfo, ObjectUpload, refusal
from ..storage.settings import StorageSettings
from . import items as it
from .extract import (
    OVERWRITE_ALWAYS,
    OVERWRITE_IF_CHANGED,
    OVERWRITE_IF_NEWER,
    OVERWRITE_MODES,
    OVERWRITE_NEVER,
    ExtractStats,
    Warn,
    damage_note,
    shown_path,
    strip_path,
)
from .s3source import parse_source_url

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
        overwrite: str = OVERWRITE_NEVER,
        progress: Callable[[ExtractStats, str], None] | None = None,
        warn: Warn | None = None,
        settings: StorageSettings | None = None,
    ):
        if overwrite not in OVERWRITE_MODES:
            raise UsageError(f"unknown overwrite mode {overwrite!r}", hint=f"use one of {', '.join(OVERWRITE_MODES)}")
        if strip_components < 0:
            raise UsageError("--strip-components must not be negative")
        self.reader = reader
        self.location = parse_source_url(target, settings if settings is not None else StorageSettings())
        self.dry_run = dry_run
        self.strip_components = strip_components
        self.overwrite = overwrite
        self.progress = progress
        self._report = warn
        self.buckets = Buckets()
        self.requests = self.buckets.requests  # every HTTP attempt to the target bucket
        self.bucket = self.buckets.bucket(self.location)
        self.stats = ExtractStats()

    def warn(self, path: str, message: str) -> None:
        self.stats.warnings.append(f"{path}: {message}")
        if self._report:
            self._report(path, message)

    def error(self, path: str, message: str) -> None:
        """A file that could not be restored."""
        self.stats.errors.append(f"{path}: {message}")
        self.warn(path, f"not restored: {message}")

    def object_key(self, item: dict) -> str | None:
        """The destination key of an item, or None when it has no place under the target."""
        rel = strip_path(item[it.PATH], self.strip_components)
        if not rel:
            return None
        text = rel.decode("utf-8")  # S3 keys are UTF-8; other names raise UnicodeDecodeError
        return f"{self.location.prefix}/{text}" if self.location.prefix else text

    def check_target(self) -> None:
        """Fail fast (before reading the archive) when the target bucket is missing or unreachable."""
        if self.dry_run:
            return
        try:
            self.bucket.check_exists(f"write to {self.location.location()}")
        except StorageError as exc:
            if refusal(exc) == NOT_FOUND:
                raise BucketNotFound(f"target bucket {self.location.bucket!r} does not exist") from exc
            raise

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
        path = shown_path(item)
        if self.progress:
            self.progress(self.stats, path)
        reason = it.unsafe_item_reason(item)
        if reason is not None:
            self.error(path, f"unsafe item in the archive ({reason})")
            return _Upload(self, item, None)
        kind = item[it.TYPE]
        if kind == it.DIR:
            self.stats.ndirs += 1
            return None
        if kind != it.FILE:
            self.stats.nother += 1
            self.warn(path, "not a regular file; a bucket cannot hold it (skipped)")
            return None
        try:
            key = self.object_key(item)
        except UnicodeDecodeError:
            self.error(path, "name is not valid UTF-8; an S3 key cannot hold it")
            return _Upload(self, item, None)
        if key is None:  # stripped away entirely (--strip-components), like tar
            return _Upload(self, item, None)
        upload = _Upload(self, item, key)
        if self.overwrite in (OVERWRITE_IF_NEWER, OVERWRITE_IF_CHANGED) and not self.dry_run:
            upload.existing = self.bucket.head(key)
            if upload.existing is not None and not self._replaces(item, upload.existing):
                self.stats.nskipped += 1
                return _Upload(self, item, None)
        return upload

    def _replaces(self, item: dict, existing: ObjectInfo) -> bool:
        """``if-newer``: the object is older than the archived file.  ``if-changed``: its size differs, or
        its ETag differs from the one recorded at backup (without one, the MD5 is compared at upload)."""
        if self.overwrite == OVERWRITE_IF_NEWER:
            modified = existing.modified.timestamp()
            return item[it.MTIME] > int(modified * 1_000_000) * 1000
        if existing.size != item.get(it.SIZE, 0):
            return True
        recorded = (item.get(it.S3) or {}).get("etag")
        return recorded is None or recorded != existing.etag

    def _finish(self, upload: _Upload) -> None:
        if upload.key is None:
            upload.abort()
            return
        path = shown_path(upload.item)
        if upload.failed:
            upload.abort()
            self.error(path, upload.failed)
            return
        try:
            written = upload.complete()
        except FATAL:
            raise
        except StorageError as exc:
            upload.abort()
            if refusal(exc) == PRECONDITION_FAILED:
                self.stats.nskipped += 1  # the key exists (or changed since it was looked at): it is kept
                return
            self.error(path, str(exc))
            return
        if not written:
            self.stats.nskipped += 1
            return
        self.stats.nfiles += 1
        self.stats.bytes_written += upload.written
        self.stats.bytes_arrived += upload.written
        note = damage_note(upload.item)
        if note is not None:
            self.stats.ndamaged += 1
            self.warn(path, note)


class _Upload:
    """One object being written: buffered up to a part, then a multipart upload completed at the end."""

    def __init__(self, restorer: S3Restorer, item: dict, key: str | None):
        self.restorer = restorer
        self.item = item
        self.key = key
        self.failed: str | None = None
        self.written = 0
        size = int(item.get(it.SIZE, 0))
        self.part_size = max(PART_SIZE, -(-size // MAX_PARTS))
        self.buffer = bytearray()
        self.multipart: ObjectUpload | None = None
        self.existing: ObjectInfo | None = None  # the object at the key (if-newer, if-changed)

    def _condition(self) -> dict:
        """The write condition of the final request, by overwrite mode (see the module docstring)."""
        if self.restorer.overwrite == OVERWRITE_ALWAYS:
            return {}
        if self.existing is not None:
            return {"if_match": self.existing.etag}
        return {"create_only": True}

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
        if self.multipart is None:
            self.multipart = self.restorer.bucket.upload(self.key)
        self.multipart.add_part(data, _md5(data))

    def complete(self) -> bool:
        """Create the object; False when ``if-changed`` found the same content there (nothing written)."""
        if self.restorer.dry_run:
            return True
        if self.multipart is None:
            data = bytes(self.buffer)
            md5 = hashlib.md5(data, usedforsecurity=False)
            same = self.existing is not None and self.existing.etag.strip('"') == md5.hexdigest()
            if same and self.restorer.overwrite == OVERWRITE_IF_CHANGED:
                self.buffer = bytearray()
                return False
            self.restorer.bucket.put(
                self.key, data, md5=base64.b64encode(md5.digest()).decode("ascii"), **self._condition()
            )
            self.buffer = bytearray()
            return True
        if self.buffer:
            self._upload_part(bytes(self.buffer))
            self.buffer = bytearray()
        self.multipart.complete(**self._condition())
        self.multipart = None
        return True

    def abort(self) -> None:
        self.buffer = bytearray()
        multipart, self.multipart = self.multipart, None
        if multipart is not None and not self.restorer.dry_run:
            try:
                multipart.abort()
            except Exception as exc:  # noqa: BLE001 - best effort; a lifecycle rule removes leftovers
                self.restorer.warn(it.path_str(self.item), f"could not abort the multipart upload: {exc}")


def _md5(data: bytes) -> str:
    """Content-MD5: the service verifies every upload against it (bit errors in transit are refused)."""
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")
