"""``check``: verify a repository from the bytes up, and (with ``repair.py``) put it back in order.

What is checked, in the order a damaged repository needs it (see docs/check.md for the user's view):

1. **Repository level.**  Every pack is read whole, once (one GET each on S3): each object's header
   checksum, each sealed part's xxh64, and the pack name against the blake3 of its bytes.  The sealed
   small objects in ``index/`` and ``archives/`` and the key blob get the same structural check.  None of
   this needs the key, so ``--repository-only`` runs without a passphrase.  With the key, the index is
   loaded fresh from its fragments (never from the local cache, which could hide damage in the store) and
   compared with what the packs really hold: an entry must point at an intact object with its id, and
   every intact object should be indexed.
2. **Archive level** (needs the key).  Every ``archives/`` entry is read from the store (not the local
   plaintext cache) and decrypted; its archive metadata must parse and be complete; its item stream is
   decoded and every chunk a file references must resolve to an intact object.
3. **Data level** (``--verify-data``, ``--read-data-subset``).  Every object of the data packs read is
   decrypted, authenticated and its id (a keyed MAC of the plaintext) recomputed.  This rides on the
   same single read of each pack as level 1: verifying data costs CPU, not a second download.  Metadata
   packs are always decrypted when the key is there (they are small, and their objects are what
   level 2 reads).

Memory stays bounded (DESIGN principle 5): the index lives in its ``borghash`` table, whose flag bits
record "seen intact" and "bad" per entry; intact objects the index does not point at (unindexed, or a
second copy of an indexed chunk) go into a second ``ChunkIndex``, which is small unless the index itself
is lost, when it *is* the rebuilt index.  Per-pack state is one small record per pack; per-problem state
is proportional to the damage.

``--max-duration`` bounds the data-pack pass (by far the largest); where it stopped is kept in the
local cache and the next run resumes there.  The index, metadata-pack and archive checks always run to
completion: they read metadata only.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import msgpack
from borgstore.backends.errors import ObjectNotFound

from ..archive import items as it
from ..archive.archive import DAMAGE_LOST_ITEM_CHUNKS, META_DAMAGE
from ..crypto.keys import key_blob_repository_id
from ..errors import EXIT_OK, EXIT_WARNING, IntegrityError, ObjectMissing, PackvaultError, UsageError
from ..repository.config import CONFIG_COPY_NAME, CONFIG_NAME, RepoConfig
from ..repository.index import KIND_DATA, KIND_META, ChunkIndex, Location
from ..repository.objects import TYPE_ARCHIVE, parse_header, resync, verify_parts
from ..repository.repository import ArchiveEntry, Repository, content_name, pack_name_matches
from ..storage import layout

FLAG_SEEN = 2  # the entry's location holds an intact object with its id
FLAG_BAD = 4  # the entry's location does not (missing pack, damaged or absent object)

META_CACHE_BYTES = 256 * 1024 * 1024  # metadata packs kept in memory for the archive walk
PREFETCH_PACKS = 2  # packs downloaded ahead of the one being verified
STATE_NAME = "check-state"  # rotation / resume state in the local cache
REQUIRED_META_KEYS = ("version", "name", "time", "end", "host", "user", "items", "nitems")

KIND_NAMES = {KIND_DATA: "data", KIND_META: "meta"}


# --- results -----------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """One thing wrong, with everything known about where it is."""

    level: str  # repository | archives | data
    kind: str  # short machine-readable code, e.g. "object-damaged"
    message: str
    pack: str | None = None
    offset: int | None = None
    object: str | None = None  # hex object / chunk id
    archive: str | None = None
    path: str | None = None

    def line(self) -> str:
        where = []
        if self.pack:
            where.append(f"pack {self.pack}" + (f" @{self.offset}" if self.offset is not None else ""))
        if self.object:
            where.append(f"object {self.object}")
        if self.archive:
            where.append(f"archive {self.archive!r}")
        if self.path:
            where.append(f"file {self.path!r}")
        prefix = f"[{self.level}] " + (", ".join(where) + ": " if where else "")
        return prefix + self.message

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    complete: bool = True  # False when --max-duration or a subset left data packs unread

    def add(self, level: str, kind: str, message: str, **where) -> Problem:
        problem = Problem(level, kind, message, **where)
        self.problems.append(problem)
        return problem

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n


@dataclass
class _PackState:
    kind: int
    name: str
    size: int
    scanned: bool = False
    damaged: list[tuple[int, int, str]] = field(default_factory=list)  # [start, end) and why
    unindexed: int = 0
    indexed: int = 0
    misnamed: bool = False  # its bytes match neither its content name nor its copy-forward name


@dataclass
class Options:
    repository_only: bool = False
    archives_only: bool = False
    verify_data: bool = False
    subset: str | None = None
    max_duration: float | None = None
    repair: bool = False
    dry_run: bool = False


# --- the checker -----------------------------------------------------------------------------------------------


class Checker:
    def __init__(self, repo: Repository, options: Options, report: CheckReport, progress: Callable[..., None]):
        self.repo = repo
        self.opts = options
        self.report = report
        self.progress = progress
        self.has_key = repo.codec is not None
        self.index = ChunkIndex()  # from the fragments
        self.alt = ChunkIndex()  # intact objects the index does not point at
        self.packs: dict[str, _PackState] = {}
        self.fragments: list[str] = []
        self.fragments_damaged = 0
        self.archive_objects: dict[bytes, Location] = {}  # TYPE_ARCHIVE objects found in metadata packs
        self.meta_cache: dict[str, bytes] = {}
        self._meta_cache_bytes = 0
        self.deadline = time.monotonic() + options.max_duration if options.max_duration else None
        self.entries: list[tuple[str, ArchiveEntry]] = []  # live, decryptable: (store key, entry)
        self.damaged_entries: list[str] = []  # store keys of entries that do not open
        self.deleted_ids: set[bytes] = set()  # archive ids of soft-deleted entries (never resurrected)
        self.index_changed = False  # the index disagrees with the packs: repair rebuilds it
        self.lost_ids: set[bytes] = set()  # referenced chunks with no intact copy (proportional to damage)
        self.findings: dict[str, ArchiveFindings] = {}  # per entry store key
        self.metas: dict[str, dict] = {}  # archive metadata per entry store key
        self.orphans: list[bytes] = []  # archive metadata objects without an entry
        self.config_rewrite = False  # the config, its copy or its MAC needs to be (re)written
        self.repoint_targets: set[str] = set()  # packs holding the intact copy of a bad index entry

    # --- level 1 -----------------------------------------------------------------------------------------------

    def run_repository_level(self) -> None:
        self.check_config()
        self.check_key()
        for kind in (KIND_DATA, KIND_META):
            for info in self.repo.list_packs(kind):
                self.packs[info.name] = _PackState(kind, info.name, info.size)
        self.report.stats["packs_data"] = sum(1 for p in self.packs.values() if p.kind == KIND_DATA)
        self.report.stats["packs_meta"] = sum(1 for p in self.packs.values() if p.kind == KIND_META)
        self.load_index()
        if self.opts.repository_only:
            self.check_small_objects(layout.ARCHIVES)
        else:
            self.read_archive_entries()
        self.scan_packs()
        if self.has_key:
            self.compare_index()
        else:
            self.report_damage_without_key()

    def check_config(self) -> None:
        """The config and its copy by their checksums (no key needed); with the key, its MAC."""
        objects = self.repo.config_objects()
        for name in (CONFIG_NAME, CONFIG_COPY_NAME):
            raw = objects[name]
            if raw is None:
                if name == CONFIG_COPY_NAME:
                    self.config_rewrite = True
                    self.report.notes.append("the repository config has no copy yet (older repository); repair adds it")
                continue
            try:
                RepoConfig.decode(raw)
            except IntegrityError as exc:
                self.config_rewrite = True
                self.report.add("repository", "config-damaged", f"{exc}", object=name)
                continue
            if not RepoConfig.has_checksum(raw):
                self.config_rewrite = True
                self.report.notes.append(f"{name} has no checksum yet (older repository); repair adds it")
        if objects[CONFIG_NAME] and objects[CONFIG_COPY_NAME] and objects[CONFIG_NAME] != objects[CONFIG_COPY_NAME]:
            self.config_rewrite = True
            if not self.report.problems or self.report.problems[-1].kind != "config-damaged":
                self.report.add("repository", "config-damaged", "the config and its copy differ", object=CONFIG_NAME)
        if not self.has_key:
            return
        authentic = self.repo.config_authentic()
        if authentic is False:
            self.config_rewrite = True
            self.report.add(
                "repository",
                "config-unauthenticated",
                "the repository config does not authenticate under the key (changed without the key)",
                object=CONFIG_NAME,
            )
        elif authentic is None:
            self.config_rewrite = True
            self.report.notes.append("the repository config has no MAC yet (older repository); repair adds it")

    def check_key(self) -> None:
        """Structure of the key blob(s); with the key opened this already passed."""
        if self.has_key or self.repo.config.encryption != "repokey":
            return
        for info in self.repo.list_namespace(layout.KEYS):
            blob = self.repo.store.load(f"{layout.KEYS}/{info.name}")
            try:
                key_blob_repository_id(blob)
            except IntegrityError as exc:
                self.report.add("repository", "key-damaged", str(exc), object=info.name)
                continue
            if content_name(blob) != info.name:
                self.report.add("repository", "key-damaged", "key blob does not match its name", object=info.name)

    def _load_small(self, namespace: str, name: str, *, deleted: bool = False) -> bytes | None:
        """A sealed small object, structurally verified; None (and a problem) if damaged."""
        raw = self.repo.store.load(f"{namespace}/{name}", deleted=deleted)
        try:
            header = parse_header(raw)
            verify_parts(header, raw)
            if header.total_size != len(raw):
                raise IntegrityError(f"object has {len(raw)} bytes, header says {header.total_size}")
            if content_name(raw) != name:
                raise IntegrityError("content does not match its name")
        except IntegrityError as exc:
            kind = "fragment-damaged" if namespace == layout.INDEX else "entry-damaged"
            self.report.add("repository", kind, f"{namespace}/ object is damaged: {exc}", object=name)
            return None
        return raw

    def check_small_objects(self, namespace: str) -> None:
        for info in self.repo.list_namespace(namespace):
            self._load_small(namespace, info.name)

    def load_index(self) -> None:
        self.fragments = [info.name for info in self.repo.list_namespace(layout.INDEX)]
        self.report.stats["index_fragments"] = len(self.fragments)
        for name in self.fragments:
            raw = self._load_small(layout.INDEX, name)
            if raw is None:
                self.fragments_damaged += 1
                continue
            if not self.has_key:
                continue
            try:
                self.index.apply_fragment(self.repo.codec.open(raw)[2])
            except IntegrityError as exc:
                self.fragments_damaged += 1
                self.report.add("repository", "fragment-damaged", f"index fragment does not open: {exc}", object=name)
        if self.has_key and not self.fragments and self.packs:
            if any(True for _ in self.repo.list_namespace(layout.ARCHIVES)):
                self.report.add("repository", "index-missing", "the repository has packs but no index fragments")
            else:  # what the first backup leaves when it is interrupted before its first checkpoint
                self.report.notes.append(
                    "the repository has packs but no index fragments and no archives: left by an interrupted first "
                    "backup; the next backup reuses nothing of it, 'packvault compact' removes it"
                )
        if self.fragments_damaged:
            self.index_changed = True
        self.report.stats["index_entries"] = len(self.index)

    def read_archive_entries(self) -> None:
        for info in self.repo.list_namespace(layout.ARCHIVES):
            raw = self._load_small(layout.ARCHIVES, info.name)
            try:
                if raw is None:
                    raise IntegrityError("structurally damaged")
                entry = ArchiveEntry.decode(self.repo.codec.open(raw)[2])
            except (IntegrityError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
                self.damaged_entries.append(info.name)
                if raw is not None:
                    message = f"archive entry does not open: {exc}"
                    self.report.add("archives", "entry-damaged", message, object=info.name)
                continue
            self.entries.append((info.name, entry))
        for info in self.repo.list_namespace(layout.ARCHIVES, deleted=True):
            try:
                raw = self.repo.store.load(f"{layout.ARCHIVES}/{info.name}", deleted=True)
                self.deleted_ids.add(ArchiveEntry.decode(self.repo.codec.open(raw)[2]).id)
            except Exception as exc:  # a damaged soft-deleted entry only matters for undelete
                self.report.notes.append(f"soft-deleted archive entry {info.name} does not open: {exc}")
        self.deleted_ids |= self.repo.tombstones()  # purged by compact: deleted on purpose
        self.entries.sort(key=lambda pair: (pair[1].time, pair[1].name))
        self.report.stats["archives"] = len(self.entries)

    # pack scanning

    def select_data_packs(self) -> tuple[list[str], bool]:
        """Data packs to read in this run, in order, and whether that is a rotation (state to save)."""
        names = sorted(p.name for p in self.packs.values() if p.kind == KIND_DATA)
        if self.opts.archives_only and not self.data_pass:
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
        data, rotating = self.select_data_packs()
        work += [(KIND_DATA, name) for name in data]
        total_data = sum(1 for p in self.packs.values() if p.kind == KIND_DATA)
        total_bytes = sum(self.packs[name].size for _, name in work)
        last_data: str | None = None
        stopped = False
        with ThreadPoolExecutor(PREFETCH_PACKS, thread_name_prefix="pv-check") as pool:
            pending: list[tuple[int, str, Future]] = []
            pos = 0
            done = 0
            while pos < len(work) or pending:
                while pos < len(work) and len(pending) < PREFETCH_PACKS:
                    kind, name = work[pos]
                    pending.append((kind, name, pool.submit(self._load_pack, kind, name)))
                    pos += 1
                kind, name, future = pending.pop(0)
                # at least one data pack per run, so a tiny --max-duration still makes progress
                if kind == KIND_DATA and last_data is not None and self.deadline and time.monotonic() >= self.deadline:
                    stopped = True
                    for _, _, other in pending:
                        other.cancel()
                    break
                buf = future.result()
                if buf is None:
                    del self.packs[name]
                else:
                    self.scan_pack(kind, name, buf)
                    if kind == KIND_META and self._meta_cache_bytes + len(buf) <= META_CACHE_BYTES:
                        self.meta_cache[name] = buf
                        self._meta_cache_bytes += len(buf)
                    self.report.count("bytes_read", len(buf))
                del buf
                done += 1
                if kind == KIND_DATA:
                    last_data = name
                read = self.report.stats.get("bytes_read", 0)
                self.progress(f"check: pack {done}/{len(work)}", completed=read, total=total_bytes)
        scanned_data = sum(1 for p in self.packs.values() if p.kind == KIND_DATA and p.scanned)
        self.report.stats["packs_read"] = sum(1 for p in self.packs.values() if p.scanned)
        self.report.stats["data_packs_read"] = scanned_data
        if stopped or scanned_data < total_data:
            self.report.complete = False
            why = "--max-duration reached" if stopped else "subset"
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

    def _load_pack(self, kind: int, name: str) -> bytes | None:
        try:
            return self.repo.load_pack_range(kind, name)
        except (ObjectNotFound, ObjectMissing):
            return None  # listed a moment ago, gone now: reported as a missing pack

    def scan_pack(self, kind: int, name: str, buf: bytes) -> None:
        """Verify one whole pack in memory; record intact objects and damaged byte ranges."""
        state = self.packs[name]
        state.scanned = True
        state.misnamed = not pack_name_matches(name, buf)
        if len(buf) != state.size:
            state.size = len(buf)
        decrypt = self.has_key and (kind == KIND_META or self.data_pass)
        codec = self.repo.codec
        offset = 0
        end_of_pack = len(buf)
        while offset < end_of_pack:
            try:
                header = parse_header(buf, offset)
            except IntegrityError as exc:
                nxt = resync(buf, offset)
                state.damaged.append((offset, nxt, str(exc)))
                offset = nxt
                continue
            end = offset + header.total_size
            if end > end_of_pack:
                why = f"truncated object (pack ends {end - end_of_pack} bytes early)"
                state.damaged.append((offset, end_of_pack, why))
                break
            try:
                verify_parts(header, buf, offset)
            except IntegrityError as exc:
                state.damaged.append((offset, end, str(exc)))
                offset = end
                continue
            self.report.count("objects")
            if decrypt:
                try:
                    _, meta, data = codec.open(buf, offset, expected_id=header.object_id)
                    if self.repo.chunk_id(data) != header.object_id:
                        raise IntegrityError("plaintext does not match its id (MAC)")
                except IntegrityError as exc:
                    state.damaged.append((offset, end, f"does not authenticate: {exc}"))
                    offset = end
                    continue
                self.report.count("objects_verified")
                if kind == KIND_META and meta.type == TYPE_ARCHIVE:
                    self.archive_objects[header.object_id] = Location(name, kind, offset, header.total_size)
            if self.has_key:
                if not decrypt and not self._indexed_here(name, offset, header.total_size, header.object_id):
                    # an object the index does not vouch for may be indexed by repair: it must be ours first
                    # (an intact object of another repository's key passes every key-less check)
                    try:
                        codec.open(buf, offset, expected_id=header.object_id)
                    except IntegrityError as exc:
                        state.damaged.append((offset, end, f"does not authenticate under this key: {exc}"))
                        offset = end
                        continue
                self._intact(kind, name, offset, header.total_size, header.object_id, state)
            offset = end

    def _indexed_here(self, name: str, offset: int, size: int, object_id: bytes) -> bool:
        entry = self.index.table.get(object_id)
        return (
            entry is not None
            and (entry.offset, entry.size) == (offset, size)
            and self.index.packs.names[entry.pack] == name
        )

    def _intact(self, kind: int, name: str, offset: int, size: int, object_id: bytes, state: _PackState) -> None:
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

    def _report_misnamed(self, state: _PackState) -> None:
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

    # --- lookups used by level 2 and repair -----------------------------------------------------------------

    def locate(self, chunk_id: bytes) -> tuple[Location | None, str]:
        """Where an intact copy of ``chunk_id`` is: (location, "ok" | "unindexed" | "repointed" | "lost")."""
        entry = self.index.table.get(chunk_id)
        if entry is not None and not entry.flags & FLAG_BAD:
            names, kinds = self.index.packs.names, self.index.packs.kinds
            return Location(names[entry.pack], kinds[entry.pack], entry.offset, entry.size), "ok"
        loc = self.alt.get(chunk_id)
        if loc is not None:
            return loc, ("repointed" if entry is not None else "unindexed")
        return None, "lost"

    def read_object(self, chunk_id: bytes, loc: Location) -> bytes:
        """Plaintext of an object, authenticated and id-checked (from the metadata cache when possible)."""
        cached = self.meta_cache.get(loc.pack)
        if cached is not None:
            buf, offset = cached, loc.offset
        else:
            buf, offset = self.repo.load_pack_range(loc.kind, loc.pack, loc.offset, loc.size), 0
        data = self.repo.codec.open(buf, offset, expected_id=chunk_id)[2]
        if self.repo.chunk_id(data) != chunk_id:
            raise IntegrityError("plaintext does not match its id (MAC)")
        return data

    # --- level 2 -------------------------------------------------------------------------------------------------

    def load_archive_meta(self, archive_id: bytes, label: str) -> dict | None:
        loc, status = self.locate(archive_id)
        if loc is None:
            self.report.add(
                "archives",
                "archive-meta-lost",
                "archive metadata object is missing or damaged",
                archive=label,
                object=archive_id.hex(),
            )
            return None
        try:
            meta = msgpack.unpackb(self.read_object(archive_id, loc))
        except (IntegrityError, ValueError, TypeError, msgpack.UnpackException) as exc:
            self.report.add(
                "archives",
                "archive-meta-lost",
                f"archive metadata does not open: {exc}",
                archive=label,
                object=archive_id.hex(),
                pack=loc.pack,
                offset=loc.offset,
            )
            return None
        missing = [k for k in REQUIRED_META_KEYS if not isinstance(meta, dict) or k not in meta]
        if missing:
            self.report.add(
                "archives",
                "archive-meta-incomplete",
                f"archive metadata lacks {', '.join(missing)}",
                archive=label,
                object=archive_id.hex(),
            )
            return None
        if status != "ok":
            self.report.count("chunks_unindexed_referenced")
        return meta

    def walk_archive(self, label: str, meta: dict) -> ArchiveFindings:
        """Decode an archive's item stream and resolve every chunk; problems are reported as found."""
        findings = ArchiveFindings()
        report = self.report

        def chunks() -> Iterator[bytes | None]:
            for item_id in meta["items"]:
                loc, status = self.locate(item_id)
                data = None
                if loc is not None:
                    try:
                        data = self.read_object(item_id, loc)
                    except PackvaultError as exc:
                        report.add(
                            "archives",
                            "items-lost",
                            f"item metadata chunk unreadable: {exc}",
                            archive=label,
                            object=item_id.hex(),
                            pack=loc.pack,
                            offset=loc.offset,
                        )
                else:
                    report.add(
                        "archives",
                        "items-lost",
                        "item metadata chunk is lost: the items in it are gone",
                        archive=label,
                        object=item_id.hex(),
                    )
                if data is None:
                    findings.lost_item_chunks += 1
                    findings.lost_item_ids.append(item_id)
                elif status != "ok":
                    findings.unindexed += 1
                yield data

        for item in iter_items_robust(chunks()):
            findings.items += 1
            unsafe = it.unsafe_item_reason(item)
            if unsafe is not None:
                report.add(
                    "archives",
                    "item-unsafe",
                    f"item would leave the restore target ({unsafe}); extract skips it",
                    archive=label,
                    path=it.path_str(item) if isinstance(item.get("p"), bytes) else repr(item.get("p")),
                )
            if item.get("t") != it.FILE:
                continue
            findings.files += 1
            path = it.path_str(item)
            chunk_list = item.get("c") or []
            lost = 0
            for chunk_id, _size in chunk_list:
                _, status = self.locate(chunk_id)
                if status == "lost":
                    lost += 1
                    self.lost_ids.add(chunk_id)
                elif status != "ok":
                    findings.unindexed += 1
            report.count("chunks_referenced", len(chunk_list))
            if lost:
                findings.damaged_files += 1
                report.add(
                    "archives",
                    "file-damaged",
                    f"{lost} of {len(chunk_list)} chunk(s) missing or damaged",
                    archive=label,
                    path=path,
                )
            elif sum(size for _, size in chunk_list) != item.get("s", 0):
                report.add(
                    "archives", "file-size", "chunk sizes do not add up to the file size", archive=label, path=path
                )
            healthy = item.get("ch")
            if healthy is not None:
                if all(self.locate(cid)[1] != "lost" for cid, _ in healthy):
                    findings.healable += 1
                    findings.healable_paths.add(item["p"])
                    report.notes.append(
                        f"archive {label!r}: file {path!r} was repaired with zeros; its original "
                        "chunks are back, repair restores it"
                    )
                else:
                    findings.known_damaged += 1
            if "e" in item:
                # a repaired file is still damaged: it restores with zeros, so it stays a problem until healed
                report.add("archives", "file-repaired", str(item["e"]), archive=label, path=path)
        if findings.lost_item_chunks == 0 and findings.items != meta.get("nitems", findings.items):
            report.add(
                "archives",
                "archive-meta-incomplete",
                f"metadata says {meta.get('nitems')} items, the item stream has {findings.items}",
                archive=label,
            )
        if findings.unindexed:
            report.add(
                "archives",
                "chunks-unindexed",
                f"{findings.unindexed} referenced chunk(s) are intact but not where the index points "
                "(repair re-indexes them)",
                archive=label,
            )
        lost_before = (meta.get(META_DAMAGE) or {}).get(DAMAGE_LOST_ITEM_CHUNKS) or []
        if lost_before:
            report.add(
                "archives",
                "archive-damaged",
                f"an earlier repair could not read {len(lost_before)} part(s) of the file list: the files listed "
                "there are missing from this archive, and compact keeps all data until the archive is deleted",
                archive=label,
            )
        report.count("files", findings.files)
        return findings

    def run_archive_level(self) -> None:
        referenced = {entry.id for _, entry in self.entries}
        for key, entry in self.entries:
            self.progress(f"check: archive {entry.name}")
            meta = self.load_archive_meta(entry.id, entry.name)
            if meta is None:
                continue
            self.metas[key] = meta
            self.findings[key] = self.walk_archive(entry.name, meta)
        names = {entry.name for _, entry in self.entries}
        for archive_id in sorted(self.archive_objects):
            if archive_id in referenced or archive_id in self.deleted_ids:
                continue
            name = "?"
            try:
                loc, _ = self.locate(archive_id)
                name = msgpack.unpackb(self.read_object(archive_id, loc)).get("name", "?")
            except Exception:  # reported later by repair when it tries to use it
                pass
            if name in names:
                # the interrupted first attempt of an archive whose rerun committed: garbage, not a lost archive
                self.report.notes.append(
                    f"archive metadata {archive_id.hex()[:16]} of {name!r} has no entry: an interrupted attempt of "
                    "an archive that exists; 'packvault compact' removes it"
                )
                continue
            self.orphans.append(archive_id)
            if self.damaged_entries:  # most likely the archive of a damaged entry: a problem, repair brings it back
                self.report.add(
                    "archives",
                    "entry-missing",
                    "archive metadata has no archives/ entry (its entry is damaged or lost); repair re-creates it",
                    archive=name,
                    object=archive_id.hex(),
                )
            else:  # what a create interrupted between its metadata and its entry leaves behind
                self.report.notes.append(
                    f"archive metadata {archive_id.hex()[:16]} of {name!r} has no archives/ entry: left by an "
                    "interrupted backup (or its entry was deleted); 'packvault check --repair' makes it an archive "
                    "again, 'packvault compact' removes it"
                )


