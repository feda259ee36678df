"""Packvault's borgstore backend for S3 and S3-compatible services (AWS, MinIO, LocalStack, moto).

Plug it in with ``Store(backend=open_s3_backend(url, options, policy=WRITE_POLICY))``.  Why not borgstore's
own S3 backend: it has no retries, no conditional writes, no multipart, swallows delete errors and lists
wrongly past 1000 sub-directories.  The decisions this module stands on (docs/s3-backend.md has the user's
view, including where it departs from borgstore's contract):

- **Directories do not exist.**  A borgstore "directory" is a key prefix; ``mkdir``/``rmdir`` do nothing and
  no marker objects are written, so ``create`` costs one LIST request and accepts an empty prefix (twice,
  too, like the file backend accepts an empty directory), ``open`` cannot tell a prefix never created from
  one created and still empty, and listing a namespace nothing was written to yields nothing (instead of
  raising).  ``destroy`` of a prefix holding nothing raises ``BackendDoesNotExist``.  ``info`` answers for
  objects only.
- **Writes follow a policy handed in** (``storage/layout.py``'s ``WritePolicy``: create-only, first-wins,
  compare-and-swap or overwrite, per namespace; this module knows no namespace).  Create-only and first-wins
  keys are written with ``If-None-Match: *``.  A 412 means "it is there already": for create-only, when its
  size and MD5 equal ours (a retry whose first answer was lost, or a second writer of the same content-named
  object) the write succeeded, otherwise it is an ``IntegrityError`` and the object is never overwritten;
  for first-wins the existing object stays.  Compare-and-swap keys carry ``If-Match`` with the ETag this
  backend last saw, ``If-None-Match: *`` when it saw none; a lost race is a ``ConflictError``.  A 409
  (conditional writes to one key raced) repeats a PUT and starts a multipart upload again.
- **Conditional writes are verified, not assumed.**  Given a cache directory, the backend probes once per
  location whether the service honours ``If-None-Match`` (``s3_probe.py``).  A service that ignores it is
  treated like one that answers 501: one warning, then a weaker HEAD-then-PUT fallback.
- **Integrity.**  Uploads carry ``Content-MD5`` (verified by the service) and the MD5 of the whole content
  as ``x-amz-meta-pv-md5``, which full downloads are verified against and 412 comparisons use.  Ranges are
  checked against the object's size: a range before the start or past the end is a ``ReadRangeError``,
  never a silently shorter answer.
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
import os
import threading
import time
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
    RepositoryNotFound,
    StorageError,
)
from .accounting import RequestCounter
from .layout import WriteMode, WritePolicy
from .payload import BufferPayload, Payload
from .s3_client import make_client
from .s3_config import MIN_PART_SIZE, S3Settings, parse_s3_url
from .s3_errors import (
    TransientError,
    error_code,
    give_up_error,
    is_conflict,
    is_not_found,
    is_not_implemented,
    is_precondition_failed,
    is_transient,
    is_transient_or_conflict,
    translate,
)
from .s3_listing import sorted_level
from .s3_multipart import CopySource, MultipartUpload
from .s3_plan import CopyPart, DataPart, coalesce_reads, merge_runs, plan_copy_parts
from .s3_probe import ConditionalWrites, ProbeRecord, content_md5, probe, probe_key
from .s3_stream import RangeStream
from .settings import StorageSettings

log = logging.getLogger(__name__)
T = TypeVar("T")

MD5_META = "pv-md5"
SUFFIX_READ_SLACK = 1024 * 1024  # negative offset + size: read this much extra rather than pay a HEAD
LIST_PAGE_SIZE = 1000  # S3's maximum keys per LIST answer
CONDITIONAL = (WriteMode.CREATE_ONLY, WriteMode.FIRST_WINS, WriteMode.COMPARE_AND_SWAP)


class DownloadChecksumMismatch(TransientError):
    """A full download did not match the MD5 stored with the object (repeated: it may be transit damage)."""


def open_s3_backend(
    url: str,
    options: dict[str, str],
    *,
    policy: WritePolicy | None = None,
    cache_dir: str | os.PathLike | None = None,
    settings: StorageSettings | None = None,
) -> S3Backend:
    """The (not yet opened) backend for ``s3://BUCKET[/PREFIX][?...]``; ``options`` win over the query.

    ``policy``: how each namespace is written (default: everything overwritten, borgstore's plain contract).
    ``cache_dir``: a local directory where the result of the conditional-write probe of this location is
    kept; without one, no probe is made and the service is trusted until it answers 501.
    ``settings``: defaults from the environment, below the options and the query (``storage/settings.py``).
    """
    return S3Backend(parse_s3_url(url, options, settings=settings), policy=policy, cache_dir=cache_dir)


class S3Backend(BackendBase):
    precreate_dirs = False  # mkdir is a no-op: pre-creating 256 nesting dirs would only waste calls

    def __init__(
        self,
        settings: S3Settings,
        *,
        policy: WritePolicy | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.settings = settings
        self.policy = policy if policy is not None else WritePolicy()
        self.bucket = settings.bucket
        self.base = settings.prefix + "/" if settings.prefix else ""
        self.counter = RequestCounter(extra_keys=("retries", "converged"))
        try:
            self.client = make_client(settings, self.counter)
        except bex.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket, endpoint=settings.endpoint or "S3", what="configure") from exc
        self.endpoint = self.client.meta.endpoint_url
        self.opened = False
        self.list_page_size = LIST_PAGE_SIZE
        self._pool: ThreadPoolExecutor | None = None
        self._etags: dict[str, str] = {}  # compare-and-swap keys: ETag last loaded or stored
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._probe_record = (
            ProbeRecord(cache_dir, f"{self.endpoint} {settings.location()}") if cache_dir is not None else None
        )
        self._verdict: ConditionalWrites | None = None  # None: not known (yet); trusted until a 501
        self._warned = False

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

    def _request(
        self, what: str, fn: Callable[[], T], *, transient: Callable[[BaseException], bool] = is_transient
    ) -> T:
        """Run one request with bounded retries; map auth / missing-bucket errors to Packvault errors.

        ``transient``: which failures are repeated (``is_transient_or_conflict`` for a PUT, which may be sent
        again after a 409)."""
        try:
            return self.settings.retry.call(
                fn,
                is_transient=transient,
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
        return self.settings.data_storage_class if self.policy.is_data(name) else None

    def _remember_etag(self, name: str, etag: str | None) -> None:
        if self.policy.mode(name) is WriteMode.COMPARE_AND_SWAP:
            with self._lock:
                if etag:
                    self._etags[name] = etag
                else:
                    self._etags.pop(name, None)

    # --- conditional writes: probed, remembered, or learnt from a 501 ----------------------------------------

    def _conditions_hold(self) -> bool:
        """Whether conditional writes can be relied on; probes the location first if that is not known.

        False means: the one-time warning was given and writes use the HEAD-then-PUT fallback.
        """
        if self._verdict is None and self._probe_record is not None:
            with self._probe_lock:
                if self._verdict is None:
                    self._verdict = self._probe_record.load() or self._probe()
        verdict = self._verdict
        if verdict is None or verdict is ConditionalWrites.HONOURED:
            return True
        self._warn_no_conditional_writes(verdict)
        return False

    def _probe(self) -> ConditionalWrites:
        key = probe_key(self.base)

        def put(body: bytes) -> None:
            self._request(
                f"PUT {key} (conditional-write probe)",
                lambda: self.client.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ContentMD5=content_md5(body), IfNoneMatch="*"
                ),
                transient=is_transient_or_conflict,
            )

        def delete() -> None:
            self._request(f"DELETE {key}", lambda: self.client.delete_object(Bucket=self.bucket, Key=key))

        verdict = probe(put, delete)
        log.info("conditional writes at %s: %s", self.settings.location(), verdict.value)
        self._record(verdict)
        return verdict

    def _record(self, verdict: ConditionalWrites) -> None:
        if self._probe_record is None:
            return
        try:
            self._probe_record.save(verdict)
        except OSError as exc:  # the verdict still holds for this run; the next one probes again
            log.info("could not remember the conditional-write probe in %s: %s", self._probe_record.path, exc)

    def _learn_not_implemented(self) -> None:
        """A conditional write was answered 501: remember it, warn once; callers then fall back."""
        with self._probe_lock:
            known = self._verdict is ConditionalWrites.NOT_IMPLEMENTED
            self._verdict = ConditionalWrites.NOT_IMPLEMENTED
        if not known:
            self._record(ConditionalWrites.NOT_IMPLEMENTED)
        self._warn_no_conditional_writes(ConditionalWrites.NOT_IMPLEMENTED)

    def _warn_no_conditional_writes(self, verdict: ConditionalWrites) -> None:
        with self._lock:
            if self._warned:
                return
            self._warned = True
        reason = (
            "it ignores If-None-Match: a probe overwrote its own object"
            if verdict is ConditionalWrites.IGNORED
            else "501 NotImplemented"
        )
        message = (
            f"S3 endpoint {self.endpoint} does not support conditional writes ({reason}); "
            "falling back to check-then-write: concurrent writers are no longer detected reliably"
        )
        log.warning(message)  # once per backend; the CLI shows warnings as one line on stderr

    # --- lifecycle ------------------------------------------------------------------------------------------

    def create(self) -> None:
        """One LIST request: refuse a prefix holding anything.  Nothing is written (no directory markers).

        The remembered conditional-write probe of this location is dropped: the first conditional write
        after init probes the service again.
        """
        if self.opened:
            raise BackendMustNotBeOpen()
        response = self._request(
            f"LIST {self.settings.location()}",
            lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.base, MaxKeys=1),
        )
        if response.get("KeyCount", 0) > 0:
            raise RepositoryAlreadyExists(f"{self.settings.location()} is not empty")
        if self._probe_record is not None:
            self._probe_record.forget()
        self._verdict = None

    def destroy(self) -> None:
        """Delete every object (and abort every incomplete upload) under the prefix; a prefix holding
        nothing has nothing to destroy (``BackendDoesNotExist``, like the file backend's missing directory)."""
        if self.opened:
            raise BackendMustNotBeOpen()
        self._head_bucket()
        found = 0
        for page in self._pages(self.base, f"LIST {self.settings.location()}"):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if not keys:
                continue
            found += len(keys)
            result = self._request(
                f"DELETE {len(keys)} objects",
                lambda keys=keys: self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                ),
            )
            if result.get("Errors"):
                first = result["Errors"][0]
                raise StorageError(f"could not delete {first.get('Key')}: {first.get('Code')} {first.get('Message')}")
        uploads = self._request(
            "ListMultipartUploads",
            lambda: self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.base),
        )
        for upload in uploads.get("Uploads", []):
            found += 1
            self._request(
                f"AbortMultipartUpload {upload['Key']}",
                lambda u=upload: self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=u["Key"], UploadId=u["UploadId"]
                ),
            )
        if not found:
            raise RepositoryNotFound(f"nothing to destroy at {self.settings.location()}")

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
        if self._probe_record is not None and self._verdict is None:
            self._verdict = self._probe_record.load()  # None: probed at the first conditional write
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
        """Bytes of ``name`` from ``offset`` (negative: from the end), ``size`` of them or all the rest.

        An offset before the start raises ``ReadRangeError`` (the file backend's seek refuses it too): S3
        would serve a suffix range longer than the object as the whole object.  Past the end is empty.
        """
        self._check_open()
        validate_name(name)
        if size == 0:
            if self._head(name) is None:
                raise ObjectNotFound(name)
            return b""
        truncate = None
        suffix = None  # a suffix range must come back with exactly this many bytes
        if offset < 0:
            if size is None:
                byte_range, suffix = f"bytes={offset}", -offset
            elif -offset - size <= SUFFIX_READ_SLACK:
                byte_range, truncate, suffix = f"bytes={offset}", size, -offset
            else:
                head = self._head(name)
                if head is None:
                    raise ObjectNotFound(name)
                start = head["ContentLength"] + offset
                if start < 0:
                    raise _before_start(name, offset, head["ContentLength"])
                byte_range = f"bytes={start}-{start + size - 1}"
        elif size is None:
            byte_range = f"bytes={offset}-" if offset > 0 else None
        else:
            byte_range = f"bytes={offset}-{offset + size - 1}"
        data, response = self._get(name, byte_range, verify=byte_range is None)
        if suffix is not None and len(data) < suffix:
            raise _before_start(name, offset, len(data))
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

    def _absolute_sources(
        self, sources: list[tuple[str, int, int]], sizes: dict[str, int] | None = None
    ) -> list[tuple[str, int, int]]:
        """Turn negative offsets into absolute ones (one HEAD per object that needs it, sizes kept in
        ``sizes``); an offset before the start of its object is a ``ReadRangeError``."""
        sizes = {} if sizes is None else sizes
        result = []
        for name, offset, size in sources:
            validate_name(name)
            if offset < 0 and size:
                if name not in sizes:
                    sizes[name] = self._size(name)
                if sizes[name] + offset < 0:
                    raise _before_start(name, offset, sizes[name])
                offset = sizes[name] + offset
            result.append((name, offset, size))
        return result

    def _size(self, name: str) -> int:
        head = self._head(name)
        if head is None:
            raise ObjectNotFound(name)
        return head["ContentLength"]

    def _check_ranges(self, sources: list[tuple[str, int, int]], sizes: dict[str, int]) -> None:
        """Every (absolute) range must lie inside its object: one HEAD per object whose size is not known.

        For server-side copies, whose ranges S3 implementations check differently or not at all (moto copies
        what exists, LocalStack rejects the part): ``ReadRangeError``/``ObjectNotFound`` before any write.
        """
        unknown = [name for name in dict.fromkeys(name for name, _, _ in sources) if name not in sizes]
        if len(unknown) == 1:
            sizes[unknown[0]] = self._size(unknown[0])
        elif unknown:
            sizes.update(zip(unknown, self.pool.map(self._size, unknown), strict=True))
        for name, offset, size in sources:
            if size and offset + size > sizes[name]:
                raise ReadRangeError(
                    f"Read range error from {name} (requested {size} bytes at offset {offset}, "
                    f"the object has {sizes[name]})"
                )

    def _pages(self, prefix: str, what: str, *, delimiter: bool = False) -> Iterator[dict]:
        """Every LIST answer for ``prefix``, following continuation tokens to the end.

        Pages are driven by the service's token, never by the last key, so pages holding only
        sub-directories (CommonPrefixes) advance too.
        """
        token: str | None = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": self.list_page_size}
            if delimiter:
                kwargs["Delimiter"] = "/"
            if token:
                kwargs["ContinuationToken"] = token
            page = self._request(what, lambda kw=kwargs: self.client.list_objects_v2(**kw))
            yield page
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(f"{self.endpoint} returned a truncated listing of {prefix} without a token")

    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        """Every object below ``name``, at any depth, in key order, named by their last path component.

        borgstore's ``Store.list`` asks ``list`` once per nesting directory: one LIST per used prefix of
        ``packs/data/`` (65 LISTs for a prune+compact of a 1 GiB repository).  Without a delimiter S3
        returns the whole tree, 1000 keys per LIST.
        """
        self._check_open()
        validate_name(name)
        prefix = self._key(name) + "/"
        for page in self._pages(prefix, f"LIST {prefix} (tree)"):
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

    def list(self, name: str) -> Iterator[ItemInfo]:
        """One level below ``name``, sorted by name across all pages (``s3_listing.py``).

        A namespace nothing was written to lists as empty: without directory markers it cannot be told
        from one whose objects were all deleted (docs/s3-backend.md).
        """
        self._check_open()
        if name:
            validate_name(name)
        prefix = self._key(name) + "/" if name else self.base
        return sorted_level(self._level_pages(prefix))

    def _level_pages(self, prefix: str) -> Iterator[tuple[list[ItemInfo], str]]:
        for page in self._pages(prefix, f"LIST {prefix}", delimiter=True):
            entries = []
            last = ""
            for obj in page.get("Contents", []):
                entry = obj["Key"][len(prefix) :]
                last = max(last, entry)
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
                raw = common["Prefix"][len(prefix) :]
                last = max(last, raw)
                entry = raw.rstrip("/")
                if _listable(entry):
                    entries.append(ItemInfo(name=entry, exists=True, size=0, directory=True))
            yield entries, last

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
        mode = self.policy.mode(name)
        if mode is WriteMode.COMPARE_AND_SWAP:
            self._store_cas(name, payload)
        elif mode in (WriteMode.CREATE_ONLY, WriteMode.FIRST_WINS):
            self._store_create_only(name, payload, mode)
        else:
            self._upload(name, payload, {})

    def _condition_for_cas(self, name: str) -> dict[str, str]:
        with self._lock:
            etag = self._etags.get(name)
        return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}

    def _store_create_only(self, name: str, payload: Payload, mode: WriteMode) -> None:
        """Write ``name`` unless it exists; an existing one is compared (create-only) or kept (first-wins).

        Above the multipart threshold a HEAD goes first: a 412 comes only with the completion, after every
        part was uploaded, and re-storing a pack (a retried backup, a second writer) must not cost its size.
        """
        conditional = self._conditions_hold()
        if not conditional or payload.size > self.settings.multipart_threshold:
            head = self._head(name)
            if head is not None:
                self._existing(name, payload, mode, head)
                return
        if not conditional:
            self._upload(name, payload, {})
            return
        try:
            self._upload(name, payload, {"IfNoneMatch": "*"})
        except bex.ClientError as exc:
            if is_precondition_failed(exc):
                if mode is not WriteMode.FIRST_WINS:  # for first-wins a 412 says all there is to know
                    self._existing(name, payload, mode, self._head(name))
            elif is_not_implemented(exc):
                self._learn_not_implemented()
                self._store_create_only(name, payload, mode)
            else:
                raise

    def _store_cas(self, name: str, payload: Payload) -> None:
        condition = self._condition_for_cas(name) if self._conditions_hold() else {}
        try:
            etag = self._upload(name, payload, condition)
        except bex.ClientError as exc:
            if is_not_implemented(exc) and condition:
                self._learn_not_implemented()
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
        (``payload.reader()``), so a retry starts from offset 0 whatever the failed attempt had sent.  A 409
        (a conditional write to the same key raced with ours and ours was not applied) is sent again.
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
        return self._request(
            f"PUT {key}",
            lambda: self.client.put_object(Body=payload.reader(), **kwargs),
            transient=is_transient_or_conflict,
        ).get("ETag")

    def _upload_multipart(self, name: str, payload: Payload, condition: dict[str, str]) -> str | None:
        key = self._key(name)
        part_size = max(self.settings.part_size, MIN_PART_SIZE)

        def attempt() -> tuple[dict | None, str]:
            upload = MultipartUpload(self.client, self._request, self.bucket, key, self.pool)
            try:
                upload.start(storage_class=self._storage_class(name), metadata={MD5_META: payload.md5.hex()})
                for start in range(0, payload.size, part_size):
                    upload.add_part(payload, start, min(part_size, payload.size - start))
                return upload.complete(condition)
            except BaseException:
                upload.abort()
                raise

        response, expected = self._restarting_on_conflict(key, attempt)
        if response is None:  # the completion's answer was lost, the upload is gone: did it complete?
            head = self._head(name)
            if head is None or head.get("ETag") != expected:
                raise StorageError(f"multipart upload of {key} vanished without completing")
            return head.get("ETag")
        return response.get("ETag")

    def _restarting_on_conflict(self, key: str, attempt: Callable[[], T]) -> T:
        """Run a whole multipart upload, and again from its start after a 409 on its completion (S3 cannot
        complete that upload any more), with the retry policy's bounds and backoff between the attempts."""
        policy = self.settings.retry
        for number in range(1, policy.attempts + 1):
            try:
                return attempt()
            except bex.ClientError as exc:
                if not is_conflict(exc):
                    raise
                self.counter.add("retries")
                log.info("multipart upload of %s raced with another conditional write; starting it again", key)
                if number < policy.attempts:
                    time.sleep(policy.delay(number))
        raise ConflictError(
            f"the multipart upload of {key} lost {policy.attempts} races against concurrent writes to the same key"
        )

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

    def _existing(self, name: str, payload: Payload, mode: WriteMode, head: dict | None) -> None:
        """The key exists (``head``; None if it vanished since): first-wins keeps it; create-only succeeds if
        it holds our bytes and never overwrites it otherwise."""
        if head is None:  # deleted in between: write it again
            self._store_create_only(name, payload, mode)
            return
        if mode is WriteMode.FIRST_WINS:
            log.debug("%s exists already; the first write stands", name)
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
        """Server-side copy, then delete the source (overwrites the target, as borgstore demands).

        A move onto itself changes nothing (as a rename on the file backend); S3 would refuse the copy.
        """
        self._check_open()
        validate_name(curr_name)
        validate_name(new_name)
        if curr_name == new_name:
            if self._head(curr_name) is None:
                raise ObjectNotFound(curr_name)
            return
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
        Before a server-side copy every range is checked against its source's size (one HEAD per source),
        so a short or missing source is a ``ReadRangeError``/``ObjectNotFound`` as on every other path.
        """
        self._check_open()
        sizes: dict[str, int] = {}
        sources = self._absolute_sources(validate_sources(sources), sizes)
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
        self._check_ranges(sources, sizes)
        self._defrag_server_side(target, parts, sources)
        return target

    def _defrag_server_side(self, target: str, parts: list[CopyPart | DataPart], sources) -> None:
        """Assemble ``target`` from copies and uploaded parts, written by ``target``'s write mode like
        ``store``: create-only/first-wins completes with ``If-None-Match: *``, compare-and-swap with the ETag
        last seen, anything else overwrites."""
        key = self._key(target)
        total = sum(p.size for p in parts)
        mode = self.policy.mode(target)
        conditional = mode in CONDITIONAL and self._conditions_hold()
        if mode in (WriteMode.CREATE_ONLY, WriteMode.FIRST_WINS) and not conditional:
            head = self._head(target)
            if head is not None:
                self._defrag_existing(target, mode, head, total, None, sources)
                return
        if not conditional:
            condition = {}
        elif mode is WriteMode.COMPARE_AND_SWAP:
            condition = self._condition_for_cas(target)
        else:
            condition = {"IfNoneMatch": "*"}

        def attempt() -> tuple[dict | None, str | None]:
            upload = MultipartUpload(self.client, self._request, self.bucket, key, self.pool)
            try:
                upload.start(storage_class=self._storage_class(target))
                for part in parts:
                    if isinstance(part, CopyPart):
                        upload.add_copy(CopySource(self._key(part.name), part.offset, part.size))
                    else:
                        upload.add_bytes(self.gather(part.ranges))
                return upload.complete(condition)
            except bex.ClientError as exc:
                upload.abort()
                if is_precondition_failed(exc):
                    return {}, upload.expected_etag
                if is_not_found(exc):  # a source vanished after its size was checked
                    raise ObjectNotFound(f"a source of {target} vanished while it was copied") from None
                raise
            except BaseException:
                upload.abort()
                raise

        response, expected = self._restarting_on_conflict(key, attempt)
        if response:
            self._remember_etag(target, response.get("ETag"))
            return
        head = self._head(target)
        if response is None:  # the completion's answer was lost and the upload is gone: did it complete?
            if head is None or head.get("ETag") != expected:
                raise StorageError(f"server-side copy to {key} vanished without completing")
            self._remember_etag(target, head.get("ETag"))
            return
        if head is None:  # 412, then deleted: try again
            self._defrag_server_side(target, parts, sources)
            return
        self._defrag_existing(target, mode, head, total, expected, sources)

    def _defrag_existing(
        self, target: str, mode: WriteMode, head: dict, total: int, expected: str | None, sources
    ) -> None:
        """The conditional completion (or the HEAD before it) found ``target``: keep it (first-wins), accept
        it if it holds exactly the assembled bytes, else refuse (create-only) or report the lost race (CAS)."""
        if mode is WriteMode.FIRST_WINS:
            return
        same = head["ContentLength"] == total and (
            (expected is not None and head.get("ETag") == expected) or self.load(target) == self.gather(sources)
        )
        if mode is WriteMode.COMPARE_AND_SWAP:
            if not same:
                raise ConflictError(f"{target} was changed by another client since this one read it")
            self._remember_etag(target, head.get("ETag"))
        elif not same:
            raise IntegrityError(f"{target} already exists with different content; refusing to overwrite it")
        self.counter.add("converged")


def _before_start(name: str, offset: int, size: int) -> ReadRangeError:
    return ReadRangeError(f"Read range error from {name} (offset {offset} is before the start of its {size} bytes)")


def _listable(entry: str) -> bool:
    """Skip what borgstore would never have written (temp/hidden names, keys with odd characters)."""
    if not entry:
        return False
    try:
        validate_name(entry)
    except (ValueError, TypeError):
        return False
    return True
