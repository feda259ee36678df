"""Planning of range reads and server-side copies; pure functions, no I/O.

``gather`` and ``defrag`` get lists of ``(name, offset, size)`` ranges.  Reading them one request each
would cost a round trip per range, so neighbouring ranges of the same object are merged into one ranged
GET.  ``defrag`` can additionally have S3 copy big runs itself (UploadPartCopy with a source range): the
bytes never travel to the client.  S3 demands that every part but the last is at least 5 MiB, so small runs
between big ones are downloaded and become a part of their own, topped up with the head of the next big
run when they are too small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MiB = 1024 * 1024
MIN_PART = 5 * MiB
MAX_COPY_PART = 5 * 1024 * MiB
# Read through holes up to this size rather than pay another request.  ``gather`` serves compaction, whose
# live objects lie between the holes deleted files left (a few hundred KiB to a few MiB).  A ranged GET costs
# a round trip (tens of milliseconds to S3, in-region too), in which one stream delivers megabytes: a hole of
# 2 MiB costs about what the request would in time, and, in-region, nothing in money.
COALESCE_GAP = 2 * MiB


@dataclass
class RangeRead:
    """One ranged GET serving one or more of the requested sources."""

    name: str
    start: int
    end: int  # exclusive
    pieces: list[tuple[int, int, int]] = field(default_factory=list)  # (source index, offset, size)


def coalesce_reads(sources: list[tuple[str, int, int]], gap: int = COALESCE_GAP) -> list[RangeRead]:
    """Merge consecutive sources (non-negative offsets) of one object into as few reads as sensible.

    Only forward-moving neighbours are merged, so the reads keep the order of the sources and no byte is
    fetched twice by one read.
    """
    reads: list[RangeRead] = []
    for index, (name, offset, size) in enumerate(sources):
        if size == 0:
            continue
        last = reads[-1] if reads else None
        if last is not None and last.name == name and last.end <= offset <= last.end + gap:
            last.end = offset + size
        else:
            last = RangeRead(name, offset, offset + size)
            reads.append(last)
        last.pieces.append((index, offset, size))
    return reads


def merge_runs(sources: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Join sources that continue each other exactly (same object, next byte) into runs."""
    runs: list[list] = []
    for name, offset, size in sources:
        if size == 0:
            continue
        if runs and runs[-1][0] == name and runs[-1][1] + runs[-1][2] == offset:
            runs[-1][2] += size
        else:
            runs.append([name, offset, size])
    return [(name, offset, size) for name, offset, size in runs]


@dataclass
class CopyPart:
    name: str
    offset: int
    size: int


@dataclass
class DataPart:
    ranges: list[tuple[str, int, int]]

    @property
    def size(self) -> int:
        return sum(size for _, _, size in self.ranges)


def plan_copy_parts(runs: list[tuple[str, int, int]], min_part: int = MIN_PART) -> list[CopyPart | DataPart]:
    """Split the target into multipart parts: server-side copies for runs of >= ``min_part`` bytes, the rest
    downloaded.  Every part except the last one is at least ``min_part`` bytes, as S3 requires."""
    parts: list[CopyPart | DataPart] = []
    pending: list[tuple[str, int, int]] = []
    pending_size = 0
    for name, offset, size in runs:
        need = max(0, min_part - pending_size) if pending else 0
        if size - need >= min_part:
            if need:
                pending.append((name, offset, need))
            if pending:
                parts.append(DataPart(pending))
                pending, pending_size = [], 0
            start, length = offset + need, size - need
            pieces = -(-length // MAX_COPY_PART)
            step = -(-length // pieces)
            for piece_start in range(start, start + length, step):
                parts.append(CopyPart(name, piece_start, min(step, start + length - piece_start)))
        else:
            pending.append((name, offset, size))
            pending_size += size
    if pending:
        parts.append(DataPart(pending))
    return parts
