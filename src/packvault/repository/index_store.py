"""The index part of the repository: the chunk index loaded from its fragments (and the local cache of it),
new fragments, the epoch that invalidates every client's cache, and the proof a writer gives before it
commits (``prove_unchanged``).

A part of ``Repository`` (``repository.py``), whose store, key and cache it uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import msgpack
from borgstore.backends.errors import ObjectNotFound

from ..errors import IntegrityError, LockLost
from ..storage import layout
from ..storage.store import Store, discard, discard_many, load_beside
from .config import EPOCH_NAME
from .index import ChunkIndex, PackTable, new_table
from .objects import TYPE_INDEX

log = logging.getLogger(__name__)


class IndexStore:
    store: Store
    _index: ChunkIndex | None
    _index_epoch: bytes
    _index_fragments: list[str] | None
    damaged_fragments: list[str]
    fragments_at_load: list[str] | None = None  # what ``index/`` held when this process loaded the index

    _epoch_read: bool = False  # this process read config/epoch (its backend knows the ETag it replaces)

    def epoch(self) -> bytes:
        self._epoch_read = True
        try:
            return load_beside(self.store, EPOCH_NAME)  # asked beside the lock's HEAD and the index listing
        except ObjectNotFound:
            return b""

    def bump_epoch(self) -> bytes:
        """Invalidate every client's cached index (compact, repair) before changing the index.

        ``config/`` keys are replaced by compare-and-swap on S3: the backend needs to have seen the current
        value, so it is read first unless this process read it already (loading the index did, under the
        same lock); a bump by anyone else since then fails with ConflictError instead of being lost."""
        if not self._epoch_read:
            self.epoch()
        epoch = os.urandom(16)
        self.store.store(EPOCH_NAME, epoch)
        return epoch

    def list_fragments(self) -> list[str]:
        return [info.name for info in self.list_namespace(layout.INDEX)]

    def write_fragment(self, plaintext: bytes) -> str:
        return self.put_sealed(layout.INDEX, TYPE_INDEX, plaintext)

    def discard_fragment(self, name: str) -> None:
        """Delete an index fragment the caller listed under the exclusive lock and replaced (compact, repair)."""
        discard(self.store, layout.name(layout.INDEX, name))

    def discard_fragments(self, names: list[str]) -> None:
        """``discard_fragment`` of each, in as few requests as the store can (S3: 1000 per request)."""
        discard_many(self.store, [layout.name(layout.INDEX, name) for name in names])

    @property
    def index(self) -> ChunkIndex:
        if self._index is None:
            self._index = self._load_index()
        return self._index

    def _load_index(self) -> ChunkIndex:
        """Cached index + the fragments written since; a full rebuild when the epoch changed."""
        from borghash import HashTableNT

        with ThreadPoolExecutor(1, thread_name_prefix="pv-epoch") as pool:  # two round trips at once
            asked = pool.submit(self.epoch)
            fragments = self.list_fragments()
            epoch = asked.result()
        self.fragments_at_load = fragments  # compact, under the exclusive lock: no second listing
        present = set(fragments)
        cache = self.cache
        index = None
        covered: list[str] = []
        meta_raw = cache.read("index.meta")
        if meta_raw is not None:
            try:
                meta = msgpack.unpackb(meta_raw)
                if meta["epoch"] == epoch and set(meta["fragments"]) <= present:
                    table = HashTableNT.read(str(cache.file("index.table")))
                    index = ChunkIndex(table, PackTable.from_list(meta["packs"]))
                    covered = meta["fragments"]
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                log.info("index cache unusable, rebuilding: %s", exc)
                index = None
        if index is None:
            index = ChunkIndex(new_table(capacity=1000))
            covered = []
        have = set(covered)
        missing = [name for name in fragments if name not in have]
        self.damaged_fragments = []
        for name, loaded in self.load_raw_ahead(layout.INDEX, missing):
            try:
                index.apply_fragment(self.codec.open(loaded.result())[2])
            except IntegrityError as exc:
                # Skipped, not fatal: what it described is only stored again by the next backup.  compact
                # refuses while this list is not empty (it must not take those packs for garbage).
                log.warning("index fragment %s is damaged (%s); skipped: run 'packvault check --repair'", name, exc)
                self.damaged_fragments.append(name)
        missing = [name for name in missing if name not in self.damaged_fragments]
        self._index_epoch, self._index_fragments = epoch, sorted(set(covered) | set(missing))
        if missing or meta_raw is None:
            self.save_index_cache(index, epoch, self._index_fragments)
        return index

    def remember_written_fragments(self, names: list[str]) -> None:
        """Add the fragments this process wrote (and whose entries the in-memory index already holds) to the
        local index cache, so the next run on this machine doesn't GET back what it wrote itself: after
        a 1 GiB first backup that was five GETs per following run.  Call only once every entry added to the
        index is in a written fragment (after the writer's final flush)."""
        if self._index is None or self._index_fragments is None or not names:
            return  # no index loaded here, or one set by maintenance (which saves its own cache)
        self._index_fragments = sorted(set(self._index_fragments) | set(names))
        self.save_index_cache(self._index, self._index_epoch, self._index_fragments)

    def save_index_cache(self, index: ChunkIndex, epoch: bytes, fragments: list[str]) -> None:
        cache = self.cache
        tmp = cache.temp_path("index.table")
        index.table.write(str(tmp))
        cache.remove("index.meta")  # never a meta that describes another table
        cache.commit(tmp, "index.table")
        cache.write(
            "index.meta", msgpack.packb({"epoch": epoch, "fragments": fragments, "packs": index.packs.to_list()})
        )

    def invalidate_index_cache(self) -> None:
        self.cache.remove("index.meta")
        self._index = None
        self._index_fragments = None

    def reset_index(self, index: ChunkIndex | None = None) -> None:
        self._index = index
        self._index_fragments = None

    def prove_unchanged(self, alongside: Sequence[Callable[[], object]] = ()) -> None:
        """Prove, against the store, that what this writer relies on still holds: its lock exists, and no
        compact or repair ran since it loaded the index (the epoch it loaded with is still the store's).

        Called before a writer makes anything reference what it deduplicated against the index (an index
        fragment, the ``archives/`` entry): a writer whose lock was broken, or that slept through its
        lock's expiry, may have had those chunks deleted under it, and must not commit.

        ``alongside``: writes that need not wait for the proofs and go out while they are asked
        (``commit_archive``).  Their errors are raised only when the proofs hold."""
        indexed = self._index is not None and self._index_fragments is not None
        # the reads are independent: at 20-50 ms per request, asking them at once halves what a commit waits
        with ThreadPoolExecutor(1 + len(alongside), thread_name_prefix="pv-prove") as pool:
            epoch = pool.submit(self.epoch) if indexed else None
            beside = [pool.submit(write) for write in alongside]
            self.check_lock(verify=True)  # a lost lock is the first thing to say
            current = epoch.result() if epoch is not None else None
        if epoch is not None and current != self._index_epoch:
            raise LockLost(
                "a compact or repair changed the repository while this run held no valid lock; nothing was committed",
                hint="run it again: what was already uploaded is reused",
            )
        for write in beside:
            write.result()
