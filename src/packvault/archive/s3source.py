"""A bucket (or a prefix of one) as the source of a backup: ``packvault create REPO::NAME s3://bucket/prefix``.

Objects become file items whose path is ``bucket/key``; the "directories" of a bucket are synthesised from
the ``/``-separated key prefixes.  The entries come in exactly the order the local walker uses (sorted by
path component, each directory right before its contents), because restore finishes a directory when it
leaves its subtree and because an unchanged bucket must give an identical item stream (so its metadata
chunks deduplicate).  S3 lists keys in plain byte order, which differs (``a.txt`` sorts before ``a/b``),
so the listing is re-sorted with ``/`` ranked below every other byte; big listings are sorted in runs
spilled to temp files and merged, so memory stays bounded whatever the size of the bucket.

Change detection: an object's ETag changes with its content, so the files cache is keyed by
``(hash of the ETag, size, LastModified, LastModified)`` under the object's full ``s3://bucket/key`` and an
unchanged object is not downloaded again.  Downloads are streamed (never a whole object in memory) with
``If-Match: <listed ETag>``, so the bytes read are the version that was listed; a connection dropped
mid-object resumes with a ranged GET from the last byte received.

Endpoint and credentials: the standard AWS chain, plus the repository URL syntax
``s3://bucket/prefix?endpoint=URL&region=R&profile=P&path_style=1``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import heapq
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta

import msgpack
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ..errors import EndpointUnreachable, ServiceUnavailable, StorageError
from ..storage.accounting import RequestCounter
from ..storage.s3.client import make_client
from ..storage.s3.config import S3Settings, parse_s3_url
from ..storage.s3.errors import error_code, give_up_error, is_not_found, is_precondition_failed, is_transient, translate
from ..storage.settings import from_environment
from . import items as it
from .patterns import ExcludeMatcher
from .walker import Entry, Warn

FILE_MODE = 0o100644
DIR_MODE = 0o040755
SORT_RUN_RECORDS = 200_000  # listing records held in memory before a sorted run is spilled to a temp file
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- URLs, clients, errors ------------------------------------------------------------------------------


def parse_source_url(url: str) -> S3Settings:
    """``s3://bucket[/prefix][?endpoint=...]``: the repository URL syntax, parsed by the S3 backend's parser."""
    return parse_s3_url(url, settings=from_environment())


def client_key(settings: S3Settings) -> tuple:
    """Sources that share this key share one client (connection pool, credentials)."""
    return (settings.endpoint, settings.region, settings.profile, settings.path_style, settings.retry)


def endpoint_label(settings: S3Settings) -> str:
    return settings.endpoint_label()


def s3_call(settings: S3Settings, what: str, fn):
    """One request with the backend's bounded retries; a final failure becomes a Packvault error."""
    from botocore.exceptions import BotoCoreError, ClientError

    label = endpoint_label(settings)
    try:
        return settings.retry.call(fn, is_transient=is_transient, give_up=give_up_error(label, what))
    except (ClientError, BotoCoreError) as exc:
        mapped = translate(exc, bucket=settings.bucket, endpoint=label, what=what)
        if mapped is exc:
            raise StorageError(f"{what} failed at {label}: {error_code(exc) or exc}") from exc
        raise mapped from exc


# --- the listing, in walk order --------------------------------------------------------------------------


def walk_sort_key(key: str) -> bytes:
    """Byte order of path components: ``/`` ranks below every other byte (NUL cannot occur in a key)."""
    return key.encode("utf-8", "surrogatepass").replace(b"/", b"\0")


