"""S3 listings: the one loop that pages through a LIST, and what the backend makes of the pages.

``pages`` is the only place that follows continuation tokens; the backend's level and tree listings,
``destroy`` and the bucket reader for backups of a bucket (``storage/buckets.py``) all page through it.

One level of a listing is handed out in borgstore's order (sorted by name) across pages.  S3 returns the
keys and sub-directory prefixes of a level in the byte order of the *key*, and a sub-directory's key
carries its trailing ``/``.  Sorted by *name* it has none, so a name that continues a
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
from collections.abc import Callable, Iterable, Iterator

from borgstore.backends._base import ItemInfo, validate_name

from ...errors import StorageError

PAGE_SIZE = 1000  # S3's maximum keys per LIST answer

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


def pages(
    list_page: Callable[[dict], dict],
    bucket: str,
    prefix: str,
    *,
    page_size: int = PAGE_SIZE,
    delimiter: bool = False,
    start_after: str | None = None,
) -> Iterator[dict]:
    """Every ListObjectsV2 answer for ``prefix``, following continuation tokens to the end.

    ``list_page(kwargs)`` sends one request (with the caller's retries).  Pages are driven by the service's
    token, never by the last key, so pages holding only sub-directories (CommonPrefixes) advance too; a
    truncated answer without a token would loop forever and is refused.  ``start_after``: only keys after
    it (S3's StartAfter), so a listing of a key range need not page through the keys before it.
    """
    token: str | None = None
    while True:
        kwargs: dict = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if delimiter:
            kwargs["Delimiter"] = "/"
        if start_after and not token:  # the token carries the position from the second page on
            kwargs["StartAfter"] = start_after
        if token:
            kwargs["ContinuationToken"] = token
        page = list_page(kwargs)
        yield page
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")
        if not token:
            raise StorageError(f"a truncated listing of s3://{bucket}/{prefix} came without a continuation token")


def listable(entry: str) -> bool:
    """Skip what borgstore would never have written (temp/hidden names, keys with odd characters)."""
    if not entry:
        return False
    try:
        validate_name(entry)
    except (ValueError, TypeError):
        return False
    return True


def tree_entries(
    answers: Iterable[dict],
    prefix: str,
    seen: Callable[[str, int], None] | None = None,
    *,
    with_paths: bool = False,
) -> Iterator:
    """The objects of delimiter-less pages below ``prefix``, named by their last path component; ``seen`` is
    told the path below ``prefix`` and the size of each.  ``with_paths``: (that path, ItemInfo) pairs."""
    for page in answers:
        for obj in page.get("Contents", []):
            path = obj["Key"][len(prefix) :]
            if listable(path):
                if seen is not None:
                    seen(path, obj["Size"])
                info = ItemInfo(
                    name=path.rsplit("/", 1)[-1],
                    exists=True,
                    size=obj["Size"],
                    directory=False,
                    mtime=obj["LastModified"].timestamp(),
                )
                yield (path, info) if with_paths else info


def class_totals(answers: Iterable[dict], prefix: str) -> dict[str, int]:
    """Bytes by storage class of the objects of delimiter-less pages below ``prefix`` (LIST names the class
    of each object; an answer without one means STANDARD)."""
    totals: dict[str, int] = {}
    for page in answers:
        for obj in page.get("Contents", []):
            if listable(obj["Key"][len(prefix) :]):
                storage_class = obj.get("StorageClass") or "STANDARD"
                totals[storage_class] = totals.get(storage_class, 0) + obj["Size"]
    return totals


def level_entries(answers: Iterable[dict], prefix: str) -> Iterator[tuple[list[ItemInfo], str]]:
    """Per delimited page below ``prefix``: its objects and sub-directories, and its largest key (relative
    to ``prefix``, filtered keys included), which is what ``sorted_level`` needs."""
    for page in answers:
        entries = []
        last = ""
        for obj in page.get("Contents", []):
            entry = obj["Key"][len(prefix) :]
            last = max(last, entry)
            if listable(entry):
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
            if listable(entry):
                entries.append(ItemInfo(name=entry, exists=True, size=0, directory=True))
        yield entries, last
