"""Packvault's borgstore backend for S3 and S3-compatible services (AWS, MinIO, LocalStack, moto).

Plug it in with ``Store(backend=open_s3_backend(url, options))``.  Why not borgstore's own S3 backend: it
has no retries, no conditional writes, no multipart, swallows delete errors and lists wrongly past 1000
sub-directories.  The decisions this module stands on (docs/s3-backend.md has the user's view):

- **Directories do not exist.**  A borgstore "directory" is a key prefix; ``mkdir``/``rmdir`` do nothing and
  no marker objects are written, so ``create`` costs one LIST request and listing a namespace nothing was
  written to yields nothing (instead of raising).  ``info`` answers for objects only.
- **Writes are convergent.**  Everything but ``config/`` is written create-only (``If-None-Match: *``).  A
  412 means "it is there already": when its size and MD5 equal ours (a retry whose first answer was lost, or
  a second writer of the same content-named object), the write succeeded; otherwise it is an
  ``IntegrityError`` and the object is never overwritten.  ``config/`` keys are compare-and-swap: ``If-Match``
  with the ETag this backend last saw, ``If-None-Match: *`` when it saw none; a lost race is a
  ``ConflictError``.  Services without conditional writes (501) get a one-time warning and a weaker
  HEAD-then-PUT fallback.
- **Integrity.**  Uploads carry ``Content-MD5`` (verified by the service) and the MD5 of the whole content
  as ``x-amz-meta-pv-md5``, which full downloads are verified against and 412 comparisons use.
- **No whole-object copies.**  Upload bodies are fresh file-like readers over a ``Payload`` (memory we hold,
  or a spooled pack via ``store_payload``), one per attempt, so each retry starts at offset 0
  (``payload.py``).
- **Retries** of single requests with tenacity (``retry.py``), bounded in attempts and time; botocore makes
  one attempt each.  Every HTTP attempt is counted for ``request_stats()``.
- **Parallelism lives here**, because ``Store`` serializes calls: multipart parts, gather ranges and defrag
  copies run in a small thread pool over one shared (thread-safe) boto3 client.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import botocore.exceptions as bex
from borgstore.backends._base import (
    BackendBase,
    ItemInfo,
    StoreValue,
    validate_name,
    validate_sources,
    validate_value,
)
from borgstore.backends.errors import BackendMustBeOpen, BackendMustNotBeOpen, ObjectNotFound, ReadRangeError
from borgstore.utils import hashing
from borgstore.utils.nesting import nest

from ..errors import (
    BucketNotFound,
    ConflictError,
    IntegrityError,
    RepositoryAlreadyExists,
    StorageError,
)
from .accounting import RequestCounter
from .payload import BufferPayload, Payload
from .s3_client import make_client
from .s3_config import MIN_PART_SIZE, S3Settings, parse_s3_url
from .s3_errors import (
    TransientError,
    error_code,
    give_up_error,
    is_not_found,
    is_not_implemented,
    is_precondition_failed,
    is_transient,
    translate,
)
from .s3_multipart import CopySource, MultipartUpload
from .s3_plan import CopyPart, DataPart, coalesce_reads, merge_runs, plan_copy_parts
from .s3_stream import RangeStream

log = logging.getLogger(__name__)
T = TypeVar("T")

MD5_META = "pv-md5"
CAS_NAMESPACES = ("config/",)
CREATE_ONLY_NAMESPACES = ("packs/", "index/", "locks/", "archives/", "keys/", "names/")
DATA_PACKS = "packs/data/"
SUFFIX_READ_SLACK = 1024 * 1024  # negative offset + size: read this much extra rather than pay a HEAD


class DownloadChecksumMismatch(TransientError):
    """A full download did not match the MD5 stored with the object (repeated: it may be transit damage)."""


def open_s3_backend(url: str, options: dict[str, str]) -> S3Backend:
    """The (not yet opened) backend for ``s3://BUCKET[/PREFIX][?...]``; ``options`` win over the query."""
    return S3Backend(parse_s3_url(url, options))


