"""The repository's namespaces in the store, how deep each one nests, and how each one may be written.

``packs/`` is split in two sub-namespaces, ``packs/data/`` (file contents) and ``packs/meta/`` (item
streams, archive metadata), so that the kind of a pack is visible from its name alone: maintenance lists
and reads only the small metadata packs, and a colder storage class can be applied to data packs by key
prefix.  Only data packs grow with the data, so only they are nested (one level by the first hex byte,
which keeps directory listings of the ``file:`` backend small).  Everything else is flat.

The write policy (``WRITE_POLICY``) says, per namespace, what a second write of an existing name means.  It
lives here, with the namespaces, and is handed to a backend that can enforce it (the S3 backend, through
conditional writes) when the backend is built; the backend itself knows no repository namespace.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass

CONFIG = "config"
KEYS = "keys"
LOCKS = "locks"
ARCHIVES = "archives"
INDEX = "index"
TOMBSTONES = "tombstones"  # ids of archives that compact purged (see Repository.purge_deleted_archives)
NAMES = "names"  # create-only claims of archive names (see Repository.claim_archive_name)
DATA_PACKS = "packs/data"
META_PACKS = "packs/meta"

NAMESPACES = (CONFIG, KEYS, LOCKS, ARCHIVES, TOMBSTONES, NAMES, INDEX, DATA_PACKS, META_PACKS)

# borgstore Store(config=...) namespace configuration: namespace prefix -> nesting levels.
STORE_CONFIG: dict[str, dict] = {
    f"{CONFIG}/": {"levels": [0]},
    f"{KEYS}/": {"levels": [0]},
    f"{LOCKS}/": {"levels": [0]},
    f"{ARCHIVES}/": {"levels": [0]},
    f"{TOMBSTONES}/": {"levels": [0]},
    f"{NAMES}/": {"levels": [0]},
    f"{INDEX}/": {"levels": [0]},
    f"{DATA_PACKS}/": {"levels": [1]},
    f"{META_PACKS}/": {"levels": [0]},
}


def name(namespace: str, key: str) -> str:
    """The store name of ``key`` in ``namespace``."""
    return f"{namespace}/{key}"


class WriteMode(enum.Enum):
    """What storing a name that already exists does."""

    OVERWRITE = "overwrite"  # borgstore's plain contract: the new value replaces the old one
    CREATE_ONLY = "create-only"  # content-named: the existing value must be the same bytes, else IntegrityError
    FIRST_WINS = "first-wins"  # a marker whose presence is its message: the existing value stays, no error
    COMPARE_AND_SWAP = "compare-and-swap"  # mutable: replaced only by a client that saw the current value


@dataclass(frozen=True)
class WritePolicy:
    """Write modes by namespace, the namespaces that hold bulk data (which may get a colder storage class),
    and the namespaces whose objects never get an S3 Object Lock retention (``unlocked``: lock records, which
    must be deleted when released, minutes after they were written).

    A namespace covers the names below it (``packs/data`` covers ``packs/data/ab/abcd`` and its soft-deleted
    ``.del`` form); the longest matching namespace decides; names outside every namespace are overwritten.
    """

    modes: tuple[tuple[str, WriteMode], ...] = ()
    data: tuple[str, ...] = ()
    unlocked: tuple[str, ...] = ()

    def mode(self, name: str) -> WriteMode:
        best, found = -1, WriteMode.OVERWRITE
        for namespace, mode in self.modes:
            if len(namespace) > best and name.startswith(namespace + "/"):
                best, found = len(namespace), mode
        return found

    def is_data(self, name: str) -> bool:
        return any(name.startswith(namespace + "/") for namespace in self.data)

    def is_locked(self, name: str) -> bool:
        """Whether ``name`` gets the repository's Object Lock retention (when it has one)."""
        return not any(name.startswith(namespace + "/") for namespace in self.unlocked)

    def namespaces(self) -> Iterator[str]:
        return (namespace for namespace, _ in self.modes)


# Tombstones are sealed again (fresh nonce, other bytes) when a crashed compact runs once more: create-only
# would refuse that forever, overwriting would be harmless but pointless; the first one stays.
WRITE_POLICY = WritePolicy(
    modes=(
        (CONFIG, WriteMode.COMPARE_AND_SWAP),
        (KEYS, WriteMode.CREATE_ONLY),
        (LOCKS, WriteMode.CREATE_ONLY),
        (ARCHIVES, WriteMode.CREATE_ONLY),
        (TOMBSTONES, WriteMode.FIRST_WINS),
        (NAMES, WriteMode.CREATE_ONLY),
        (INDEX, WriteMode.CREATE_ONLY),
        (DATA_PACKS, WriteMode.CREATE_ONLY),
        (META_PACKS, WriteMode.CREATE_ONLY),
    ),
    data=(DATA_PACKS,),
    unlocked=(LOCKS,),
)
