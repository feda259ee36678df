"""Scale-out: splitting a bucket into key ranges of roughly equal weight, and the record a part keeps of its range.

A plan (``packvault plan-source``) is a JSON array with one element per part, the format a Step Functions
Distributed Map reads with ``ItemReader`` ``InputType: JSON``::

    {"part": K, "parts": N, "source": "s3://bucket/prefix", "start": "key or ''", "end": "key or null",
     "objects": n, "bytes": b}

``start`` is inclusive, ``end`` exclusive (null: to the last key), in the order the S3 source walks keys
(``s3source.walk_sort_key``), so the parts' item streams laid end to end are the item stream of one backup
of the whole source (``maintenance/merge.py``).  The first part starts at '' and the last ends at null, so
the parts cover the key space exactly, also keys written after the plan was made.

Weight: every object counts its bytes plus ``OBJECT_WEIGHT`` (the work of one request), so a range of a
million empty objects is not taken for an empty range, while ranges of large objects still balance by bytes.
Cuts fall between objects, never inside one: one huge object makes one part of its own, and a bucket with
fewer objects than parts gets fewer parts (``parts`` in the plan is the number of elements, not the number
asked for).

The planner needs the total weight before it can cut, and the keys in walk order (not S3's order): both come
from one pass, because the sort (``s3source._sorted_records``, spilled to temp files beyond a bound) consumes
the whole listing before it yields its first record.  Memory stays bounded by the sort's run size.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import IntegrityError, UsageError
from ..storage.settings import StorageSettings
from .s3source import KeyRange, _sorted_records, walk_sort_key

OBJECT_WEIGHT = 64 * 1024
"""Bytes one object weighs beyond its size: a GET's latency at ~50 MB/s is worth tens of KiB of transfer."""

META_PART = "scaleout_part"
"""Key of the archive metadata under which a part records its plan element (``PartRecord``)."""


@dataclass(frozen=True)
class PlanPart:
    """One element of a plan: THE schema of it (``encode``/``decode``; the CLI, the Lambda and merge use it)."""

    part: int
    parts: int
    source: str
    start: str
    end: str | None
    objects: int = 0
    bytes: int = 0

    @property
    def key_range(self) -> KeyRange:
        return KeyRange(self.start, self.end)

    def encode(self) -> dict:
        return {
            "part": self.part,
            "parts": self.parts,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "objects": self.objects,
            "bytes": self.bytes,
        }

    @classmethod
    def decode(cls, record: object) -> PlanPart:
        """A plan element (from JSON); UsageError when it is not one."""
        if not isinstance(record, dict):
            raise UsageError(f"a plan element must be a JSON object, not {type(record).__name__}")
        try:
            part, parts, source, start = record["part"], record["parts"], record["source"], record["start"]
        except KeyError as exc:
            raise UsageError(f"the plan element lacks {exc.args[0]!r}", hint="use the output of plan-source") from None
        end = record.get("end")
        ok = (
            isinstance(part, int)
            and isinstance(parts, int)
            and 0 <= part < parts
            and isinstance(source, str)
            and isinstance(start, str)
            and (end is None or isinstance(end, str))
        )
        if not ok:
            raise UsageError(f"the plan element {record!r} is not valid", hint="use the output of plan-source")
        return cls(part, parts, source, start, end or None, int(record.get("objects", 0)), int(record.get("bytes", 0)))


@dataclass(frozen=True)
class PartRecord:
    """What a part archive keeps in its metadata (``META_PART``): which range of which source it holds, and of
    how many parts (None when the command line did not say), so that merge can prove the parts cover the
    key space exactly."""

    source: str
    start: str
    end: str | None
    part: int | None = None
    parts: int | None = None

    def encode(self) -> dict:
        return {"source": self.source, "start": self.start, "end": self.end, "part": self.part, "parts": self.parts}

    @classmethod
    def decode(cls, record: object, archive: str) -> PartRecord:
        if not isinstance(record, dict) or not isinstance(record.get("start"), str):
            raise IntegrityError(f"archive {archive!r}: its scale-out part record is damaged")
        end = record.get("end")
        return cls(str(record.get("source", "")), record["start"], end or None, record.get("part"), record.get("parts"))


@dataclass
class PlanCost:
    """What making the plan cost: requests of the listing (or inventory reads) and what it saw."""

    objects: int = 0
    bytes: int = 0