class S3Backend(BackendBase):
    precreate_dirs = False  # mkdir is a no-op: pre-creating 256 nesting dirs would only waste calls

    def __init__(self, settings: S3Settings):
        self.settings = settings
        self.bucket = settings.bucket
        self.base = settings.prefix + "/" if settings.prefix else ""
        self.counter = RequestCounter(extra_keys=("retries", "converged"))
        try:
            self.client = make_client(settings, self.counter)
        except bex.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket, endpoint=settings.endpoint or "S3", what="configure") from exc
        self.endpoint = self.client.meta.endpoint_url
        self.opened = False
        self._pool: ThreadPoolExecutor | None = None
        self._etags: dict[str, str] = {}  # config keys: ETag last loaded or stored (compare-and-swap)
        self._lock = threading.Lock()
        self._conditional = True  # False after the service answered 501 to a conditional write

    def __repr__(self) -> str:
        return f"S3Backend({self.settings.location()!r}, endpoint={self.endpoint!r})"

    # --- accounting ---------------------------------------------------------------------------------------

    def request_stats(self) -> dict[str, int]:
        return self.counter.snapshot()

    def reset_request_stats(self) -> None:
        self.counter.reset()

    # --- plumbing -------------------------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return self.base + name

    def _request(self, what: str, fn: Callable[[], T]) -> T:
        """Run one request with bounded retries; map auth / missing-bucket errors to Packvault errors."""
        try:
            return self.settings.retry.call(
                fn,
                is_transient=is_transient,
                give_up=self._give_up(what),
                on_retry=lambda _exc: self.counter.add("retries"),
            )
        except (bex.BotoCoreError, bex.ClientError) as exc:
            mapped = translate(exc, bucket=self.bucket, endpoint=self.endpoint, what=what)
            if mapped is exc:
                raise
            raise mapped from exc

    def _give_up(self, what: str):
        generic = give_up_error(self.endpoint, what)

        def make(exc: BaseException, attempts: int, elapsed: float) -> BaseException:
            if isinstance(exc, DownloadChecksumMismatch):
                return IntegrityError(f"{what}: {exc} (in {attempts} attempts)")
            return generic(exc, attempts, elapsed)

        return make

    def _check_open(self) -> None:
        if not self.opened:
            raise BackendMustBeOpen()

    def _storage_class(self, name: str) -> str | None:
        return self.settings.data_storage_class if name.startswith(DATA_PACKS) else None

    def _remember_etag(self, name: str, etag: str | None) -> None:
        if name.startswith(CAS_NAMESPACES):
            with self._lock:
                if etag:
                    self._etags[name] = etag
                else:
                    self._etags.pop(name, None)

    def _warn_no_conditional_writes(self, exc: BaseException) -> None:
        with self._lock:
            if not self._conditional:
                return
            self._conditional = False
        message = (
            f"S3 endpoint {self.endpoint} does not support conditional writes ({error_code(exc) or 501}); "
            "falling back to check-then-write: concurrent writers are no longer detected reliably"
        )
        log.warning(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def create(self) -> None:
        """One LIST request: refuse a prefix holding anything.  Nothing is written (no directory markers)."""
        if self.opened:
            raise BackendMustNotBeOpen()
        response = self._request(
            f"LIST {self.settings.location()}",
            lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.base, MaxKeys=1),
        )
        if response.get("KeyCount", 0) > 0:
            raise RepositoryAlreadyExists(f"{self.settings.location()} is not empty")

    def destroy(self) -> None:
        """Delete every object (and abort every incomplete upload) under the prefix."""
        if self.opened:
            raise BackendMustNotBeOpen()
        self._head_bucket()
        token: str | None = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.base, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._request(
                f"LIST {self.settings.location()}", lambda kw=kwargs: self.client.list_objects_v2(**kw)
            )
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                result = self._request(
                    f"DELETE {len(keys)} objects",
                    lambda keys=keys: self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                    ),
                )
                if result.get("Errors"):
                    first = result["Errors"][0]
                    raise StorageError(
                        f"could not delete {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                    )
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        uploads = self._request(
            "ListMultipartUploads",
            lambda: self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.base),
        )
        for upload in uploads.get("Uploads", []):
            self._request(
                f"AbortMultipartUpload {upload['Key']}",
                lambda u=upload: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]
                ),
            )

    def _head_bucket(self) -> None:
        try:
            self._request(f"HEAD bucket {self.bucket}", lambda: self.client.head_bucket(Bucket=self.bucket))
        except bex.ClientError as exc:
            if is_not_found(exc):
                raise BucketNotFound(f"S3 bucket {self.bucket!r} does not exist at {self.endpoint}") from exc
            raise

    def open(self) -> None:
        """One HEAD request: the bucket must exist and be accessible (missing repository: see module doc)."""
        if self.opened:
            raise BackendMustNotBeOpen()
        self._head_bucket()
        self._pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="packvault-s3")
        self.opened = True

    def close(self) -> None:
        if not self.opened:
            raise BackendMustBeOpen()
        self.opened = False
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        assert self._pool is not None
        return self._pool

    def mkdir(self, name: str) -> None:
        """Nothing to do: directories are key prefixes."""
        self._check_open()
        validate_name(name)

    def rmdir(self, name: str) -> None:
        self._check_open()
        validate_name(name)

    # --- reading --------------------------------------------------------------------------------------------

    def _head(self, name: str) -> dict | None:
        key = self._key(name)
        try:
            return self._request(f"HEAD {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=key))
        except bex.ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    def info(self, name: str) -> ItemInfo:
        self._check_open()
        validate_name(name)
        base_name = name.rsplit("/", 1)[-1]
        head = self._head(name)
        if head is None:
            return ItemInfo(name=base_name, exists=False, directory=False, size=0)
        self._remember_etag(name, head.get("ETag"))
        return ItemInfo(
            name=base_name,
            exists=True,
            directory=False,
            size=head["ContentLength"],
            mtime=head["LastModified"].timestamp(),
        )

    def _get(self, name: str, byte_range: str | None, *, verify: bool) -> tuple[bytes, dict]:
        """GET (a range of) an object, read completely inside the retry so broken streams are repeated."""
        key = self._key(name)
        kwargs = {"Bucket": self.bucket, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range

        def fetch() -> tuple[bytes, dict]:
            response = self.client.get_object(**kwargs)
            body = response["Body"].read()
            self.counter.add("bytes_down", len(body))
            if len(body) != response.get("ContentLength", len(body)):
                raise TransientError(f"short read of {key}: {len(body)} of {response['ContentLength']} bytes")
            expected = response.get("Metadata", {}).get(MD5_META)
            if verify and expected and hashlib.md5(body).hexdigest() != expected:
                raise DownloadChecksumMismatch(f"{key} does not match its stored MD5")
            return body, response

        try:
            return self._request(f"GET {key}" + (f" {byte_range}" if byte_range else ""), fetch)
        except bex.ClientError as exc:
            if is_not_found(exc):
                raise ObjectNotFound(name) from None
            if error_code(exc) == "InvalidRange":
                if self._head(name) is None:
                    raise ObjectNotFound(name) from None
                return b"", {}
            raise

    def load(self, name: str, *, size=None, offset=0) -> bytes:
        self._check_open()
        validate_name(name)
        if size == 0:
            if self._head(name) is None:
                raise ObjectNotFound(name)
            return b""
        truncate = None
        if offset < 0:
            if size is None:
                byte_range = f"bytes={offset}"
            elif -offset - size <= SUFFIX_READ_SLACK:
                byte_range, truncate = f"bytes={offset}", size
            else:
                head = self._head(name)
                if head is None:
                    raise ObjectNotFound(name)
                start = max(head["ContentLength"] + offset, 0)
                byte_range = f"bytes={start}-{start + size - 1}"
        elif size is None:
            byte_range = f"bytes={offset}-" if offset > 0 else None
        else:
            byte_range = f"bytes={offset}-{offset + size - 1}"
        data, response = self._get(name, byte_range, verify=byte_range is None)
        if response:
            self._remember_etag(name, response.get("ETag"))
        return data[:truncate] if truncate is not None else data

    def open_range(self, name: str, offset: int, size: int) -> RangeStream:
        """Bytes [offset, offset + size) of ``name`` as a stream (one GET, resumed if it breaks)."""
        self._check_open()
        validate_name(name)
        key = self._key(name)

        def open_body(first: int, last: int):
            return self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={first}-{last}")["Body"]

        def call(fn):
            try:
                return self._request(f"GET {key} bytes={offset}-{offset + size - 1}", fn)
            except bex.ClientError as exc:
                if is_not_found(exc):
                    raise ObjectNotFound(name) from None
                if error_code(exc) == "InvalidRange":
                    raise ReadRangeError(f"{name} ends before byte {offset + size}") from None
                raise

        return RangeStream(open_body, call, offset, size, lambda n: self.counter.add("bytes_down", n))

    def gather(self, sources) -> bytes:
        """All ranges, concatenated in order; neighbouring ranges share a GET, GETs run in parallel."""
        self._check_open()
        resolved = self._absolute_sources(validate_sources(sources))
        reads = coalesce_reads(resolved)
        if not reads:
            return b""

        def read(r) -> bytes:
            data, _ = self._get(r.name, f"bytes={r.start}-{r.end - 1}", verify=False)
            if len(data) != r.end - r.start:
                raise ReadRangeError(
                    f"Read range error from {r.name} (requested {r.end - r.start} bytes at {r.start}, got {len(data)})"
                )
            return data

        results = [read(reads[0])] if len(reads) == 1 else list(self.pool.map(read, reads))
        pieces: dict[int, memoryview] = {}
        for r, data in zip(reads, results, strict=True):
            view = memoryview(data)
            for index, offset, size in r.pieces:
                pieces[index] = view[offset - r.start : offset - r.start + size]
        return b"".join(pieces[i] for i in sorted(pieces))

    def _absolute_sources(self, sources: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        """Turn negative offsets into absolute ones (one HEAD per object that needs it)."""
        sizes: dict[str, int] = {}
        result = []
        for name, offset, size in sources:
            validate_name(name)
            if offset < 0 and size:
                if name not in sizes:
                    head = self._head(name)
                    if head is None:
                        raise ObjectNotFound(name)
                    sizes[name] = head["ContentLength"]
                offset = max(sizes[name] + offset, 0)
            result.append((name, offset, size))
        return result

    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        """Every object below ``name``, at any depth, in key order, named by their last path component.

        borgstore's ``Store.list`` asks ``list`` once per nesting directory: one LIST per used prefix of
        ``packs/data/`` (65 LISTs for a prune+compact of a 1 GiB repository).  Without a delimiter S3
        returns the whole tree, 1000 keys per LIST.
        """
        self._check_open()
        validate_name(name)
        prefix = self._key(name) + "/"
        token: str | None = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._request(f"LIST {prefix} (tree)", lambda kw=kwargs: self.client.list_objects_v2(**kw))
            for obj in page.get("Contents", []):
                path = obj["Key"][len(prefix) :]
                if _listable(path):
                    yield ItemInfo(
                        name=path.rsplit("/", 1)[-1],
                        exists=True,
                        size=obj["Size"],
                        directory=False,
                        mtime=obj["LastModified"].timestamp(),
                    )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(f"{self.endpoint} returned a truncated listing of {prefix} without a token")

    def list(self, name: str) -> Iterator[ItemInfo]:
        """One level below ``name``, sorted by name, following continuation tokens to the end.

        A page may hold only sub-directories (CommonPrefixes) and no objects; pagination is driven by the
        service's continuation token, never by the last object key, so such pages advance correctly.
        """
        self._check_open()
        if name:
            validate_name(name)
        prefix = self._key(name) + "/" if name else self.base
        token: str | None = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._request(f"LIST {prefix}", lambda kw=kwargs: self.client.list_objects_v2(**kw))
            entries = []
            for obj in page.get("Contents", []):
                entry = obj["Key"][len(prefix) :]
                if _listable(entry):
                    entries.append(
                        ItemInfo(
                            name=entry,
                            exists=True,
                            size=obj["Size"],
                            directory=False,
                            mtime=obj["LastModified"].timestamp(),
                        )
                    )
            for common in page.get("CommonPrefixes", []):
                entry = common["Prefix"][len(prefix) :].rstrip("/")
                if _listable(entry):
                    entries.append(ItemInfo(name=entry, exists=True, size=0, directory=True))
            entries.sort(key=lambda info: info.name)
            yield from entries
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(f"{self.endpoint} returned a truncated listing of {prefix} without a token")

    # --- writing --------------------------------------------------------------------------------------------

    def store(self, name: str, value: StoreValue) -> None:
        self._check_open()
        validate_name(name)
        self._store_payload(name, BufferPayload(validate_value(value)))

    def store_payload(self, name: str, payload: Payload) -> None:
        """``store`` for content that need not be in memory, e.g. a pack spooled to a file (``FilePayload``).

        Same write rules as ``store`` (create-only, compare-and-swap, convergent retries); the payload's
        ``md5`` is trusted as the MD5 of its bytes (the spool computed it while writing them), and the
        bytes are read in small blocks, once per attempt.  The payload must stay readable until this returns.
        """
        self._check_open()
        validate_name(name)
        self._store_payload(name, payload)

    def _store_payload(self, name: str, payload: Payload) -> None:
        if name.startswith(CAS_NAMESPACES):
            self._store_cas(name, payload)
        elif name.startswith(CREATE_ONLY_NAMESPACES):
            self._store_create_only(name, payload)
        else:
            self._upload(name, payload, {})

    def _condition_for_cas(self, name: str) -> dict[str, str]:
        with self._lock:
            etag = self._etags.get(name)
        return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}

    def _store_create_only(self, name: str, payload: Payload) -> None:
        if not self._conditional:
            if self._head(name) is not None:
                self._converge(name, payload)
                return
            self._upload(name, payload, {})
            return
        try:
            self._upload(name, payload, {"IfNoneMatch": "*"})
        except bex.ClientError as exc:
            if is_precondition_failed(exc):
                self._converge(name, payload)
            elif is_not_implemented(exc):
                self._warn_no_conditional_writes(exc)
                self._store_create_only(name, payload)
            else:
                raise

    def _store_cas(self, name: str, payload: Payload) -> None:
        condition = self._condition_for_cas(name) if self._conditional else {}
        try:
            etag = self._upload(name, payload, condition)
        except bex.ClientError as exc:
            if is_not_implemented(exc) and condition:
                self._warn_no_conditional_writes(exc)
                etag = self._upload(name, payload, {})
            elif is_precondition_failed(exc):
                head = self._head(name)
                if head is None or not self._same_content(head, payload.size, payload.md5):
                    raise ConflictError(f"{name} was changed by another client since this one read it") from None
                # our own earlier attempt landed and its answer was lost
                self.counter.add("converged")
                etag = head.get("ETag")
            else:
                raise
        self._remember_etag(name, etag)

    def _upload(self, name: str, payload: Payload, condition: dict[str, str]) -> str | None:
        """PUT or multipart upload with ``condition``; return the new ETag.

        The body is never a copy of the whole object: each attempt gets a fresh reader over the payload
        (``payload.reader()``), so a retry starts from offset 0 whatever the failed attempt had sent.
        """
        if payload.size > self.settings.multipart_threshold:
            return self._upload_multipart(name, payload, condition)
        key = self._key(name)
        kwargs = {
            "Bucket": self.bucket,
            "Key": key,
            "ContentMD5": base64.b64encode(payload.md5).decode(),
            "Metadata": {MD5_META: payload.md5.hex()},
            **condition,
        }
        storage_class = self._storage_class(name)
        if storage_class:
            kwargs["StorageClass"] = storage_class
        return self._request(f"PUT {key}", lambda: self.client.put_object(Body=payload.reader(), **kwargs)).get("ETag")

    def _upload_multipart(self, name: str, payload: Payload, condition: dict[str, str]) -> str | None:
        key = self._key(name)
        upload = MultipartUpload(self.client, self._request, self.bucket, key, self.pool)
        try:
            upload.start(storage_class=self._storage_class(name), metadata={MD5_META: payload.md5.hex()})
            part_size = max(self.settings.part_size, MIN_PART_SIZE)
            for start in range(0, payload.size, part_size):
                upload.add_part(payload, start, min(part_size, payload.size - start))
            response, expected = upload.complete(condition)
        except BaseException:
            upload.abort()
            raise
        if response is None:  # the completion's answer was lost, the upload is gone: did it complete?
            head = self._head(name)
            if head is None or head.get("ETag") != expected:
                raise StorageError(f"multipart upload of {key} vanished without completing")
            return head.get("ETag")
        return response.get("ETag")

    def _same_content(self, head: dict, size: int, md5: bytes) -> bool | None:
        """Compare a HEAD answer with our content: True/False when decidable, None when not (no MD5 known)."""
        if head["ContentLength"] != size:
            return False
        stored = head.get("Metadata", {}).get(MD5_META)
        if stored:
            return stored == md5.hex()
        etag = head.get("ETag", "").strip('"')
        if etag and "-" not in etag:
            return etag == md5.hex()
        return None

    def _converge(self, name: str, payload: Payload) -> None:
        """The create-only key exists: succeed if it holds our bytes, never overwrite it otherwise."""
        head = self._head(name)
        if head is None:  # deleted in between: write it again
            self._store_create_only(name, payload)
            return
        same = self._same_content(head, payload.size, payload.md5)
        if same is None:
            data, _ = self._get(name, None, verify=True)
            same = payload.same_bytes(data)
        if not same:
            raise IntegrityError(f"{name} already exists with different content; refusing to overwrite it")
        self.counter.add("converged")
        log.info("%s was already stored with the same content (retried or concurrent write)", name)

    def delete(self, name: str) -> None:
        """HEAD then DELETE: S3's DELETE succeeds for missing keys, borgstore wants ``ObjectNotFound``."""
        self._check_open()
        validate_name(name)
        if self._head(name) is None:
            raise ObjectNotFound(name)
        key = self._key(name)
        self._request(f"DELETE {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
        self._remember_etag(name, None)

    def discard(self, name: str) -> None:
        """DELETE without asking first whether the object exists (one request, not two), for callers that
        don't care: releasing a lock, whose object is ours and gone either way afterwards."""
        self._check_open()
        validate_name(name)
        key = self._key(name)
        self._request(f"DELETE {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))
        self._remember_etag(name, None)

    def move(self, curr_name: str, new_name: str) -> None:
        """Server-side copy, then delete the source (overwrites the target, as borgstore demands)."""
        self._check_open()
        validate_name(curr_name)
        validate_name(new_name)
        src, dst = self._key(curr_name), self._key(new_name)
        kwargs = {
            "Bucket": self.bucket,
            "Key": dst,
            "CopySource": {"Bucket": self.bucket, "Key": src},
            "MetadataDirective": "COPY",
        }
        storage_class = self._storage_class(new_name)
        if storage_class:
            kwargs["StorageClass"] = storage_class
        try:
            result = self._request(f"COPY {src} -> {dst}", lambda: self.client.copy_object(**kwargs))
        except bex.ClientError as exc:
            if is_not_found(exc):
                raise ObjectNotFound(curr_name) from None
            raise
        self._remember_etag(new_name, result.get("CopyObjectResult", {}).get("ETag"))
        self._request(f"DELETE {src}", lambda: self.client.delete_object(Bucket=self.bucket, Key=src))
        self._remember_etag(curr_name, None)

    # --- copy-forward -----------------------------------------------------------------------------------------

    def defrag(self, sources, *, target=None, algorithm=None, namespace=None, levels=0) -> str:
        """A new object from ranges of existing ones; the result equals ``BackendBase.defrag`` byte for byte.

        With an explicit ``target``, runs of >= 5 MiB are copied inside S3 (UploadPartCopy) and only the
        small runs are downloaded.  Without one, the name is the hash of the content, which needs every
        byte on this side anyway: then it is a parallel gather and one upload (module doc of s3_plan).
        """
        self._check_open()
        sources = self._absolute_sources(validate_sources(sources))
        if target is None:
            if algorithm is None:
                raise ValueError("Either target or algorithm must be given for defrag")
            data = self.gather(sources)
            h = hashing.new(algorithm)
            h.update(data)
            target = h.hexdigest()
            if namespace:
                target = namespace.rstrip("/") + "/" + target
            if levels:
                target = nest(target, levels)
            self.store(target, data)
            return target
        validate_name(target)
        parts = plan_copy_parts(merge_runs(sources))
        if not any(isinstance(p, CopyPart) for p in parts):
            self.store(target, self.gather(sources))
            return target
        self._defrag_server_side(target, parts, sources)
        return target

    def _defrag_server_side(self, target: str, parts: list[CopyPart | DataPart], sources) -> None:
        key = self._key(target)
        total = sum(p.size for p in parts)
        upload = MultipartUpload(self.client, self._request, self.bucket, key, self.pool)
        condition = {"IfNoneMatch": "*"} if self._conditional else {}
        try:
            upload.start(storage_class=self._storage_class(target))
            for part in parts:
                if isinstance(part, CopyPart):
                    upload.add_copy(CopySource(self._key(part.name), part.offset, part.size))
                else:
                    upload.add_bytes(self.gather(part.ranges))
            response, expected = upload.complete(condition)
        except bex.ClientError as exc:
            upload.abort()
            if not is_precondition_failed(exc):
                raise
            response, expected = {}, None
        except BaseException:
            upload.abort()
            raise
        if response:
            return
        head = self._head(target)
        if head is not None and head["ContentLength"] == total and head.get("ETag") == expected:
            if response == {}:
                self.counter.add("converged")
            return
        if head is None or head["ContentLength"] != total:
            raise IntegrityError(f"{target} exists with a different size; refusing to overwrite it")
        # same size, not comparable by ETag (written another way): compare the bytes
        if self.load(target) != self.gather(sources):
            raise IntegrityError(f"{target} already exists with different content; refusing to overwrite it")
        self.counter.add("converged")


def _listable(entry: str) -> bool:
    """Skip what borgstore would never have written (temp/hidden names, keys with odd characters)."""
    if not entry:
        return False
    try:
        validate_name(entry)
    except (ValueError, TypeError):
        return False
    return True
