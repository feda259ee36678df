"""Restoring cold data packs before a read: which packs a read needs, which of them are cold, and asking for
them (S3 GLACIER/DEEP_ARCHIVE, ``storage/s3/restore.py``).

A restore takes hours (minutes at the expedited tier), far longer than a command should sit in a terminal
or a function may run, so the planner is resumable: it asks S3 about every pack the read needs (one HEAD
each), requests a restore of each cold one (one RestoreObject each, the only request that costs retrieval
money), and records what it requested in the repository's cache.  The caller then waits (``wait``) or stops
and runs again later; S3 remembers the restores, the record only says what this client asked for and when,
so that a rerun reports it and never asks twice for a pack whose restore is still running.

Only the packs the read needs are planned: the chunks of the selected files, looked up in the index, as the
restore planner of ``ChunkReader.scatter`` groups them.  Metadata packs are never cold.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ..errors import RestorePending
from ..storage.backend import COLD, READABLE
from .repository import Repository

GiB = 1024**3
RECORD = "cold-restores.json"
TIERS = ("bulk", "standard", "expedited")
DEFAULT_TIER = "standard"
DEFAULT_DAYS = 3
DEFAULT_POLL_SECONDS = 300.0  # restores take hours; a HEAD per pack every 5 minutes costs next to nothing
HEAD_THREADS = 8


@dataclass
class RestorePlan:
    """What the packs a read needs look like right now."""

    packs: int = 0  # data packs the read needs
    requested: int = 0  # restores asked for by this call
    waiting: dict[str, int] = field(default_factory=dict)  # pack -> size, not readable yet

    @property
    def waiting_bytes(self) -> int:
        return sum(self.waiting.values())

    def pending_error(self, extracted: int = 0) -> RestorePending:
        done = f"; {extracted} files extracted from the packs readable already" if extracted else ""
        return RestorePending(
            f"restore requested for {len(self.waiting)} packs, {self.waiting_bytes / GiB:.2f} GiB{done}; "
            "rerun to continue"
        )


class PackRestorer:
    """Plans and requests the restores of the data packs a read needs (module doc)."""

    def __init__(
        self, repo: Repository, *, tier: str = DEFAULT_TIER, days: int = DEFAULT_DAYS, record: str = RECORD
    ):
        """``record``: the cache entry of this kind of read's requests (compact keeps its own, so that its
        restores never make an extract believe it is resuming)."""
        self.repo = repo
        self.tier = tier
        self.days = days
        self.record = record

    def needed(self, chunk_ids: Iterable[bytes]) -> set[str]:
        """The data packs holding these chunks (chunks missing from the index are the reader's to report)."""
        packs = set()
        for chunk_id in chunk_ids:
            pack = self.pack_of(chunk_id)
            if pack is not None:
                packs.add(pack)
        return packs

    def prepare(self, packs: set[str]) -> RestorePlan:
        """Ask S3 about each pack, request a restore of each cold one, record the requests."""
        plan = RestorePlan(packs=len(packs))
        record = self._record()
        with ThreadPoolExecutor(HEAD_THREADS, thread_name_prefix="pv-restore") as pool:
            states = dict(zip(packs, pool.map(self.repo.data_pack_state, packs), strict=True))
            cold = [pack for pack, (state, _) in states.items() if state == COLD]
            for pack, state in zip(cold, pool.map(self._request, cold), strict=True):
                states[pack] = (state, states[pack][1])
                if state != READABLE:
                    plan.requested += 1
                    record[pack] = {"requested": int(time.time()), "tier": self.tier, "days": self.days}
        for pack, (state, size) in states.items():
            if state == READABLE:
                record.pop(pack, None)
            else:
                plan.waiting[pack] = size
        self._save(record)
        return plan

    def wait(self, plan: RestorePlan, *, poll: float, progress: Callable[[RestorePlan], None] | None = None) -> None:
        """Poll the packs still waiting (one HEAD each per ``poll`` seconds) until all are readable."""
        while plan.waiting:
            if progress:
                progress(plan)
            time.sleep(poll)
            self.poll(plan)
        self.finished()
        if progress:
            progress(plan)

    def poll(self, plan: RestorePlan) -> list[str]:
        """One look at each pack still waiting (one HEAD each): the packs readable now leave ``plan.waiting``
        and are returned; a pack whose temporary copy expired before it was read is asked for again."""
        waiting = list(plan.waiting)
        with ThreadPoolExecutor(HEAD_THREADS, thread_name_prefix="pv-restore") as pool:
            states = list(pool.map(self.repo.data_pack_state, waiting))
        readable = []
        for pack, (state, _) in zip(waiting, states, strict=True):
            if state == READABLE:
                del plan.waiting[pack]
                readable.append(pack)
            elif state == COLD:
                self._request(pack)
        return readable

    def finished(self) -> None:
        """Every pack the read needs is readable: nothing of this client's is pending any more."""
        self._save({})

    def pack_of(self, chunk_id: bytes) -> str | None:
        """The data pack holding a chunk (None: not in the index, or a metadata chunk, never cold)."""
        loc = self.repo.index.get(chunk_id)
        return loc.pack if loc is not None and not loc.kind else None

    def _request(self, pack: str) -> str:
        return self.repo.restore_data_pack(pack, days=self.days, tier=self.tier)

    def _record(self) -> dict[str, dict]:
        raw = self.repo.cache.read(self.record)
        try:
            return json.loads(raw) if raw else {}
        except ValueError:  # a damaged record only loses what it said; S3 itself knows the restores
            return {}

    def _save(self, record: dict[str, dict]) -> None:
        if record or self.repo.cache.read(self.record) is not None:
            self.repo.cache.write(self.record, json.dumps(record, sort_keys=True).encode())

    def has_pending(self) -> bool:
        """True if an earlier run of this client requested restores it has not read yet."""
        return bool(self._record())
