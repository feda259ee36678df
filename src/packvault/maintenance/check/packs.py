"""Level 1 of ``check``, the packs: every pack read whole, once, each object's structure verified (and, with
the key, opened), and the index compared with what the packs really hold.

A mixin of ``Checker`` (``checker.py``): the state it reads and fills is the checker's.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import BrokenExecutor, Future

import msgpack

from ...processes import usable_processes
from ...repository.index import KIND_DATA, KIND_META, Location
from ...repository.packreading import PackReadingKit
from ...repository.sealing import SealingKit
from .report import FLAG_BAD, FLAG_SEEN, PackState, parse_group, parse_percent
from .verify import PackFindings, read_and_verify, verify_pack
from .workers import VerifyPool

META_CACHE_BYTES = 256 * 1024 * 1024  # metadata packs kept in memory for the archive walk
STATE_NAME = "check-state"  # rotation / resume state in the local cache


class PackLevel:

    def select_data_packs(self) -> tuple[list[str], bool]:
        """Data packs to read in this run, in order, and whether that is a rotation (state to save)."""
        names = sorted(p.name for p in self.packs.values() if p.kind == KIND_DATA)
        if self.opts.archives_only and not self.data_pass:
            return [], False
        if self.repo.cold_data_packs and not self.data_pass:
            # a GET of a cold pack is refused until a restore that costs retrieval money: the listing
            # (presence and size) is the repository level's check of them, --verify-data reads them
            return [], False
        subset = self.opts.subset
        if subset and "/" in subset:
            n, t = parse_group(subset)
            chosen = [name for name in names if int(name[:8], 16) * t >> 32 == n - 1]
            return chosen, False
        if not subset and self.deadline is None:
            return names, False
        cursor = self.load_state().get("cursor")
        start = bisect.bisect_right(names, cursor) if cursor else 0
        ordered = names[start:] + names[:start]
        if subset:
            count = min(len(names), math.ceil(parse_percent(subset) * len(names) / 100.0))
            ordered = ordered[:count]
        return ordered, True

    def load_state(self) -> dict:
        raw = self.repo.cache.read(STATE_NAME)
        if raw is None:
            return {}
        try:
            state = msgpack.unpackb(raw)
            return state if isinstance(state, dict) else {}
        except Exception:  # a damaged cache file only costs a restart of the rotation
            return {}

    def save_state(self, state: dict) -> None:
        self.repo.cache.write(STATE_NAME, msgpack.packb(state))

    @property
    def data_pass(self) -> bool:
        return self.opts.verify_data or bool(self.opts.subset)

    def scan_packs(self) -> None:
        work: list[tuple[int, str]] = []
        if not self.opts.archives_only:
            work += [(KIND_META, p.name) for p in sorted(self.packs.values(), key=lambda p: p.name) if p.kind]
        data, rotating = self.data_selection if self.data_selection is not None else self.select_data_packs()
        work += [(KIND_DATA, name) for name in data]
        total_data = sum(1 for p in self.packs.values() if p.kind == KIND_DATA)
        total_bytes = sum(self.packs[name].size for _, name in work)
        last_data: str | None = None
        stopped = False
        handout = _Handout(self.verify_pool if self.use_pool else None, self.repo.sealing_kit, data, self.packs)
        try:
            handout.top_up()  # the workers start on the data packs while this process reads the metadata packs
            for done, (kind, name) in enumerate(work, 1):
                # at least one data pack per run, so a tiny --max-duration still makes progress
                if kind == KIND_DATA and last_data is not None and self.deadline and time.monotonic() >= self.deadline:
                    stopped = True
                    break
                if kind == KIND_DATA and handout.active:
                    self.walk_archives_early()  # the metadata packs are all in: see ``checker.py``
                findings = handout.take(name) if kind == KIND_DATA else None
                if findings is None:
                    findings = self._verify_here(kind, name)
                self._apply(kind, name, findings)
                if kind == KIND_DATA:
                    last_data = name
                read = self.report.stats.get("bytes_read", 0)
                self.progress(f"check: pack {done}/{len(work)}", completed=read, total=total_bytes)
        finally:
            handout.close()
            if self.verify_pool is not None:
                self.verify_pool.close(wait=False)  # their work is done: they end while the archives are walked
        self.report.stats["verify_processes"] = handout.used
        scanned_data = sum(1 for p in self.packs.values() if p.kind == KIND_DATA and p.scanned)
        self.report.stats["packs_read"] = sum(1 for p in self.packs.values() if p.scanned)
        self.report.stats["data_packs_read"] = scanned_data
        if stopped or scanned_data < total_data:
            self.report.complete = False
            why = "--max-duration reached" if stopped else "subset"
            if not stopped and not self.data_pass and self.repo.cold_data_packs:
                why = "cold storage class; --verify-data restores and reads them"
            self.report.notes.append(
                f"data packs read this run: {scanned_data} of {total_data} ({why}); the others were checked "
                "for presence and size only"
            )
        if rotating:
            state = self.load_state()
            if not stopped and not self.opts.subset and scanned_data >= total_data:
                state.pop("cursor", None)  # a full circle: start from the beginning next time
            elif last_data is not None:
                state["cursor"] = last_data
            self.save_state(state)

    def start_workers(self) -> None:
        """Have worker processes verify the data packs of a data pass (``workers.py``), and start them as soon
        as the packs are listed: they start up while this process reads the index, the archive entries and
        the metadata packs.  A pool handed to ``check`` (the CLI starts one before the key is unlocked) is
        used as it is.  None is used on one CPU, without the key (the structure is checked at the speed of
        reading), or for a single pack."""
        self.data_selection = data, _ = self.select_data_packs()
        if not (self.has_key and self.data_pass) or len(data) < 2:
            return
        if self.verify_pool is None:
            processes = min(usable_processes(self.opts.processes), len(data))
            if processes < 1:
                return
            self.verify_pool = VerifyPool(PackReadingKit.of(self.repo), processes)
        self.verify_pool.start()
        self.use_pool = True

    def _verify_here(self, kind: int, name: str) -> PackFindings:
        """Read and verify one whole pack in this process (metadata packs, and data packs without workers)."""

        def scan(buf: bytes) -> PackFindings:
            findings = self.scan_pack(kind, name, buf)
            if kind == KIND_META:
                self._meta_cache_bytes -= len(self.meta_cache.pop(name, b""))  # read again: the later bytes
                if self._meta_cache_bytes + len(buf) <= META_CACHE_BYTES:
                    self.meta_cache[name] = buf
                    self._meta_cache_bytes += len(buf)
            return findings

        return read_and_verify(self.repo.load_pack_range, kind, name, self.packs[name].size, scan)

    def scan_pack(self, kind: int, name: str, buf: bytes) -> PackFindings:
        """Verify one whole pack in memory, as a worker would (``verify.verify_pack``)."""
        codec = self.repo.codec if self.has_key else None
        return verify_pack(
            name,
            buf,
            codec=codec,
            chunk_id=self.repo.chunk_id if codec is not None else None,
            decrypt=kind == KIND_META or self.data_pass,
            needs_key=lambda offset, size, object_id: not self._indexed_here(name, offset, size, object_id),
        )

    def _apply(self, kind: int, name: str, findings: PackFindings) -> None:
        """Record what verifying a pack found: intact objects against the index, damaged byte ranges."""
        for request, count in findings.requests.items():
            self.worker_requests[request] = self.worker_requests.get(request, 0) + count
        if findings.missing:
            del self.packs[name]
            return
        state = self.packs[name]
        state.scanned = True
        state.misnamed = findings.misnamed
        state.size = findings.size
        state.damaged.extend(findings.damaged)
        if findings.objects:
            self.report.count("objects", findings.objects)
        if findings.verified:
            self.report.count("objects_verified", findings.verified)
        if self.has_key:
            for offset, size, object_id, archive in findings.intact_objects():
                if kind == KIND_META and archive:
                    self.archive_objects[object_id] = Location(name, kind, offset, size)
                self._intact(kind, name, offset, size, object_id, state)
        self.report.count("bytes_read", findings.size)

    def _indexed_here(self, name: str, offset: int, size: int, object_id: bytes) -> bool:
        entry = self.index.table.get(object_id)
        return (
            entry is not None
            and (entry.offset, entry.size) == (offset, size)
            and self.index.packs.names[entry.pack] == name
        )

    def _intact(self, kind: int, name: str, offset: int, size: int, object_id: bytes, state: PackState) -> None:
        entry = self.index.table.get(object_id)
        if self._indexed_here(name, offset, size, object_id):
            self.index.table[object_id] = entry._replace(flags=entry.flags | FLAG_SEEN)
            state.indexed += 1
            return
        self.alt.add(object_id, name, kind, offset, size)
        if entry is None:
            state.unindexed += 1

    def compare_index(self) -> None:
        """Entries that do not point at an intact object become BAD; report them and unindexed objects."""
        table = self.index.table
        names = self.index.packs.names
        per_missing_pack: dict[str, int] = {}
        region_ids: dict[tuple[str, int], list[bytes]] = {}
        for chunk_id, entry in self.index.entries():
            if entry.flags & FLAG_SEEN:
                continue
            pack = names[entry.pack]
            state = self.packs.get(pack)
            if state is not None and not state.scanned:
                if entry.offset + entry.size <= state.size:
                    continue  # not read this run (subset): present and in bounds is all we can say
                problem = "index entry points beyond the end of its pack"
            elif state is None:
                per_missing_pack[pack] = per_missing_pack.get(pack, 0) + 1
                problem = "object is missing with its pack"
            else:
                problem = None
                for start, end, _ in state.damaged:
                    if start <= entry.offset < end:
                        region_ids.setdefault((pack, start), []).append(chunk_id)
                        break
                else:
                    problem = "index entry points at no intact object with this id"
            table[chunk_id] = entry._replace(flags=entry.flags | FLAG_BAD)
            elsewhere = self.alt.get(chunk_id)
            if elsewhere is not None:
                self.repoint_targets.add(elsewhere.pack)
            self.index_changed = True
            self.report.count("index_entries_bad")
            if problem:
                kind = "object-missing" if state is None else "index-dangling"
                self.report.add(
                    "repository",
                    kind,
                    problem + self._elsewhere(chunk_id),
                    pack=pack,
                    offset=entry.offset,
                    object=chunk_id.hex(),
                )
        for pack, count in sorted(per_missing_pack.items()):
            entries = f"{count} index entr{'y' if count == 1 else 'ies'}"
            self.report.add("repository", "pack-missing", f"pack is missing; {entries} point into it", pack=pack)
        for state in sorted(self.packs.values(), key=lambda p: p.name):
            self._report_misnamed(state)
            for start, end, why in state.damaged:
                ids = region_ids.get((state.name, start), [])
                if not ids:
                    self.report.add(
                        "repository",
                        "bytes-damaged",
                        f"bytes {start}..{end} damaged, not used by the index ({why})",
                        pack=state.name,
                        offset=start,
                    )
                for chunk_id in ids:
                    message = f"object damaged ({why})" + self._elsewhere(chunk_id)
                    self.report.add(
                        "repository", "object-damaged", message, pack=state.name, offset=start, object=chunk_id.hex()
                    )
            if state.unindexed and not state.indexed and not state.damaged:
                # A whole pack nothing points at is what an interrupted backup or compact leaves behind
                # (DESIGN principle 1): not damage.  If archives needed it, level 2 reports them.
                self.index_changed = True
                self.report.count("objects_unindexed", state.unindexed)
                self.report.notes.append(
                    f"pack {state.name}: {state.unindexed} object(s), none indexed (left by an interrupted backup "
                    "or compact; compact removes it once older than --min-age, repair indexes it)"
                )
            elif state.unindexed:
                self.index_changed = True
                self.report.count("objects_unindexed", state.unindexed)
                self.report.add(
                    "repository",
                    "objects-unindexed",
                    f"{state.unindexed} intact object(s) are not in the index (left by an interrupted or "
                    "running backup, or a lost index fragment; repair indexes them)",
                    pack=state.name,
                )

    def _report_misnamed(self, state: PackState) -> None:
        """A pack whose bytes do not match its name is a problem while anything may read it through that name
        (without the key, that cannot be ruled out).  Once repair has moved its intact objects to a correctly
        named copy and nothing in the index points into it, it is only garbage that compact removes."""
        if not state.misnamed:
            return
        unused = not (state.indexed or state.unindexed or state.damaged) and state.name not in self.repoint_targets
        if self.has_key and unused:
            self.report.notes.append(
                f"pack {state.name}: its bytes do not match its name, and the index no longer uses it (its "
                "objects have a correctly named copy); compact removes it once older than --min-age"
            )
            return
        self.report.add(
            "repository", "pack-name", "pack content does not match its name (its bytes changed)", pack=state.name
        )

    def report_damage_without_key(self) -> None:
        """Without the key nothing says which object a damaged range held, but every checksum mismatch is
        a problem: a pack's name proves its bytes only for packs named by content, not for those compact
        names by the ids they hold."""
        for state in sorted(self.packs.values(), key=lambda p: p.name):
            self._report_misnamed(state)
            for start, end, why in state.damaged:
                self.report.add(
                    "repository",
                    "bytes-damaged",
                    f"bytes {start}..{end} damaged ({why})",
                    pack=state.name,
                    offset=start,
                )

    def _elsewhere(self, chunk_id: bytes) -> str:
        loc = self.alt.get(chunk_id)
        return f"; an intact copy is in pack {loc.pack} @{loc.offset}" if loc else ""


class _Handout:
    """The data packs handed to worker processes, in the checker's order.

    At most ``VerifyPool.limit`` packs are out at once.  When no worker can be started, or the pool breaks
    (a worker died), the packs not verified by a worker are verified by the checker's own process
    (``take`` returns None for them): the same function, the same findings.
    """

    def __init__(
        self, pool: VerifyPool | None, sealing: Callable[[], SealingKit], names: list[str], packs: dict[str, PackState]
    ):
        self._pool = pool
        self._packs = packs  # as listed: each pack's size
        self._sealing = sealing() if pool is not None else None
        self._names = names
        self._next = 0
        self._out: deque[tuple[str, Future]] = deque()
        self.used = 0  # worker processes whose findings this run used

    @property
    def active(self) -> bool:
        """True while workers verify data packs (this process mostly waits for them)."""
        return self._pool is not None or bool(self._out)

    def top_up(self) -> None:
        while self._pool is not None and self._next < len(self._names) and len(self._out) < self._pool.limit:
            name = self._names[self._next]
            try:
                future = self._pool.submit(self._sealing, KIND_DATA, name, self._packs[name].size)
            except Exception:  # no processes here (no /dev/shm, a limit): verify in the checker's process
                self.close()
                return
            self._out.append((name, future))
            self._next += 1

    def take(self, name: str) -> PackFindings | None:
        """The findings of data pack ``name`` (the next one in order); None if no worker verified it."""
        if not self._out or self._out[0][0] != name:
            return None
        _, future = self._out.popleft()
        try:
            findings = future.result()
        except BrokenExecutor:  # a worker died (killed, out of memory): this and the rest are verified here
            self.close()
            return None
        assert self._pool is not None
        self.used = self._pool.processes
        self.top_up()
        return findings

    def close(self) -> None:
        """Stop handing out packs; packs out and not begun are cancelled (the running ones finish in the
        workers, and their findings are dropped)."""
        for _, future in self._out:
            future.cancel()
        self._out.clear()
        self._pool = None
