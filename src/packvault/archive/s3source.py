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
mid-object resumes with a ranged GET from the last byte received.  Requests, retries and resumed reads are
the storage layer's (``storage/buckets.py``): the same policy and stream as the repository's S3 backend.

A key range (``KeyRange``, ``create --source-range START END``) restricts a source to the keys from START
(inclusive) to END (exclusive) in that walk order: one part of a scale-out backup (``partition.py`` plans the
ranges, ``maintenance/merge.py`` joins the parts).  Walk order is not S3's order, so a range is not one
contiguous stretch of a listing; ``KeyRange.listing_intervals`` gives the few stretches of S3's order that
hold it, each listed from its first key (``StartAfter``) to its end, so a part lists its own keys and not the
whole bucket.  A part whose range holds no object still stores the bucket's directory, so that every part is
an archive and ``merge`` can prove the parts cover the key space.

Endpoint and credentials: the standard AWS chain, plus the repository URL syntax
``s3://bucket/prefix?endpoint=URL&region=R&profile=P&path_style=1``.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import io
import os
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import NoReturn

import msgpack

from ..errors import EndpointUnreachable, ServiceUnavailable, StorageError, UsageError
from ..storage.buckets import (
    NOT_FOUND,
    PRECONDITION_FAILED,
    Bucket,
    BucketLocation,
    Buckets,
    ObjectReader,
    client_key,
    parse_location,
    refusal,
)
from ..storage.settings import StorageSettings
from . import items as it
from .keyrange import KeyRange, key_below, prefix_end, start_after, walk_sort_key
from .patterns import ExcludeMatcher
from .walker import Entry, Warn

FILE_MODE = 0o100644
DIR_MODE = 0o040755
SORT_RUN_RECORDS = 200_000  # listing records held in memory before a sorted run is spilled to a temp file
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# --- URLs ----------------------------------------------------------------------------------------------


def parse_source_url(url: str, settings: StorageSettings | None = None) -> BucketLocation:
    """``s3://bucket[/prefix][?endpoint=...]``: the repository URL syntax, parsed by the storage layer;
    ``settings``: the environment's storage defaults, read at the edge (none when not given)."""
    return parse_location(url, settings if settings is not None else StorageSettings())