@dataclass
class ArchiveFindings:
    items: int = 0
    files: int = 0
    damaged_files: int = 0
    lost_item_chunks: int = 0
    lost_item_ids: list[bytes] = field(default_factory=list)
    unindexed: int = 0
    healable: int = 0
    known_damaged: int = 0
    healable_paths: set[bytes] = field(default_factory=set)

    @property
    def needs_rewrite(self) -> bool:
        return bool(self.damaged_files or self.lost_item_chunks or self.healable)


# --- item stream decoding that survives lost chunks -------------------------------------------------------------


def _is_item(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("p"), bytes) and isinstance(obj.get("t"), str)


def iter_items_robust(chunks) -> Iterator[dict]:
    """Items from an item stream whose chunks may be missing (``None``).

    The stream is msgpack concatenated and cut at content-defined points, so after a lost chunk the next
    chunk starts in the middle of some item.  Decoding resumes at the first offset from which a whole
    item (a map with a bytes path and a type) decodes: the items wholly inside the lost chunk, and the
    two cut by its edges, are lost; every other item survives.
    """
    unpacker = _new_unpacker()
    pending: bytearray | None = None  # bytes after a gap, until a plausible item start is found
    for data in chunks:
        if data is None:
            unpacker = _new_unpacker()
            pending = bytearray()
            continue
        if pending is None:
            unpacker.feed(data)
            try:
                for obj in unpacker:
                    if _is_item(obj):
                        yield obj
            except (ValueError, msgpack.UnpackException):
                unpacker = _new_unpacker()
                pending = bytearray()
            continue
        pending += data
        start = _find_item_start(pending, final=False)
        if start is None:
            continue
        unpacker.feed(bytes(pending[start:]))
        pending = None
        try:
            for obj in unpacker:
                if _is_item(obj):
                    yield obj
        except (ValueError, msgpack.UnpackException):
            unpacker = _new_unpacker()
            pending = bytearray()
    if pending:
        start = _find_item_start(pending, final=True)
        if start is not None:
            unpacker = _new_unpacker()
            unpacker.feed(bytes(pending[start:]))
            try:
                for obj in unpacker:
                    if _is_item(obj):
                        yield obj
            except (ValueError, msgpack.UnpackException):
                return


