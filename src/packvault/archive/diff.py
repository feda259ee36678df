"""``diff``: what changed between two archives, by path.

Archive A's items are summarised into a dict of path -> 16-byte digest of the fields that matter
(type, mode, owner, size, mtime, content chunk ids, link target); B is streamed against it.  That is one
small entry per file of A, never per chunk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import blake3
import msgpack

from . import items as it


@dataclass(frozen=True)
class Change:
    kind: str  # added | removed | modified
    path: str
    what: tuple[str, ...] = ()


_ASPECTS = {
    "type": ("t",),
    "content": ("c", "l", "h", "r"),
    "mode": ("m",),
    "owner": ("u", "g", "U", "G"),
    "mtime": ("mt",),
    "xattrs": ("x",),
}


def _summary(item: dict) -> tuple[bytes, ...]:
    return tuple(blake3.blake3(msgpack.packb([item.get(k) for k in keys])).digest(8) for keys in _ASPECTS.values())


def diff_items(items_a: Iterable[dict], items_b: Iterable[dict]) -> Iterator[Change]:
    before: dict[bytes, tuple[bytes, ...]] = {item[it.PATH]: _summary(item) for item in items_a}
    for item in items_b:
        path = item[it.PATH]
        old = before.pop(path, None)
        if old is None:
            yield Change("added", it.path_str(item))
            continue
        new = _summary(item)
        if new != old:
            what = tuple(name for name, a, b in zip(_ASPECTS, old, new, strict=True) if a != b)
            yield Change("modified", it.path_str(item), what)
    for path in before:
        yield Change("removed", path.decode("utf-8", "surrogateescape"))
