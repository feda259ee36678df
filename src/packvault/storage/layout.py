"""The repository's namespaces in the store, and how deep each one nests.

``packs/`` is split in two sub-namespaces, ``packs/data/`` (file contents) and ``packs/meta/`` (item
streams, archive metadata), so that the kind of a pack is visible from its name alone: maintenance lists
and reads only the small metadata packs, and a colder storage class can be applied to data packs by key
prefix.  Only data packs grow with the data, so only they are nested (one level by the first hex byte,
which keeps directory listings of the ``file:`` backend small).  Everything else is flat.
"""

from __future__ import annotations

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
