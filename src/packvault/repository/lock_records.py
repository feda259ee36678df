"""What a lock object holds and what a reader makes of it: the sealed record, the listed entry, the lock this
process wrote (with the clocks around the write), and the verdict on another holder's lock."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from datetime import datetime

import msgpack

RECORD_VERSION = 1


class Verdict(enum.Enum):
    """What a lock reader can conclude about a lock object."""

    LIVE = "live"
    STALE = "stale"
    UNSURE = "unsure"  # expired by its writer's clock, but the store's clock is not known yet


@dataclass(frozen=True)
class LockInfo:
    """One lock object as seen by ``list_locks``; holder fields are None when the record is unreadable."""

    key: str
    host: str | None
    pid: int | None
    thread: int | None
    exclusive: bool
    time: float | None  # the writer's clock when this object was written
    since: float | None  # the writer's clock when the holder started acquiring
    store_mtime: float | None  # the store's clock when this object was written
    stale: bool
    readable: bool
    session: str | None = None  # the holder's session, the same across its refreshes


@dataclass
class Entry:
    """A listed lock object and its decoded record (None when it does not unseal/decode)."""

    key: str
    mtime: float | None
    record: dict | None

    @property
    def is_probe(self) -> bool:
        return self.record is not None and bool(self.record.get("probe"))

    def order(self) -> tuple[float, str]:
        """Precedence among conflicting candidates: smaller wins.  An unreadable lock always precedes."""
        if self.record is None:
            return (float("-inf"), self.key)
        return (float(self.record["since"]), str(self.record["session"]))


@dataclass
class Written:
    """A lock object this manager wrote, with the local clocks around the write."""

    key: str
    mono_before: float  # time.monotonic() just before the store call
    wall_after: float  # time.time() just after it returned
    wall_before: float = 0.0  # time.time() just before the store call
    boot_before: float = 0.0  # boottime() just before the store call

    def age(self) -> float:
        """Seconds since this object was written, by whichever local clock says more.

        Monotonic time stands still while a machine is suspended, wall time can jump; the others judge our
        lock by wall clocks (theirs and the store's).  So the holder counts every clock it has: a lock that
        may have looked stale to anyone by any of them is treated as lost."""
        return max(
            time.monotonic() - self.mono_before,
            boottime() - self.boot_before,
            time.time() - self.wall_before,
        )


def boottime() -> float:
    """A clock that keeps counting while the machine sleeps (Linux CLOCK_BOOTTIME), else monotonic."""
    clock = getattr(time, "CLOCK_BOOTTIME", None)
    return time.clock_gettime(clock) if clock is not None else time.monotonic()


# --- records -------------------------------------------------------------------------------------------

_RECORD_TYPES: dict[str, type | tuple[type, ...]] = {
    "v": int,
    "host": str,
    "pid": int,
    "thread": int,
    "exclusive": bool,
    "time": (int, float),
    "since": (int, float),
    "session": str,
}


def decode_record(plain: bytes) -> dict | None:
    try:
        record = msgpack.unpackb(plain, raw=False)
    except Exception:  # any malformed input: msgpack raises several unrelated types
        return None
    if not isinstance(record, dict):
        return None
    for field, kind in _RECORD_TYPES.items():
        if not isinstance(record.get(field), kind):
            return None
    if record["v"] != RECORD_VERSION:
        return None
    start = record.get("pstart")
    if start is not None and not isinstance(start, int):
        return None
    return record


def format_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")