def _new_unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 * 1024 * 1024)


def _find_item_start(buf: bytearray, *, final: bool) -> int | None:
    """Offset of the first plausible item in ``buf``; None to wait for more bytes (or, if final, none)."""
    for pos, byte in enumerate(buf):
        if not (0x80 <= byte <= 0x8F or byte == 0xDE):
            continue
        probe = _new_unpacker()
        probe.feed(bytes(buf[pos:]))
        try:
            obj = probe.unpack()
        except msgpack.OutOfData:
            if final:
                continue
            return None  # maybe an item that continues in the next chunk: decide when it is there
        except Exception:  # msgpack raises several types on garbage
            continue
        if _is_item(obj):
            return pos
    return None


# --- options ---------------------------------------------------------------------------------------------------


def parse_percent(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"invalid --read-data-subset {text!r}", hint="use N% or n/t") from None
    if not 0 < value <= 100:
        raise UsageError(f"--read-data-subset {text!r} must be between 0% and 100%")
    return value


def parse_group(text: str) -> tuple[int, int]:
    try:
        n, t = (int(part) for part in text.split("/", 1))
    except ValueError:
        raise UsageError(f"invalid --read-data-subset {text!r}", hint="use N% or n/t") from None
    if not 1 <= n <= t:
        raise UsageError(f"--read-data-subset {text!r}: need 1 <= n <= t")
    return n, t


