"""The pack part of the repository: pack names, storing packs (from memory or a spool file), reading ranges
or streams of them, copy-forward and deletion for maintenance.

Pack objects are immutable and content-named, so these calls go to the (thread-safe) backend directly and
may run in worker threads.  A part of ``Repository`` (``repository.py``), whose store it uses.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import blake3
from borgstore.backends.errors import ObjectNotFound, ReadRangeError
from borgstore.constants import DEL_SUFFIX

from ..errors import IntegrityError, ObjectMissing
from ..storage import layout
from ..storage.spool import SpoolFile
from ..storage.store import Store, backend_of, discard, discard_many, load_beside, store_beside
from .index import KIND_DATA, KIND_META

if TYPE_CHECKING:
    from .metapacks import MetaPackCache


def content_name(data: bytes | memoryview) -> str:
    """Unkeyed name of stored bytes: a retried write of the same bytes lands on the same key."""
    return blake3.blake3(data).hexdigest()


def defrag_pack_name(objects) -> str:
    """Name of a pack assembled by copy-forward from (object id, stored size) pairs, in pack order.

    A server-side copy never sees the bytes, so the name cannot hash them; it hashes what the pack holds
    instead.  Ids are MACs of the plaintext and every object authenticates its id, so the name is still
    a function of the content, and a retried copy of the same objects converges on the same key.
    """
    h = blake3.blake3(b"packvault-defrag-v1")
    for object_id, size in objects:
        h.update(object_id)
        h.update(size.to_bytes(8, "little"))
    return h.hexdigest()


def pack_name_matches(name: str, buf: bytes | memoryview) -> bool:
    """True if ``name`` is the content name or the copy-forward name of the pack bytes ``buf``."""
    if content_name(buf) == name:
        return True
    from .objects import iter_headers

    try:
        return defrag_pack_name((h.object_id, h.total_size) for _, h in iter_headers(buf)) == name
    except IntegrityError:
        return False


class PackStore:
    store: Store

    def meta_pack_cache(self) -> MetaPackCache | None:
        """The local cache metadata packs are kept in when stored (``Repository`` has one; a bare pack store,
        ``packreading.PackReader``, has none)."""
        return None

    @staticmethod
    def pack_namespace(kind: int) -> str:
        return layout.META_PACKS if kind else layout.DATA_PACKS

    @staticmethod
    def pack_name(kind: int, pack: str) -> str:
        return layout.name(PackStore.pack_namespace(kind), pack)

    def store_pack(self, kind: int, data: bytes | memoryview) -> str:
        """Store a finished pack under its content name, from any thread; returns the pack name."""
        pack = content_name(data)
        store_beside(self.store, self.pack_name(kind, pack), data)
        return pack

    def store_pack_as(self, kind: int, pack: str, data: bytes | memoryview) -> None:
        """Store pack bytes under a name the caller proved right for them (``content_name`` or
        ``defrag_pack_name``) and proved free: repair's correctly named copy of a misnamed pack."""
        store_beside(self.store, self.pack_name(kind, pack), data)

    @property
    def links_pack_spools(self) -> bool:
        """True for a local directory repository whose packs are spooled in place and linked in."""
        return backend_of(self.store).spool_directory() is not None

    def new_pack_spool(self, directory: str | os.PathLike | None = None) -> SpoolFile:
        """An empty spool file for a pack; it hashes its content for the pack name when that is asked for.

        A local directory repository creates it inside itself (``directory`` is ignored) so that storing it
        is a link (``storage/local.py``); for others it goes to ``directory``, with the MD5 uploads send.
        """
        local = backend_of(self.store).spool_directory()
        if local is not None:
            return SpoolFile(
                local, content_hash=blake3.blake3(), md5=False, linkable=True, background=True, direct=True
            )
        return SpoolFile(directory, content_hash=blake3.blake3(), background=True)

    def store_pack_spool(self, kind: int, spool: SpoolFile) -> str:
        """Store a finished pack from its spool file (``new_pack_spool``), from any thread; returns its name.

        The name is the same ``content_name`` ``store_pack`` would give these bytes (hashed from the spool
        file here, in the storing thread).  A local directory repository links the spool file in; a backend
        that can upload from a file (``store_payload``: S3) reads it in small blocks; any other backend gets
        the bytes in memory, as from ``store_pack``.  The caller closes the spool file afterwards, whatever
        happened.
        """
        pack = spool.content_digest()
        backend_of(self.store).store_spool(self.store.find(self.pack_name(kind, pack)), spool)
        cache = self.meta_pack_cache() if kind == KIND_META else None
        if cache is not None and spool.size <= cache.max_pack:
            cache.put(pack, spool.read_all())  # compact's next mark reads it from here (``metapacks.py``)
        return pack

    def load_pack_range(self, kind: int, pack: str, offset: int = 0, size: int | None = None) -> bytes:
        try:
            return load_beside(self.store, self.pack_name(kind, pack), offset=offset, size=size)
        except ObjectNotFound:
            raise pack_missing(pack) from None

    @property
    def streams_packs(self) -> bool:
        """True if pack ranges can be read as streams (``open_pack_stream``): remote stores."""
        return backend_of(self.store).streams_ranges

    def open_pack_stream(self, kind: int, pack: str, offset: int, size: int) -> PackStream:
        """Bytes [offset, offset + size) of a pack, read sequentially from one request (see
        ``storage/s3_stream.py``); only where ``streams_packs``."""
        name = self.store.find(self.pack_name(kind, pack))
        return PackStream(backend_of(self.store).open_range(name, offset, size), pack)

    @property
    def data_storage_class(self) -> str | None:
        """The storage class this client writes data packs to (None: the store's default)."""
        return backend_of(self.store).data_storage_class

    @property
    def cold_data_packs(self) -> bool:
        """True if this client writes data packs to a class that needs a restore before a read."""
        return backend_of(self.store).cold_data

    def data_pack_state(self, pack: str) -> tuple[str, int]:
        """(``storage.backend.READABLE``/``COLD``/``RESTORING``, size) of a data pack: one HEAD on S3."""
        try:
            return backend_of(self.store).restore_status(self.store.find(self.pack_name(0, pack)))
        except ObjectNotFound:
            raise pack_missing(pack) from None

    def restore_data_pack(self, pack: str, *, days: int, tier: str) -> str:
        """Ask for a readable copy of a cold data pack (``PackvaultBackend.restore``); returns its state."""
        try:
            return backend_of(self.store).restore(self.store.find(self.pack_name(0, pack)), days=days, tier=tier)
        except ObjectNotFound:
            raise pack_missing(pack) from None

    def bytes_by_storage_class(self) -> dict[str, int]:
        """Bytes of the whole repository by storage class (one tree listing per namespace)."""
        totals: dict[str, int] = {}
        backend = backend_of(self.store)
        for namespace in layout.NAMESPACES:
            for storage_class, size in backend.bytes_by_class(namespace).items():
                totals[storage_class] = totals.get(storage_class, 0) + size
        return totals

    def copy_forward(self, kind: int, ranges: list[tuple[str, int, int]], *, target: str | None = None) -> str:
        """A new pack of ``kind`` from (pack, offset, size) ranges of existing packs of that kind, in order
        (compact's copy-forward; server-side where the store can).  Named ``target`` (a ``defrag_pack_name``
        the caller proved free), or by the blake3 of the copied bytes when None; returns the new pack name."""
        namespace = self.pack_namespace(kind)
        if target is None:
            return self.store.defrag(ranges, namespace=namespace, algorithm="blake3")
        return self.store.defrag(ranges, namespace=namespace, target=target)

    def gather_pack_ranges(self, kind: int, ranges: list[tuple[str, int, int]]) -> bytes:
        """The bytes of (pack, offset, size) ranges of packs of ``kind``, concatenated in order: neighbouring
        ranges of a pack share a read, and the reads run in parallel (S3: ranged GETs, ``gather``)."""
        sources = [(self.store.find(self.pack_name(kind, pack)), offset, size) for pack, offset, size in ranges]
        try:
            return backend_of(self.store).gather(sources)
        except ObjectNotFound:
            raise ObjectMissing("a pack being read is missing from the repository") from None
        except ReadRangeError as exc:
            raise IntegrityError(f"a pack being read is shorter than the index says ({exc})") from None

    def list_packs(self, kind: int):
        """ItemInfos of the packs of one kind (name, size, mtime), sorted by name."""
        return self.list_namespace(self.pack_namespace(kind))

    def list_packs_of_both_kinds(self) -> dict[int, list]:
        """ItemInfos of the packs of each kind (sorted by name), from one tree listing of ``packs/``: on S3 one
        LIST per 1000 packs of either kind, where a listing per kind costs at least one each."""
        parent, data = layout.DATA_PACKS.rsplit("/", 1)
        meta_parent, meta = layout.META_PACKS.rsplit("/", 1)
        assert parent == meta_parent
        kinds = {data: KIND_DATA, meta: KIND_META}
        result: dict[int, list] = {KIND_DATA: [], KIND_META: []}
        for path, info in backend_of(self.store).list_tree_paths(parent):
            kind = kinds.get(path.split("/", 1)[0])
            if kind is not None and not info.name.endswith(DEL_SUFFIX):
                result[kind].append(info)
        for infos in result.values():
            infos.sort(key=lambda info: info.name)
        return result

    def delete_pack(self, kind: int, pack: str) -> None:
        """Delete a pack that compact proved unreferenced.  Where the store can delete without asking first
        whether the object exists (S3), one request instead of a HEAD and a DELETE."""
        discard(self.store, self.pack_name(kind, pack))

    def delete_packs(self, packs: list[tuple[int, str]]) -> None:
        """``delete_pack`` of each (kind, pack), in as few requests as the store can (S3: 1000 per request,
        data and metadata packs together)."""
        discard_many(self.store, [self.pack_name(kind, pack) for kind, pack in packs])


def pack_missing(pack: str) -> ObjectMissing:
    return ObjectMissing(f"pack {pack} is missing from the repository")


class PackStream:
    """A backend's range stream with its errors in Packvault's terms (a missing or short pack)."""

    def __init__(self, stream, pack: str):
        self._stream = stream
        self._pack = pack

    def read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except ObjectNotFound:
            raise pack_missing(self._pack) from None
        except ReadRangeError as exc:
            raise IntegrityError(f"pack {self._pack} is truncated: {exc}") from None

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, 1024 * 1024)
            self.read(step)
            n -= step

    def close(self) -> None:
        self._stream.close()
