"""Extract from cold data packs (S3 GLACIER/DEEP_ARCHIVE): the files as their packs become readable.

Restores of one archive's packs finish over hours, not together, so an extract that waited for the last
one before writing anything would keep a user from files that could be theirs already.  Instead it
restores every pack the selection needs (``repository/restores.py``), then works in passes:

1. each pass writes the regular files whose data packs are all readable now and were not all readable at
   the pass before (archive order within them), through the same ``Extractor`` and its overwrite policy,
   with their parent directories made as needed (recorded, ``DirTree.made``);
2. between passes it polls the packs still waiting (one HEAD each per poll interval);
3. once every pack is readable, a last pass runs over the whole selection as a hot extract would, except
   that the files an earlier pass wrote are only planned (``Extractor.done``: their names count for
   ``--delete``, hardlinks to them are made), and a directory an earlier pass created counts as new.  So
   links, special files and every directory's metadata come last, as in a hot extract, and the final
   tree is the same as that of a hot extract.

A pass runs only after a poll that found packs newly readable, so at most one per poll interval; each
reads the archive's item stream again (metadata packs, which are never cold) and only the data of its own
files.  Which pass wrote a file needs no per-file memory: a pack is readable from the pass whose poll found it
(one number per needed pack, and the restore plan holds those packs anyway), and a file belongs to the
latest pass among its chunks' packs.

Without ``wait``, one pass writes what is readable now and the command stops (``RestorePending``, exit 3)
while restores are pending.  A rerun of the command (the cache records that restores are pending) then
defaults to ``--overwrite if-changed`` (the CLI's decision): a file written by the run before has the
archived size and mtime and is kept without reading its data again.

A bucket target (``S3Restorer``) has no passes: it waits for every pack, then restores, as before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from ..repository.restores import PackRestorer, RestorePlan
from . import items as it
from .extract import Extractor, ExtractStats, chunk_ids


def _pause(seconds: float) -> None:
    time.sleep(seconds)


class ColdExtract:
    """Restores the packs an extract needs and extracts in passes as they become readable (module doc)."""

    def __init__(self, extractor, restorer: PackRestorer, items: Callable[[], Iterator[dict]]):
        """``extractor``: an ``Extractor`` (passes) or anything with ``run(items)`` (no passes);
        ``items``: a fresh iterator of the selected items per call, in archive order."""
        self.extractor = extractor
        self.restorer = restorer
        self.items = items
        self.readable_at: dict[str, int] = {}  # needed pack -> the pass from which it is readable

    def run(self, *, wait: bool, poll: float, progress: Callable[[RestorePlan], None] | None = None) -> ExtractStats:
        needed = self.restorer.needed(chunk_ids(self.items()))
        plan = self.restorer.prepare(needed)
        if not plan.waiting:
            return self._finish(self.extractor.run(self.items()))
        if not isinstance(self.extractor, Extractor):
            if not wait:
                raise plan.pending_error()
            self.restorer.wait(plan, poll=poll, progress=progress)
            return self._finish(self.extractor.run(self.items()))
        self.readable_at = dict.fromkeys((pack for pack in needed if pack not in plan.waiting), 0)
        extractor = self.extractor
        extractor.made_dirs = set()
        step, written_upto, fresh = 0, -1, bool(self.readable_at)
        while plan.waiting:
            if fresh:
                extractor.run(item for item in self.items() if self._step_of_file(item) == step)
                written_upto = step
            if not wait:
                raise plan.pending_error(extracted=extractor.stats.nfiles)
            if progress:
                progress(plan)
            _pause(poll)
            step += 1
            newly = self.restorer.poll(plan)
            for pack in newly:
                self.readable_at[pack] = step
            fresh = bool(newly)
        if progress:
            progress(plan)

        def done(item: dict) -> bool:
            found = self._step_of_file(item)
            return found is not None and found <= written_upto

        extractor.done = done
        try:
            return self._finish(extractor.run(self.items()))
        finally:
            extractor.done = None
            extractor.made_dirs = None

    def _finish(self, stats: ExtractStats) -> ExtractStats:
        self.restorer.finished()
        return stats

    def _step_of_file(self, item: dict) -> int | None:
        """The pass from which all data of a regular file with data is readable (None: not yet, or not a
        regular file with data).  A chunk the index lacks counts as readable: the reader reports it."""
        if item[it.TYPE] != it.FILE:
            return None
        found = None
        for chunk_id, _ in item.get(it.CHUNKS) or ():
            pack = self.restorer.pack_of(chunk_id)
            step = 0 if pack is None else self.readable_at.get(pack)
            if step is None:
                return None
            found = step if found is None else max(found, step)
        return found
