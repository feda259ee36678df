"""One level of an S3 listing, in borgstore's order (sorted by name) across pages; pure, no I/O.

S3 returns the keys and sub-directory prefixes of a level in the byte order of the *key*, and a
sub-directory's key carries its trailing ``/``.  Sorted by *name* it has none, so a name that continues a
directory's name with a character below ``/`` (``b-1``, ``b.del`` next to the directory ``b``) comes before
the directory in S3's order but after it by name.  Sorting each page on its own is not enough: ``b-1`` may
end one page and ``b/`` start the next.

These inversions are the only ones (two names where neither continues the other keep their order, and a
plain object never follows a name it continues), so the merge holds an entry back only until the listing has
passed the directory that could still precede it: for ``b-1`` that is ``b/``; for ``ab.x-y`` the shortest
such directory, ``ab/``, which S3 lists after every longer one (``ab.x/``).  Everything in between is held in
a small heap, usually one or two entries, so memory stays bounded by the names that share such a stem.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Iterable, Iterator

from borgstore.backends._base import ItemInfo

_BELOW_SLASH = re.compile(r"[\x00-\x2e]")  # every character that sorts before "/"


def held_until(name: str) -> str | None:
    """The S3 key (relative to the level) a listing must have reached before ``name`` can be handed out, or
    None when no later directory can sort before it."""
    match = _BELOW_SLASH.search(name, 1)  # a directory's name is never empty: start at the second character
    return name[: match.start()] + "/" if match else None


def sorted_level(pages: Iterable[tuple[list[ItemInfo], str]]) -> Iterator[ItemInfo]:
    """Merge pages of one listing level into one stream sorted by name.

    ``pages`` yields, per LIST answer, the entries to hand out and the largest key of the answer (relative
    to the level, a directory with its ``/``; including keys that were filtered out), in the order S3
    returned them.
    """
    heap: list[tuple[str, int, ItemInfo]] = []
    order = itertools.count()  # keeps entries of equal name (an object and a directory) in S3's order
    for entries, last_key in pages:
        for info in entries:
            heapq.heappush(heap, (info.name, next(order), info))
        while heap:
            limit = held_until(heap[0][0])
            if limit is not None and limit > last_key:
                break
            yield heapq.heappop(heap)[2]
    while heap:
        yield heapq.heappop(heap)[2]
