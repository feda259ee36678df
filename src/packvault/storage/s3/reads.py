"""Every read of the S3 backend: object info, (ranged) loads, streamed ranges and gathered ranges.

Ranges are checked against the object's size: a range before the start or past the end is a
``ReadRangeError``, never a silently shorter answer.  Full downloads are verified against the MD5 stored
with the object (``bucket.py``); neighbouring ranges of one object share a GET (``plan.coalesce_reads``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor

import botocore.exceptions as bex
from borgstore.backends._base import ItemInfo, validate_name
from borgstore.backends.errors import ObjectNotFound, ReadRangeError

from .bucket import EtagMemory, ListedSizes, S3Bucket
from .errors import error_code, is_not_found
from .plan import RangeRead, coalesce_reads
from .stream import RangeStream

SUFFIX_READ_SLACK = 1024 * 1024  # negative offset + size: read this much extra rather than pay a HEAD

Sources = list[tuple[str, int, int]]


def before_start(name: str, offset: int, size: int) -> ReadRangeError:
    return ReadRangeError(f"Read range error from {name} (offset {offset} is before the start of its {size} bytes)")


class S3Reads:
    """The reading half of ``S3Backend``; names are validated by the backend before they get here."""

    def __init__(self, bucket: S3Bucket, etags: EtagMemory, pool: Callable[[], Executor], sizes: ListedSizes):
        self.bucket = bucket
        self.etags = etags  # reads remember the ETag a later compare-and-swap write must expect
        self.pool = pool
        self.sizes = sizes  # what listings showed of create-only objects: no HEAD for their size

    def info(self, name: str) -> ItemInfo:
        base_name = name.rsplit("/", 1)[-1]
        head = self.bucket.head(name)
        if head is None:
            return ItemInfo(name=base_name, exists=False, directory=False, size=0)
        self.etags.remember(name, head.get("ETag"))
        return ItemInfo(
            name=base_name,
            exists=True,
            directory=False,
            size=head["ContentLength"],
            mtime=head["LastModified"].timestamp(),
        )

    def load(self, name: str, *, size: int | None = None, offset: int = 0) -> bytes:
        """Bytes of ``name`` from ``offset`` (negative: from the end), ``size`` of them or all the rest.

        An offset before the start raises ``ReadRangeError`` (the file backend's seek refuses it too): S3
        would serve a suffix range longer than the object as the whole object.  Past the end is empty.
        """
        if size == 0:
            if self.bucket.head(name) is None:
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
                head = self.bucket.head(name)
                if head is None:
                    raise ObjectNotFound(name)
                start = head["ContentLength"] + offset
                if start < 0:
                    raise before_start(name, offset, head["ContentLength"])
                byte_range = f"bytes={start}-{start + size - 1}"
        elif size is None:
            byte_range = f"bytes={offset}-" if offset > 0 else None
        else:
            byte_range = f"bytes={offset}-{offset + size - 1}"
        data, response = self.bucket.get(name, byte_range, verify=byte_range is None)
        if suffix is not None and len(data) < suffix:
            raise before_start(name, offset, len(data))
        if response:
            self.etags.remember(name, response.get("ETag"))
        return data[:truncate] if truncate is not None else data

    def open_range(self, name: str, offset: int, size: int) -> RangeStream:
        """Bytes [offset, offset + size) of ``name`` as a stream (one GET, resumed if it breaks)."""
        bucket = self.bucket
        key = bucket.key(name)

        def open_body(first: int, last: int):
            return bucket.client.get_object(Bucket=bucket.name, Key=key, Range=f"bytes={first}-{last}")["Body"]

        def call(fn):
            try:
                return bucket.request(f"GET {key} bytes={offset}-{offset + size - 1}", fn)
            except bex.ClientError as exc:
                if is_not_found(exc):
                    raise ObjectNotFound(name) from None
                if error_code(exc) == "InvalidRange":
                    raise ReadRangeError(f"{name} ends before byte {offset + size}") from None
                raise

        return RangeStream(open_body, call, offset, size, lambda n: bucket.counter.add("bytes_down", n))

    def gather(self, sources: Sources) -> bytes | bytearray:
        """All ranges, concatenated in order; neighbouring ranges share a GET, GETs run in parallel.

        Each GET's pieces are copied into their place in the result as it arrives, so the memory is the result
        and the reads in flight, not every read's answer and then their concatenation (twice the result)."""
        sources = self.absolute_sources(sources)
        reads = coalesce_reads(sources)
        if not reads:
            return b""
        starts, total = [], 0
        for _, _, size in sources:
            starts.append(total)
            total += size

        def fetch(r: RangeRead) -> bytes:
            data, _ = self.bucket.get(r.name, f"bytes={r.start}-{r.end - 1}", verify=False)
            if len(data) != r.end - r.start:
                raise ReadRangeError(
                    f"Read range error from {r.name} (requested {r.end - r.start} bytes at {r.start}, got {len(data)})"
                )
            return data

        if len(reads) == 1 and reads[0].pieces == [(0, reads[0].start, total)]:
            return fetch(reads[0])  # one range read whole: the answer is the result
        out = bytearray(total)

        def read(r: RangeRead) -> None:
            view = memoryview(fetch(r))
            for index, offset, size in r.pieces:
                out[starts[index] : starts[index] + size] = view[offset - r.start : offset - r.start + size]

        for _ in self.pool().map(read, reads):
            pass
        return out

    def absolute_sources(self, sources: Sources, sizes: dict[str, int] | None = None) -> Sources:
        """Turn negative offsets into absolute ones (one HEAD per object that needs it, sizes kept in
        ``sizes``); an offset before the start of its object is a ``ReadRangeError``."""
        sizes = {} if sizes is None else sizes
        result = []
        for name, offset, size in sources:
            validate_name(name)
            if offset < 0 and size:
                if name not in sizes:
                    sizes[name] = self.bucket.size(name)
                if sizes[name] + offset < 0:
                    raise before_start(name, offset, sizes[name])
                offset = sizes[name] + offset
            result.append((name, offset, size))
        return result

    def check_ranges(self, sources: Sources, sizes: dict[str, int]) -> None:
        """Every (absolute) range must lie inside its object: one HEAD per object whose size is not known
        (from ``sizes``, or from a listing: ``ListedSizes``).

        For server-side copies, whose ranges S3 implementations check differently or not at all (moto copies
        what exists, LocalStack rejects the part): ``ReadRangeError``/``ObjectNotFound`` before any write.
        """
        for name in dict.fromkeys(name for name, _, _ in sources):
            listed = self.sizes.get(name)
            if name not in sizes and listed is not None:
                sizes[name] = listed
        unknown = [name for name in dict.fromkeys(name for name, _, _ in sources) if name not in sizes]
        if len(unknown) == 1:
            sizes[unknown[0]] = self.bucket.size(unknown[0])
        elif unknown:
            sizes.update(zip(unknown, self.pool().map(self.bucket.size, unknown), strict=True))
        for name, offset, size in sources:
            if size and offset + size > sizes[name]:
                raise ReadRangeError(
                    f"Read range error from {name} (requested {size} bytes at offset {offset}, "
                    f"the object has {sizes[name]})"
                )
