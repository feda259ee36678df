"""Key ranges in the order the S3 source walks keys: one part of a scale-out backup.

The S3 source (``s3source.py``) walks keys as the local walker walks paths: by path component, so ``/`` ranks
below every other byte (``walk_sort_key``).  S3 lists keys in plain byte order, so a range of walk order is not
one stretch of a listing: ``a/b`` walks before ``a.txt`` and lists after it.  ``KeyRange.listing_intervals``
gives the few stretches of S3's order (intervals [lo, hi) of code points, which is the order of UTF-8 bytes)
whose union holds the range exactly; a part lists each from its first possible key (``start_after``) to its
end, so it reads its own keys and not the whole bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


def walk_sort_key(key: str) -> bytes:
    """Byte order of path components: ``/`` ranks below every other byte (NUL cannot occur in a key)."""
    return key.encode("utf-8", "surrogatepass").replace(b"/", b"\0")


MAX_KEY_BYTES = 1024  # S3's limit on the length of a key (UTF-8)
_MAX_CHAR = "\U0010ffff"


def _succ(ch: str) -> str:
    code = ord(ch) + 1
    return chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``; None: there is none (no prefix)."""
    while prefix and prefix[-1] == _MAX_CHAR:
        prefix = prefix[:-1]
    return prefix[:-1] + _succ(prefix[-1]) if prefix else None


def _walk_at_least(bound: str) -> list[tuple[str, str | None]]:
    """Intervals [lo, hi) of S3's order (code points, the order of UTF-8 bytes; hi None: no end) whose union is
    every key at or after ``bound`` in walk order.  A key ``k`` is there when ``bound`` is a prefix of it, or
    when, at the first position ``i`` where they differ, ``k[i]`` ranks above ``bound[i]`` with ``/`` ranked
    lowest: the stretches below split only around ``/`` and the characters that sort before it."""
    out: list[tuple[str, str | None]] = [(bound, prefix_end(bound))]
    for i, ch in enumerate(bound):
        head, end = bound[:i], prefix_end(bound[:i])
        if ch == "/":
            out += [(head + "\0", head + "/"), (head + "0", end)]
        elif ch < "/":
            out += [(head + _succ(ch), head + "/"), (head + "0", end)]
        else:
            out.append((head + _succ(ch), end))
    return _normalised(out)


def key_below(a: str | None, b: str | None) -> bool:
    """a < b where None is the end (above everything)."""
    return a is not None and (b is None or a < b)


def _normalised(intervals: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    merged: list[tuple[str, str | None]] = []
    for lo, hi in sorted((i for i in intervals if key_below(i[0], i[1])), key=lambda i: i[0]):
        if merged and not key_below(merged[-1][1], lo):
            if key_below(merged[-1][1], hi):
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _minus(a: list[tuple[str, str | None]], b: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    out = []
    for lo, hi in a:
        pieces = [(lo, hi)]
        for blo, bhi in b:
            cut = []
            for plo, phi in pieces:
                if key_below(plo, blo):
                    cut.append((plo, blo if key_below(blo, phi) else phi))
                if key_below(bhi, phi):
                    cut.append((bhi if key_below(plo, bhi) else plo, phi))
            pieces = [p for p in cut if key_below(p[0], p[1])]
        out += pieces
    return _normalised(out)


def start_after(lo: str) -> str | None:
    """S3's StartAfter (exclusive) for a listing that must begin at ``lo`` (inclusive): a string below ``lo``
    with as few keys as possible between them: the last character lowered by one and padded with the highest
    character up to the longest key S3 allows (1,024 bytes), so only keys of that maximal length could fall
    in between; the lister skips keys below ``lo`` all the same."""
    if not lo:
        return None
    if lo[-1] == "\0":
        return lo[:-1]
    code = ord(lo[-1]) - 1
    lowered = chr(0xD7FF if 0xD800 <= code <= 0xDFFF else code)
    head = lo[:-1] + lowered
    pad = (MAX_KEY_BYTES - len(head.encode("utf-8", "surrogatepass"))) // 4
    return head + _MAX_CHAR * max(0, pad)


@dataclass(frozen=True)
class KeyRange:
    """The keys from ``start`` (inclusive; "" is the first) to ``end`` (exclusive; None: to the last) in walk
    order (``walk_sort_key``): one part of a scale-out plan."""

    start: str = ""
    end: str | None = None

    def __post_init__(self) -> None:
        if self.end is not None and walk_sort_key(self.end) <= walk_sort_key(self.start):
            raise UsageError(
                f"empty key range: the end {self.end!r} does not come after the start {self.start!r} in walk order",
                hint="give START END as written in the plan (plan-source); END '' means to the last key",
            )

    def contains(self, key: str) -> bool:
        k = walk_sort_key(key)
        return walk_sort_key(self.start) <= k and (self.end is None or k < walk_sort_key(self.end))

    def listing_intervals(self) -> list[tuple[str, str | None]]:
        """Stretches [lo, hi) of S3's key order that hold every key of the range (and few others)."""
        intervals = _walk_at_least(self.start)
        if self.end is not None:
            intervals = _minus(intervals, _walk_at_least(self.end))
        return intervals

    def describe(self) -> dict:
        return {"start": self.start, "end": self.end}