# --- the listing, in walk order --------------------------------------------------------------------------


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

    def __init__(
        self,
        remote_urls: list[str],
        *,
        excludes: ExcludeMatcher | None = None,
        warn: Warn,
        settings: StorageSettings | None = None,
        key_range: KeyRange | None = None,
    ):
        """``key_range``: only the keys in it (one part of a scale-out backup; needs exactly one URL)."""
        self.excludes = excludes
        self.key_range = key_range
        self.warn = warn
        settings = settings if settings is not None else StorageSettings()
        # every HTTP attempt to the source buckets (LIST, HEAD, GET, bytes_down), and resumed downloads
        self.buckets = Buckets(extra_counts=("resumed",))
        self.requests = self.buckets.requests
        roots = sorted((parse_source_url(u, settings) for u in remote_urls), key=self._root_order)
        self.roots: list[BucketLocation] = []
        for root in roots:  # a root inside another root is already covered by it
            if not any(self._covers(kept, root) for kept in self.roots):
                self.roots.append(root)
        self._buckets = {id(root): self.buckets.bucket(root) for root in self.roots}
        if key_range is not None and len(remote_urls) != 1:
            raise UsageError("--source-range needs exactly one s3:// source", hint="the one the plan was made of")

    @staticmethod
    def _root_order(root: BucketLocation) -> tuple:
        return (root.bucket.encode(), walk_sort_key(root.prefix), repr(client_key(root)))

    @staticmethod
    def _covers(outer: BucketLocation, inner: BucketLocation) -> bool:
        if outer.bucket != inner.bucket or client_key(outer) != client_key(inner):
            return False
        return not outer.prefix or inner.prefix == outer.prefix or inner.prefix.startswith(outer.prefix + "/")

    def bucket_for(self, root: BucketLocation) -> Bucket:
        return self._buckets[id(root)]

    # --- iteration ------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Entry]:
        stack: list[tuple[str, bool]] = []  # open directories: (name, excluded), outermost first
        for root in self.roots:
            found = False
            for sort_key, size, etag, mtime_ns in _sorted_records(self._list(root)):
                found = True
                key = sort_key.replace(b"\0", b"/").decode("utf-8", "surrogatepass")
                yield from self._entries_for(root, key, size, etag, mtime_ns, stack)
            if not found and self.key_range is not None:
                yield self._dir_entry(root.bucket, 0)  # an empty part: see the module docstring
            elif not found:
                self.warn(root.location(), "no objects found")

    def _entries_for(
        self, root: BucketLocation, key: str, size: int, etag: str, mtime_ns: int, stack: list[tuple[str, bool]]
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
        name = path.encode("utf-8", "surrogateescape")
        item = {it.PATH: name, it.TYPE: it.DIR, it.MODE: DIR_MODE, it.MTIME: mtime_ns}
        return Entry(item, f"s3://{path}".encode("utf-8", "surrogateescape"))

    def _file_entry(self, root: BucketLocation, key: str, path: str, size: int, etag: str, mtime_ns: int) -> Entry:
        item = {
            it.PATH: path.encode("utf-8", "surrogateescape"),
            it.TYPE: it.FILE,
            it.MODE: FILE_MODE,
            it.MTIME: mtime_ns,
            it.SIZE: size,
            it.S3: {"etag": etag},
        }
        entry = Entry(
            item,
            f"s3://{root.bucket}/{key}".encode("utf-8", "surrogateescape"),
            cache_key=(etag_number(etag), size, mtime_ns, mtime_ns),
        )
        entry.opener = lambda: _ObjectStream(self, root, key, entry)
        return entry

    # --- listing ----------------------------------------------------------------------------------------

    def _list(self, root: BucketLocation) -> Iterator[tuple[bytes, int, str, int]]:
        """(sort key, size, etag, mtime_ns) of every object at or below the root, in S3's order."""
        bucket = self.bucket_for(root)
        if self.key_range is not None:
            yield from self._list_range(bucket, root.prefix + "/" if root.prefix else "", self.key_range)
            return
        any_below = False
        for obj in bucket.list(root.prefix + "/" if root.prefix else ""):
            any_below = True
            yield (walk_sort_key(obj.key), obj.size, obj.etag, _mtime_ns(obj.modified))
        if root.prefix and not any_below:
            # the root may name a single object rather than a "directory"
            head = bucket.head(root.prefix, f"read {root.location()}")
            if head is not None:
                yield (walk_sort_key(root.prefix), head.size, head.etag, _mtime_ns(head.modified))

    @staticmethod
    def _list_range(bucket: Bucket, prefix: str, key_range: KeyRange) -> Iterator[tuple[bytes, int, str, int]]:
        """The objects below ``prefix`` in ``key_range``: each stretch of S3's order that may hold some is
        listed from its first possible key and left at its end."""
        below_end = prefix_end(prefix)
        for lo, hi in key_range.listing_intervals():
            if not key_below(prefix, hi) or not key_below(lo, below_end):
                continue  # the stretch lies wholly outside the prefix
            first = start_after(lo) if lo > prefix else None
            for obj in bucket.list(prefix, start_after=first):
                if not key_below(obj.key, hi):
                    break
                if obj.key >= lo and key_range.contains(obj.key):  # each key from its own stretch only
                    yield (walk_sort_key(obj.key), obj.size, obj.etag, _mtime_ns(obj.modified))


def etag_number(etag: str) -> int:
    """A stable 64-bit number for the files cache's inode slot: the first 8 bytes of a hash of the ETag."""
    return int.from_bytes(hashlib.blake2b(etag.encode(), digest_size=8).digest(), "little")


# --- streaming one object ------------------------------------------------------------------------------


class _ObjectStream(io.RawIOBase):
    """The body of one object as a readable binary stream (``storage.buckets.ObjectReader``: the listed
    version, resumed if the connection breaks).  If the object was replaced between the listing and the
    first GET, the current version is read instead and recorded (its ETag, size and mtime); the files cache
    then does not remember the entry, so the next run looks at it again."""

    def __init__(self, source: S3Source, root: BucketLocation, key: str, entry: Entry):
        super().__init__()
        self._entry = entry
        try:
            self._reader: ObjectReader = source.bucket_for(root).open(
                key, etag=entry.item[it.S3]["etag"], size=entry.item[it.SIZE]
            )
        except StorageError as exc:
            _raise_for_object(exc)
        if self._reader.replaced is not None:
            self._replaced()

    def readable(self) -> bool:
        return True

    def _replaced(self) -> None:
        """The object changed since it was listed: describe what is actually read, and don't cache it."""
        replaced = self._reader.replaced
        item = self._entry.item
        item[it.S3] = {"etag": replaced.etag}
        item[it.SIZE] = replaced.size
        if replaced.modified is not None:
            item[it.MTIME] = _mtime_ns(replaced.modified)
        self._entry.cache_key = None

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._reader.read(len(view))
        except StorageError as exc:
            _raise_for_object(exc)
        n = len(data)
        view[:n] = data
        return n

    def close(self) -> None:
        self._reader.close()
        super().close()


def _raise_for_object(exc: StorageError) -> NoReturn:
    error = _object_error(exc)
    if error is exc:
        raise exc
    raise error from exc


def _object_error(exc: StorageError) -> OSError | StorageError:
    """GET failures of one object are per-file warnings (the backup goes on), as for a local file; a service
    that stays down or refuses every request is not the object's fault and ends the backup."""
    if isinstance(exc, EndpointUnreachable | ServiceUnavailable):
        return exc
    answer = refusal(exc)
    if answer is None:
        return exc
    if answer == NOT_FOUND:
        return FileNotFoundError(errno.ENOENT, "vanished during backup")
    if answer == PRECONDITION_FAILED:
        return OSError(errno.ESTALE, "changed while being read; the next backup stores it")
    if answer == "InvalidObjectState":
        return OSError(errno.EIO, "object is in an archive storage class (restore it first)")
    if answer == "NoSuchBucket":
        return exc
    if answer in ("AccessDenied", "403"):
        return PermissionError(errno.EACCES, "access denied")
    return OSError(errno.EIO, f"GET failed ({answer or exc.__cause__})")