def options_from_args(args) -> Options:
    opts = Options(
        repository_only=bool(getattr(args, "repository_only", False)),
        archives_only=bool(getattr(args, "archives_only", False)),
        verify_data=bool(getattr(args, "verify_data", False)),
        subset=getattr(args, "read_data_subset", None),
        max_duration=getattr(args, "max_duration", None),
        repair=bool(getattr(args, "repair", False)),
        dry_run=bool(getattr(args, "dry_run", False)),
    )
    if opts.repository_only and opts.archives_only:
        raise UsageError("--repository-only and --archives-only exclude each other")
    if opts.subset:
        if "/" in opts.subset:
            parse_group(opts.subset)
        else:
            parse_percent(opts.subset)
    if opts.repository_only and (opts.verify_data or opts.subset):
        raise UsageError("--verify-data needs the key; it cannot run with --repository-only")
    if opts.repair and opts.repository_only:
        raise UsageError("--repair needs the key; it cannot run with --repository-only")
    if opts.repair and (opts.subset or opts.max_duration):
        raise UsageError("--repair needs a full check", hint="drop --read-data-subset / --max-duration")
    if opts.dry_run and not opts.repair:
        raise UsageError("--dry-run only applies to --repair")
    if opts.max_duration is not None and opts.max_duration <= 0:
        raise UsageError("--max-duration must be positive")
    return opts