def _mtime_ns(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _sorted_records(records: Iterable[tuple], run_size: int = SORT_RUN_RECORDS) -> Iterator[tuple]:
    """Sort (sort_key, ...) records with bounded memory: in-memory runs, spilled and merged when large."""
    run: list[tuple] = []
    spilled: list[tempfile._TemporaryFileWrapper] = []
    try:
        for record in records:
            run.append(record)
            if len(run) >= run_size:
                run.sort()
                f = tempfile.TemporaryFile(prefix="packvault-s3list-")  # noqa: SIM115 - closed below
                packer = msgpack.Packer()
                for rec in run:
                    f.write(packer.pack(rec))
                f.seek(0)
                spilled.append(f)
                run = []
        run.sort()
        if not spilled:
            yield from run
            return

        def replay(f) -> Iterator[tuple]:
            for rec in msgpack.Unpacker(f, raw=False, use_list=False):
                yield tuple(rec)

        yield from heapq.merge(iter(run), *(replay(f) for f in spilled))
    finally:
        for f in spilled:
            f.close()


# --- the source --------------------------------------------------------------------------------------


class S3Source:
    """Iterates ``Entry`` objects for the objects below one or more ``s3://bucket/prefix`` URLs."""

    def __init__(self, remote_urls: list[str], *, excludes: ExcludeMatcher | None = None, warn: Warn):
        self.excludes = excludes
        self.warn = warn
        # every HTTP attempt to the source buckets (LIST, HEAD, GET, bytes_down), counted by botocore hooks
        self.requests = RequestCounter(extra_keys=("resumed",))
        roots = sorted((parse_source_url(u) for u in remote_urls), key=self._root_order)
        self.roots: list[S3Settings] = []
        for root in roots:  # a root inside another root is already covered by it
            if not any(self._covers(kept, root) for kept in self.roots):
                self.roots.append(root)
        self._clients: dict[tuple, object] = {}
        for root in self.roots:
            if client_key(root) not in self._clients:
                self._clients[client_key(root)] = make_client(root, self.requests)

    @staticmethod
    def _root_order(root: S3Settings) -> tuple:
        return (root.bucket.encode(), walk_sort_key(root.prefix), repr(client_key(root)))

    @staticmethod
    def _covers(outer: S3Settings, inner: S3Settings) -> bool:
        if outer.bucket != inner.bucket or client_key(outer) != client_key(inner):
            return False
        return not outer.prefix or inner.prefix == outer.prefix or inner.prefix.startswith(outer.prefix + "/")

    def client_for(self, root: S3Settings):
        return self._clients[client_key(root)]

    # --- iteration ------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Entry]:
        stack: list[tuple[str, bool]] = []  # open directories: (name, excluded), outermost first
        for root in self.roots:
            found = False
            for sort_key, size, etag, mtime_ns in _sorted_records(self._list(root)):
                found = True
                key = sort_key.replace(b"\0", b"/").decode("utf-8", "surrogatepass")
                yield from self._entries_for(root, key, size, etag, mtime_ns, stack)
            if not found:
                self.warn(root.location(), "no objects found")

    def _entries_for(
        self, root: S3Settings, key: str, size: int, etag: str, mtime_ns: int, stack: list[tuple[str, bool]]
    ) -> Iterator[Entry]:
        is_marker = key.endswith("/")  # a "folder" object some consoles create: the directory itself
        parts = [root.bucket, *key.split("/")]
        if is_marker:
            parts.pop()
        if any(p in ("", ".", "..") for p in parts):
            self.warn(f"s3://{root.bucket}/{key}", "key has an empty, '.' or '..' path component; skipped")
            return
        dirs = parts if is_marker else parts[:-1]
        common = 0
        while common < len(stack) and common < len(dirs) and stack[common][0] == dirs[common]:
            common += 1
        del stack[common:]
        for depth in range(common, len(dirs)):
            path = "/".join(dirs[: depth + 1])
            excluded = bool(stack and stack[-1][1]) or self._excluded(path)
            stack.append((dirs[depth], excluded))
            if not excluded:
                own = is_marker and depth == len(dirs) - 1
                yield self._dir_entry(path, mtime_ns if own else 0)
        if is_marker:
            if size:
                self.warn(f"s3://{root.bucket}/{key}", "folder marker object has content; stored as a directory only")
            return
        path = "/".join(parts)
        if (stack and stack[-1][1]) or self._excluded(path):
            return
        yield self._file_entry(root, key, path, size, etag, mtime_ns)

    def _excluded(self, path: str) -> bool:
        # exclude patterns see an object as the absolute path /bucket/key
        return bool(self.excludes) and self.excludes.excluded(os.fsencode("/" + path))

    @staticmethod
    def _dir_entry(path: str, mtime_ns: int) -> Entry:
        # synthesised directories get a fixed mtime (0), so an unchanged bucket gives identical items
        item = {"p": path.encode("utf-8", "surrogateescape"), "t": it.DIR, "m": DIR_MODE, "mt": mtime_ns}
        return Entry(item, f"s3://{path}".encode("utf-8", "surrogateescape"))

    def _file_entry(self, root: S3Settings, key: str, path: str, size: int, etag: str, mtime_ns: int) -> Entry:
        item = {
            "p": path.encode("utf-8", "surrogateescape"),
            "t": it.FILE,
            "m": FILE_MODE,
            "mt": mtime_ns,
            "s": size,
            "s3": {"etag": etag},
        }
        entry = Entry(
            item,
            f"s3://{root.bucket}/{key}".encode("utf-8", "surrogateescape"),
            cache_key=(etag_number(etag), size, mtime_ns, mtime_ns),
        )
        entry.opener = lambda: _ObjectStream(self, root, key, entry)
        return entry

    # --- listing ----------------------------------------------------------------------------------------

    def _list(self, root: S3Settings) -> Iterator[tuple[bytes, int, str, int]]:
        """(sort key, size, etag, mtime_ns) of every object at or below the root, in S3's order."""
        client = self.client_for(root)
        prefix = root.prefix + "/" if root.prefix else ""
        any_below = False
        token = None
        while True:
            kwargs = {"Bucket": root.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = s3_call(root, f"list {root.location()}", lambda kw=kwargs: client.list_objects_v2(**kw))
            for obj in page.get("Contents", ()):
                any_below = True
                yield (walk_sort_key(obj["Key"]), int(obj["Size"]), obj.get("ETag", ""), _mtime_ns(obj["LastModified"]))
            token = page.get("NextContinuationToken") if page.get("IsTruncated") else None
            if not token:
                break
        if root.prefix and not any_below:
            # the root may name a single object rather than a "directory"
            head = self._head(root, client)
            if head is not None:
                yield (
                    walk_sort_key(root.prefix),
                    int(head["ContentLength"]),
                    head.get("ETag", ""),
                    _mtime_ns(head["LastModified"]),
                )

    def _head(self, root: S3Settings, client) -> dict | None:
        try:
            return s3_call(
                root, f"read {root.location()}", lambda: client.head_object(Bucket=root.bucket, Key=root.prefix)
            )
        except StorageError as exc:
            if exc.__cause__ is not None and is_not_found(exc.__cause__):
                return None
            raise


def etag_number(etag: str) -> int:
    """A stable 64-bit number for the files cache's inode slot: the first 8 bytes of a hash of the ETag."""
    return int.from_bytes(hashlib.blake2b(etag.encode(), digest_size=8).digest(), "little")


# --- streaming one object ------------------------------------------------------------------------------


class _ObjectStream(io.RawIOBase):
    """The body of one object as a readable binary stream, resumed with a ranged GET if it breaks.

    Every GET carries ``If-Match`` with the ETag in the item, so all bytes belong to one version of
    the object.  If the object was replaced between the listing and the first GET, the current version
    is read instead (and its ETag, size and mtime recorded); the files cache then does not remember the
    entry, so the next run looks at it again.  A version change in the middle of a read fails the object.
    """

    def __init__(self, source: S3Source, root: S3Settings, key: str, entry: Entry):
        super().__init__()
        self._source = source
        self._root = root
        self._key = key
        self._entry = entry
        self._etag = entry.item["s3"]["etag"]
        self._size = entry.item["s"]
        self._pos = 0
        self._body = None
        if self._size > 0:  # an empty object needs no GET
            self._open(first=True)

    def readable(self) -> bool:
        return True

    def _get(self, *, if_match: bool) -> dict:
        kwargs = {"Bucket": self._root.bucket, "Key": self._key}
        if if_match and self._etag:
            kwargs["IfMatch"] = self._etag
        if self._pos:
            kwargs["Range"] = f"bytes={self._pos}-"
        client = self._source.client_for(self._root)
        return s3_call(self._root, f"read s3://{self._root.bucket}/{self._key}", lambda: client.get_object(**kwargs))

    def _open(self, *, first: bool = False) -> None:
        try:
            response = self._get(if_match=True)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(exc, EndpointUnreachable | ServiceUnavailable) or cause is None:
                raise
            if first and is_precondition_failed(cause):
                try:
                    response = self._get(if_match=False)
                except StorageError as again:
                    raise _object_error(again) from again
                self._replaced(response)
            else:
                raise _object_error(exc) from exc
        self._body = response["Body"]

    def _replaced(self, response: dict) -> None:
        """The object changed since it was listed: describe what is actually read, and don't cache it."""
        self._etag = response.get("ETag", "")
        self._size = int(response.get("ContentLength", 0))
        item = self._entry.item
        item["s3"] = {"etag": self._etag}
        item["s"] = self._size
        if response.get("LastModified") is not None:
            item["mt"] = _mtime_ns(response["LastModified"])
        self._entry.cache_key = None

    def readinto(self, buffer) -> int:
        if self._pos >= self._size or (self._body is None and self._pos == 0):
            return 0
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        data = b""
        for attempt in Retrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(self._root.retry.attempts),
            wait=wait_random_exponential(multiplier=0.2, max=5),
            reraise=True,
        ):
            with attempt:
                if self._body is None:
                    self._source.requests.add("resumed")
                    self._open()  # ranged GET from self._pos, same ETag
                try:
                    data = self._body.read(want)
                except Exception:
                    self._close_body()  # the next attempt resumes at self._pos
                    raise
        if not data:
            raise OSError(errno.EIO, f"object ended after {self._pos} of {self._size} bytes")
        n = len(data)
        view[:n] = data
        self._pos += n
        self._source.requests.add("bytes_down", n)
        return n

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close; it is dropped anyway
                body.close()

    def close(self) -> None:
        self._close_body()
        super().close()


def _object_error(exc: StorageError) -> OSError | StorageError:
    """GET failures of one object are per-file warnings (the backup goes on), as for a local file; a service
    that stays down or refuses every request is not the object's fault and ends the backup."""
    cause = exc.__cause__
    if cause is None or not hasattr(cause, "response"):
        return exc
    code = error_code(cause)
    if is_not_found(cause):
        return FileNotFoundError(errno.ENOENT, "vanished during backup")
    if is_precondition_failed(cause):
        return OSError(errno.ESTALE, "changed while being read; the next backup stores it")
    if code == "InvalidObjectState":
        return OSError(errno.EIO, "object is in an archive storage class (restore it first)")
    if code == "NoSuchBucket":
        return exc
    if code in ("AccessDenied", "403"):
        return PermissionError(errno.EACCES, "access denied")
    return OSError(errno.EIO, f"GET failed ({code or cause})")