def plan_ranges(
    records: Iterable[tuple[str, int]], parts: int, source: str, *, cost: PlanCost | None = None
) -> list[PlanPart]:
    """Cut ``(key, size)`` records (any order) into at most ``parts`` ranges of roughly equal weight."""
    if parts < 1:
        raise UsageError(f"--parts must be at least 1, not {parts}")
    cost = cost if cost is not None else PlanCost()

    def counted() -> Iterator[tuple[bytes, int]]:
        for key, size in records:
            cost.objects += 1
            cost.bytes += size
            yield (walk_sort_key(key), size)

    groups: list[list] = []  # [start sort key, objects, bytes] per part
    total = 0
    cumulative = 0
    current = -1
    for sort_key, size in _sorted_records(counted()):
        if not total:  # the sort has consumed the whole listing: the totals are known
            total = cost.bytes + OBJECT_WEIGHT * cost.objects
        index = min(parts - 1, cumulative * parts // total)
        if index != current:
            groups.append([sort_key, 0, 0])
            current = index
        groups[-1][1] += 1
        groups[-1][2] += size
        cumulative += size + OBJECT_WEIGHT
    if not groups:
        return [PlanPart(0, 1, source, "", None)]
    plan = []
    for number, (_, objects, nbytes) in enumerate(groups):
        start = "" if number == 0 else _key_of(groups[number][0])
        end = _key_of(groups[number + 1][0]) if number + 1 < len(groups) else None
        plan.append(PlanPart(number, len(groups), source, start, end, objects, nbytes))
    return plan


def _key_of(sort_key: bytes) -> str:
    return sort_key.replace(b"\0", b"/").decode("utf-8", "surrogatepass")


def prove_coverage(records: list[tuple[str, PartRecord]]) -> list[tuple[str, PartRecord]]:
    """The parts ``(archive name, record)`` sorted by their start, if they cover the key space exactly once:
    the first starts at '', each ends where the next starts, the last runs to the end, all of one source,
    and (where recorded) numbered 0..N-1 of N.  UsageError naming the first flaw otherwise."""
    if not records:
        raise UsageError("no part archives to merge")
    ordered = sorted(records, key=lambda r: walk_sort_key(r[1].start))
    sources = {r.source for _, r in ordered}
    if len(sources) > 1:
        raise UsageError(f"the parts are of different sources ({', '.join(sorted(sources))}); nothing was merged")
    counts = {r.parts for _, r in ordered if r.parts is not None}
    if len(counts) > 1:
        raise UsageError(f"the parts belong to plans of different sizes ({sorted(counts)}); nothing was merged")
    if counts and (n := counts.pop()) != len(ordered):
        numbers = {r.part for _, r in ordered}
        missing = [str(k) for k in range(n) if k not in numbers]
        what = f"part(s) {', '.join(missing)} missing" if missing else f"{len(ordered)} archives for {n} parts"
        raise UsageError(f"the plan has {n} parts: {what}; nothing was merged", hint="run the missing parts first")
    if ordered[0][1].start != "":
        raise UsageError(
            f"no part starts at the first key (the first, {ordered[0][0]!r}, starts at {ordered[0][1].start!r}); "
            "nothing was merged",
            hint="run the missing parts first",
        )
    for (name, rec), (next_name, next_rec) in zip(ordered, ordered[1:], strict=False):
        if rec.end is None or rec.end != next_rec.start:
            flaw = (
                "overlap"
                if rec.end is None or walk_sort_key(rec.end) > walk_sort_key(next_rec.start)
                else "leave a gap (a part is missing)"
            )
            raise UsageError(
                f"parts {name!r} (to {rec.end!r}) and {next_name!r} (from {next_rec.start!r}) {flaw}; "
                "nothing was merged",
                hint="merge the parts of one plan",
            )
    if ordered[-1][1].end is not None:
        raise UsageError(
            f"no part runs to the last key (the last, {ordered[-1][0]!r}, ends at {ordered[-1][1].end!r}); "
            "nothing was merged",
            hint="run the missing parts first",
        )
    return ordered


# --- planning a source -----------------------------------------------------------------------------------


@dataclass
class PlanReport:
    """A plan and what it cost: the listing's (or inventory's) requests and what it saw."""

    plan: list[PlanPart]
    objects: int
    bytes: int
    requests: dict
    inventory_files: int = 0
    inventory_bytes: int = 0

    def as_dict(self) -> dict:
        return {
            "parts": len(self.plan),
            "objects": self.objects,
            "bytes": self.bytes,
            "requests": self.requests,
            "inventory_files": self.inventory_files,
            "inventory_bytes": self.inventory_bytes,
        }


def plan_source(
    source_url: str, parts: int, *, inventory_url: str | None = None, settings: StorageSettings | None = None
) -> PlanReport:
    """The plan of ``source_url`` (``s3://bucket[/prefix]``) in at most ``parts`` parts, from a listing of
    the source, or from the S3 Inventory report ``inventory_url`` (its manifest.json): no object is read."""
    from ..storage.buckets import Buckets
    from .inventory import InventoryRead, inventory_records
    from .s3source import parse_source_url

    location = parse_source_url(source_url, settings)
    cost = PlanCost()
    if inventory_url:
        read = InventoryRead()
        records = inventory_records(inventory_url, location, settings=settings, read=read)
        plan = plan_ranges(records, parts, source_url, cost=cost)
        return PlanReport(plan, cost.objects, cost.bytes, read.requests, read.files, read.bytes_read)
    buckets = Buckets()
    bucket = buckets.bucket(location)
    records = ((obj.key, obj.size) for obj in bucket.list(location.prefix + "/" if location.prefix else ""))
    plan = plan_ranges(records, parts, source_url, cost=cost)
    return PlanReport(plan, cost.objects, cost.bytes, buckets.request_stats())


def write_plan(plan: list[PlanPart], target_url: str, settings: StorageSettings | None = None) -> dict:
    """Store the plan as the object ``s3://bucket/key`` (a Distributed Map's ItemReader reads it there); the
    requests it took."""
    from ..storage.buckets import Buckets
    from .s3source import parse_source_url

    location = parse_source_url(target_url, settings)
    if not location.prefix:
        raise UsageError(f"--output {target_url} names a bucket, not an object", hint="use s3://bucket/plan.json")
    data = plan_json(plan).encode()
    buckets = Buckets()
    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
    buckets.bucket(location).put(location.prefix, data, md5=md5)
    return buckets.request_stats()


def plan_json(plan: list[PlanPart]) -> str:
    return json.dumps([p.encode() for p in plan], indent=1) + "\n"