# --- the command ---------------------------------------------------------------------------------------------------


def check(repo: Repository, opts: Options, progress: Callable[..., None] = lambda text, **counts: None) -> CheckReport:
    """Run the check (and repair) on an opened repository; returns the report."""
    started = time.monotonic()
    report = CheckReport()
    checker = Checker(repo, opts, report, progress)
    before = repo.request_stats()
    checker.run_repository_level()
    if checker.has_key and not opts.repository_only:
        checker.run_archive_level()
    if opts.repair:
        from .repair import repair

        repair(checker, dry_run=opts.dry_run)
    after = repo.request_stats()
    report.stats["requests"] = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    report.stats["duration"] = round(time.monotonic() - started, 3)
    return report


def run_check_command(args, location: str, s3_options: dict[str, str]) -> int:
    from ..cli.commands import passphrase_provider
    from ..cli.output import Progress, fmt_duration, print_json

    opts = options_from_args(args)
    repo = Repository(location, s3_options=s3_options)
    bar = Progress(bool(getattr(args, "progress", False)))
    try:
        repo.open(None, lock=None)
        repo.tolerate_config_damage = True  # check reports it (and repair restores it) instead of refusing
        if not opts.repository_only:
            repo.unlock(passphrase_provider()())
            repo.acquire_lock(exclusive=opts.repair, wait=getattr(args, "lock_wait", None))
        try:
            report = check(repo, opts, bar.update)
        finally:
            bar.finish()
    finally:
        repo.close()
    if getattr(args, "json", False):
        print_json(
            {
                "ok": not report.problems,
                "complete": report.complete,
                "problems": [p.as_dict() for p in report.problems],
                "repairs": report.repairs,
                "notes": report.notes,
                "stats": report.stats,
                "requests": report.stats.get("requests", {}),
            }
        )
    else:
        for problem in report.problems:
            print(problem.line())
        for note in report.notes:
            print(f"note: {note}")
        verb = "would" if opts.dry_run else "did"
        for action in report.repairs:
            print(f"repair ({verb}): {action}")
        s = report.stats
        print(
            f"Checked {s.get('packs_read', 0)} of {s.get('packs_data', 0) + s.get('packs_meta', 0)} packs "
            f"({s.get('objects', 0)} objects, {s.get('objects_verified', 0)} decrypted), "
            f"{s.get('index_fragments', 0)} index fragments, {s.get('archives', 0)} archives, "
            f"{s.get('files', 0)} files in {fmt_duration(s.get('duration', 0.0))}"
        )
        if report.problems:
            repairs = f"; {len(report.repairs)} repair action(s)" if opts.repair else ""
            print(f"{len(report.problems)} problem(s) found{repairs}")
        else:
            print("No problems found")
    return EXIT_WARNING if report.problems else EXIT_OK
