"""The repository's side of S3 Object Lock: which objects are live, and their retention.

Live are the objects a restore needs: the config records, the keys, the archive entries (not the
soft-deleted ones), the index fragments and every pack the index references.  Lock records, name claims
and tombstones are not: a claim or a tombstone lost after its retention ran out costs nothing a restore
needs.  The names come from listings and from the loaded index's pack table (one slot per pack, never per
chunk).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from datetime import datetime

from ..storage import layout
from ..storage.store import Store, backend_of
from .config import RepoConfig
from .index import ChunkIndex


class ObjectLockState:
    """Part of ``Repository``: its live objects and their Object Lock retention (module doc)."""

    store: Store
    config: RepoConfig | None

    # provided by the other parts of Repository
    index: ChunkIndex

    def list_namespace(self, namespace: str, *, deleted: bool = False) -> Iterator: ...
    def list_fragments(self) -> list[str]: ...
    def pack_name(self, kind: int, pack: str) -> str: ...

    def live_object_names(self) -> Iterator[str]:
        """Store names of every live object (module doc), each once."""
        for namespace in (layout.CONFIG, layout.KEYS, layout.ARCHIVES):
            for info in self.list_namespace(namespace):
                yield layout.name(namespace, info.name)
        for fragment in self.list_fragments():
            yield layout.name(layout.INDEX, fragment)
        index = self.index
        used = array("B", bytes(len(index.packs)))
        for _, entry in index.entries():
            used[entry.pack] = 1
        for number, flag in enumerate(used):
            if flag:
                name = self.pack_name(index.packs.kinds[number], index.packs.names[number])
                yield self.store.find(name)

    def object_retained_until(self, name: str) -> datetime | None:
        """The retain-until date of the store object ``name`` (None: it has none)."""
        return backend_of(self.store).retained_until(name)

    def pack_retained_until(self, kind: int, pack: str) -> datetime | None:
        """The retain-until date of a pack (compact does not try to delete a pack still retained)."""
        return self.object_retained_until(self.store.find(self.pack_name(kind, pack)))

    def retain_object_until(self, name: str, until: datetime) -> None:
        """Extend the retention of the store object ``name`` to ``until`` (in the repository's mode)."""
        backend_of(self.store).retain_until(name, until)
