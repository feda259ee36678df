"""Repository locks: small sealed objects in ``locks/``, refreshed while held, broken when stale.

An object store offers no atomic "create if no other lock exists", so the protocol works with what every
store has -- create an object, list a namespace, delete an object -- and resolves races by listing again
after writing (see docs/locks.md for the full protocol and its race analysis).  In short:

- A lock object is a sealed msgpack record (host id, pid, process start, thread, exclusive flag, write
  time, acquisition start, session).  Its key is the hex SHA-256 of the sealed bytes, so it is never
  overwritten.  A refresh writes a new object and then deletes the one before the previous one: some
  object of the holder exists at every instant, and a listing that reads names first and details later
  (the file backend stats each name it read) cannot miss the holder unless it takes a whole refresh
  interval.
- Two locks *conflict* when at least one of them is exclusive.  A candidate that has written its lock and
  then lists no live conflicting lock holds the lock.  Among conflicting candidates, the one with the
  smallest ``(since, session)`` keeps its lock object and waits; the others delete theirs and back off.
- A lock is *stale* when its holder is a dead process on this host, or when it is older than
  ``stale_seconds`` both by its writer's clock and by the store's clock, so one badly set clock cannot make
  a live lock look stale.  Stale locks found on the way are removed with a warning.
- The holder refreshes its lock in a background thread.  When its lock vanished (someone broke it), or a
  refresh could not be completed before the lock might have looked stale to others, the lock is *lost*:
  ``check()`` raises ``LockLost`` and ``on_lost`` is called, so the operation stops instead of continuing
  unprotected.

``LockManager`` is one unit on purpose: acquiring, judging other holders, refreshing and losing the lock
share one record, one set of clocks and one lock-ordering rule, and the race analysis in docs/locks.md is
read against it as a whole.  What stands apart is in ``lock_records.py`` (the record, the entries read
back, the verdict) and ``lock_holders.py`` (host identity, local process liveness).
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import secrets
import threading
import time
from collections.abc import Callable
from types import TracebackType

import msgpack
from borgstore.backends.errors import ObjectNotFound

from ..errors import LockError, LockLost, LockTimeout
from ..storage.layout import LOCKS, name
from ..storage.store import Store, discard, exists_beside, store_beside
from .lock_holders import default_host_id, pid_alive, process_start
from .lock_records import RECORD_VERSION, Entry, LockInfo, Verdict, Written, boottime, decode_record, format_time

__all__ = [
    "DEFAULT_LOCK_WAIT",
    "DEFAULT_STALE_SECONDS",
    "LockInfo",
    "LockManager",
    "default_host_id",
    "pid_alive",
    "process_start",
]

logger = logging.getLogger(__name__)

DEFAULT_STALE_SECONDS = 15 * 60.0
"""A lock not refreshed for this long (by both clocks) may be removed by anyone."""

DEFAULT_REFRESH_DIVISOR = 6
"""Default refresh interval = stale time / this: a holder gets several chances before its lock expires."""

DEFAULT_LOCK_WAIT = 60.0
"""How long ``acquire`` waits for conflicting holders before raising ``LockTimeout``."""

STORE_MTIME_SLACK = 1.0
"""Seconds added in the holder's favour to every age measured by the store clock: S3 ``LastModified`` is
truncated to whole seconds, so an object can look up to this much older than it is."""

BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0


# --- the manager -----------------------------------------------------------------------------------------


class LockManager:
    """Takes, keeps and gives back one lock (shared or exclusive) on a repository.

    ``store`` must be open; it is shared with the background refresher (borgstore serializes calls).
    ``seal``/``unseal`` are the repository key's authenticated encryption; ``unseal`` raises on tampered
    input.  ``on_lost`` is called from the refresher thread when the lock is lost, so it should only signal
    (set a flag, interrupt the main thread), not clean up.
    """

    def __init__(
        self,
        store: Store,
        *,
        seal: Callable[[bytes], bytes],
        unseal: Callable[[bytes], bytes],
        stale_seconds: float = DEFAULT_STALE_SECONDS,
        refresh_seconds: float | None = None,
        host_id: str | None = None,
        on_lost: Callable[[], None] | None = None,
        exclusive: bool = False,
        lock_wait: float = DEFAULT_LOCK_WAIT,
    ):
        if stale_seconds <= 0:
            raise ValueError("stale_seconds must be positive")
        if refresh_seconds is None:
            refresh_seconds = stale_seconds / DEFAULT_REFRESH_DIVISOR
        if not 0 < refresh_seconds <= stale_seconds / 2:
            raise ValueError("refresh_seconds must be positive and at most half of stale_seconds")
        self.store = store
        self.stale_seconds = float(stale_seconds)
        self.refresh_seconds = float(refresh_seconds)
        self.host_id = host_id or default_host_id()
        self.exclusive = exclusive  # used by the context manager protocol
        self.lock_wait = lock_wait
        self._seal = seal
        self._unseal = unseal
        self._on_lost = on_lost
        self._random = random.SystemRandom()
        self._pid = os.getpid()
        self._pstart = process_start(self._pid)
        # content-named objects never change, so a decoded record can be reused for as long as it is listed.
        self._decoded: dict[str, dict | None] = {}
        self._decoded_lock = threading.Lock()  # the refresher writes while the owner may be listing
        self._store_offset: float | None = None  # store clock - local wall clock, measured at our last write
        # state of the held lock, guarded by _mutex against the refresher
        self._mutex = threading.RLock()
        self._record: dict | None = None
        self._current: Written | None = None
        self._previous: Written | None = None  # kept until the next refresh, see the module docstring
        self._lost_reason: str | None = None
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- public API ------------------------------------------------------------------------------------

    @property
    def session(self) -> str | None:
        """The session id of the lock held (it stays the same across refreshes), None when none is held."""
        with self._mutex:
            return None if self._record is None else str(self._record["session"])

    @property
    def held(self) -> bool:
        return self._current is not None and self._lost_reason is None

    def acquire(self, *, exclusive: bool, wait: float = DEFAULT_LOCK_WAIT) -> None:
        """Take the lock, waiting up to ``wait`` seconds for conflicting holders; start the refresher."""
        if self._current is not None:
            raise LockError("this lock manager already holds a lock; release it first")
        self._lost_reason = None
        record = {
            "v": RECORD_VERSION,
            "host": self.host_id,
            "pid": self._pid,
            "pstart": self._pstart,
            "thread": threading.get_native_id(),
            "exclusive": bool(exclusive),
            "time": 0.0,
            "since": time.time(),
            "session": secrets.token_hex(8),
        }
        candidate, previous = self._acquire_loop(record, wait)
        with self._mutex:
            self._record = record
            self._current = candidate
            self._previous = previous
            self._stop.clear()
            self._refresher = threading.Thread(target=self._refresh_loop, name="packvault-lock-refresh", daemon=True)
            self._refresher.start()
        logger.debug("acquired %s lock %s", "exclusive" if exclusive else "shared", candidate.key)

    def release(self) -> None:
        """Stop refreshing and delete our lock object.  Safe to call when nothing (or a lost lock) is held."""
        self._stop.set()
        thread, self._refresher = self._refresher, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._mutex:
            objects = [obj for obj in (self._current, self._previous) if obj is not None]
            self._current = self._previous = self._record = None
        for obj in objects:
            discard(self.store, name(LOCKS, obj.key))  # also after a loss: still there means ours

    def check(self, *, verify: bool = False) -> None:
        """Raise ``LockLost`` if our lock was lost.  ``verify`` also asks the store whether it still exists."""
        if self._lost_reason is not None:
            raise LockLost(f"repository lock lost: {self._lost_reason}")
        if self._current is None:
            raise LockError("no repository lock is held")
        with self._mutex:
            current = self._current
            if current is not None and self._lost_reason is None and current.age() >= self.stale_seconds:
                self._lose(
                    f"it was not refreshed for {current.age():.0f} s (machine suspended or stalled), so others may "
                    "have taken it for stale"
                )
        if self._lost_reason is not None:
            raise LockLost(f"repository lock lost: {self._lost_reason}")
        if verify:
            with self._mutex:
                current = self._current
                if current is not None and self._lost_reason is None and not self._exists(current.key):
                    self._lose("the lock object was removed by someone else")
            if self._lost_reason is not None:
                raise LockLost(f"repository lock lost: {self._lost_reason}")

    def __enter__(self) -> LockManager:
        self.acquire(exclusive=self.exclusive, wait=self.lock_wait)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def list_locks(self) -> list[LockInfo]:
        """The repository's locks (one per holder), oldest first, with a staleness verdict for each."""
        entries, store_now = self._scan_with_clock()
        # A holder briefly has two objects (see the module docstring): show only its newest one.
        newest: dict[str, Entry] = {}
        for entry in entries:
            if entry.is_probe:
                continue
            holder = entry.key if entry.record is None else f"session:{entry.record['session']}"
            seen = newest.get(holder)
            if seen is None or (seen.record is not None and entry.record["time"] > seen.record["time"]):
                newest[holder] = entry
        infos = []
        for entry in newest.values():
            rec = entry.record
            infos.append(
                LockInfo(
                    key=entry.key,
                    host=rec["host"] if rec else None,
                    pid=rec["pid"] if rec else None,
                    thread=rec["thread"] if rec else None,
                    exclusive=rec["exclusive"] if rec else True,
                    time=float(rec["time"]) if rec else None,
                    since=float(rec["since"]) if rec else None,
                    store_mtime=entry.mtime,
                    stale=self._judge(entry, store_now) is Verdict.STALE,
                    readable=rec is not None,
                    session=str(rec["session"]) if rec else None,
                )
            )
        infos.sort(key=lambda info: (info.since if info.since is not None else float("-inf"), info.key))
        return infos

    def break_locks(self, *, force: bool = False) -> int:
        """Remove stale lock objects (every lock object with ``force``); return how many were removed."""
        entries, store_now = self._scan_with_clock()
        removed = 0
        for entry in entries:
            if force or self._judge(entry, store_now) is Verdict.STALE:
                logger.warning("removing %slock %s", "" if force else "stale ", self._describe(entry))
                removed += self._delete_quietly(entry.key)
        return removed

    # -- acquisition -----------------------------------------------------------------------------------

    def _acquire_loop(self, record: dict, wait: float) -> tuple[Written, Written | None]:
        """Run the protocol until we hold the lock; return our current and previous lock objects."""
        deadline = time.monotonic() + max(0.0, wait)
        session = record["session"]
        candidate: Written | None = None
        previous: Written | None = None
        attempt = 0
        try:
            # The first candidate is written before any listing: the listing after the write decides in every
            # case (docs/locks.md), so one before it would only spare a PUT and a DELETE to a locker that meets
            # a holder, at a round trip for every other.  Rounds after backing off list first.
            candidate = self._write(record)
            while True:
                entries = self._scan()
                keys = {entry.key for entry in entries}
                if candidate is not None and candidate.key not in keys:
                    logger.warning("our lock candidate %s was removed by someone else", candidate.key)
                    if previous is not None:
                        self._delete_quietly(previous.key)
                    candidate = previous = None
                ours = {obj.key for obj in (candidate, previous) if obj is not None}
                store_now = self._store_now(entries, candidate)
                conflicts: list[tuple[Entry, Verdict]] = []
                for entry in entries:
                    if entry.record is not None and entry.record.get("session") == session:
                        if entry.key not in ours:
                            self._delete_quietly(entry.key)  # our own leftover from an interrupted attempt
                        continue
                    verdict = self._judge(entry, store_now)
                    if verdict is Verdict.STALE:
                        # a holder on this host that released its lock and exited since the listing looks
                        # like a dead one: only a lock still there is stale (one HEAD, for stale locks only)
                        if exists_beside(self.store, name(LOCKS, entry.key)):
                            logger.warning("removing stale lock %s", self._describe(entry))
                            self._delete_quietly(entry.key)
                    elif self._conflicts(record["exclusive"], entry):
                        conflicts.append((entry, verdict))
                ahead = self._ahead_of_us(record, conflicts)
                if candidate is None:
                    if not any(verdict is Verdict.LIVE for _, verdict in ahead):
                        # Nobody certainly ahead of us: write our candidate, then decide on a fresh listing.
                        candidate = self._write(record)
                        continue
                elif not conflicts:
                    return candidate, previous
                elif ahead:
                    for obj in (candidate, previous):
                        if obj is not None:
                            self._delete_quietly(obj.key)
                    candidate = previous = None
                elif time.monotonic() - candidate.mono_before >= self.refresh_seconds:
                    # We are first in line and keep waiting: keep our candidate from expiring meanwhile.
                    if previous is not None:
                        self._delete_quietly(previous.key)
                    previous, candidate = candidate, self._write(record)
                now = time.monotonic()
                if now >= deadline:
                    blocker = min((e for e, _ in conflicts), key=lambda e: e.order())
                    raise LockTimeout(self._locked_by_message(blocker))
                delay = min(BACKOFF_MAX, self.refresh_seconds, BACKOFF_FIRST * 2 ** min(attempt, 16))
                time.sleep(min(delay * self._random.uniform(0.5, 1.0), deadline - now))
                attempt += 1
        except BaseException:
            for obj in (candidate, previous):
                if obj is not None:
                    self._delete_quietly(obj.key)
            raise

    @staticmethod
    def _ahead_of_us(record: dict, conflicts: list[tuple[Entry, Verdict]]) -> list[tuple[Entry, Verdict]]:
        """The conflicting locks we must give way to (delete our candidate and back off for).

        A shared candidate gives way to every exclusive lock, and an exclusive candidate to every exclusive
        lock that precedes it in ``(since, session)`` order; an exclusive candidate keeps its lock object
        while it waits for shared holders and later exclusive ones.  So nobody waits for a waiter (no
        deadlock), new shared lockers queue behind a waiting exclusive one (no starvation of compaction by a
        stream of overlapping backups), and exclusive lockers go in order of arrival.
        """
        if not record["exclusive"]:
            return conflicts  # every lock that conflicts with a shared one is exclusive (or unreadable)
        mine = (float(record["since"]), str(record["session"]))
        return [
            (entry, verdict)
            for entry, verdict in conflicts
            if (entry.record is None or entry.record["exclusive"]) and entry.order() < mine
        ]

    @staticmethod
    def _conflicts(exclusive: bool, other: Entry) -> bool:
        if other.record is None:
            return True  # unknown holder: assume the worst
        if other.is_probe:
            return False
        return exclusive or bool(other.record["exclusive"])

    def _locked_by_message(self, entry: Entry) -> str:
        rec = entry.record
        if rec is None:
            when = format_time(entry.mtime) if entry.mtime else "an unknown time"
            return f"repository is locked by an unknown holder (unreadable lock {entry.key[:16]}) since {when}"
        kind = "exclusive" if rec["exclusive"] else "shared"
        return (
            f"repository is locked by {rec['host']} pid {rec['pid']} since {format_time(rec['since'])} ({kind} lock)"
        )

    # -- staleness -------------------------------------------------------------------------------------

    def _judge(self, entry: Entry, store_now: float | None) -> Verdict:
        rec = entry.record
        if rec is not None and rec["host"] == self.host_id and not pid_alive(rec["pid"], rec.get("pstart")):
            return Verdict.STALE
        writer_expired = rec is None or time.time() - float(rec["time"]) >= self.stale_seconds
        if not writer_expired:
            return Verdict.LIVE
        if store_now is None or not entry.mtime:
            return Verdict.UNSURE
        store_age = store_now - entry.mtime - STORE_MTIME_SLACK
        return Verdict.STALE if store_age >= self.stale_seconds else Verdict.LIVE

    def _store_now(self, entries: list[Entry], reference: Written | None) -> float | None:
        """The store's clock now, estimated from the listed mtime of an object we wrote ourselves.

        The estimate errs low: the store stamped the object before our write call returned, so
        ``mtime - wall_after`` underestimates the offset, and an age measured against it is never too high.
        """
        if reference is not None:
            for entry in entries:
                if entry.key == reference.key and entry.mtime:
                    self._store_offset = entry.mtime - reference.wall_after
                    break
        return None if self._store_offset is None else time.time() + self._store_offset

    def _scan_with_clock(self) -> tuple[list[Entry], float | None]:
        """List the locks together with a store clock reading, writing a probe object when we hold nothing.

        A probe is a readable record flagged as such; it conflicts with nobody and lives for one listing.
        """
        with self._mutex:
            current = self._current if self._lost_reason is None else None
        probe = None
        if current is None:
            probe_record = {
                "v": RECORD_VERSION,
                "host": self.host_id,
                "pid": self._pid,
                "pstart": self._pstart,
                "thread": threading.get_native_id(),
                "exclusive": False,
                "time": 0.0,
                "since": time.time(),
                "session": secrets.token_hex(8),
                "probe": True,
            }
            try:
                probe = self._write(probe_record)
            except Exception as exc:  # a read-only store, say: go on with what we know
                logger.warning("cannot write a lock probe to read the store clock: %s", exc)
        try:
            entries = self._scan()
            store_now = self._store_now(entries, probe or current)
        finally:
            if probe is not None:
                self._delete_quietly(probe.key)
        if probe is not None:
            entries = [entry for entry in entries if entry.key != probe.key]
        return entries, store_now

    # -- refreshing ------------------------------------------------------------------------------------

    def _refresh_loop(self) -> None:
        while True:
            with self._mutex:
                current = self._current
            if current is None or self._lost_reason is not None:
                return
            due = current.mono_before + self.refresh_seconds - time.monotonic()
            if self._stop.wait(max(0.0, due)):
                return
            try:
                self._refresh_once()
            except Exception as exc:
                logger.warning("could not refresh the repository lock (will retry): %s", exc)
                with self._mutex:
                    if self._current is not None and self._current.age() >= self.stale_seconds:
                        self._lose(f"it could not be refreshed for {self.stale_seconds:.0f} s ({exc})")
                if self._stop.wait(min(1.0, self.refresh_seconds / 4)):
                    return

    def _refresh_once(self) -> None:
        with self._mutex:
            old, previous, record = self._current, self._previous, self._record
            if old is None or record is None or self._lost_reason is not None or self._stop.is_set():
                return
            if old.age() >= self.stale_seconds:
                self._lose("it was not refreshed before it could look stale to others")
                return
            if not self._exists(old.key):
                self._lose("the lock object was removed by someone else")
                return
            if previous is not None:
                # Deleted before writing the new one, so we never have more than two objects.
                self._delete_quietly(previous.key)  # may be gone already: removed as stale by someone
                self._previous = None
            new = self._write({**record, "time": time.time()})
            # Others may take our old object for stale once stale_seconds have passed since it was written.
            # The new object protects us only if it became visible before that moment.
            if old.age() >= self.stale_seconds:
                self._delete_quietly(new.key)
                self._lose("a refresh took so long that the lock could have looked stale to others")
                return
            if not self._exists(old.key):  # broken while we were writing: do not carry on with the new one
                self._delete_quietly(new.key)
                self._lose("the lock object was removed by someone else")
                return
            self._previous, self._current = old, new

    def _lose(self, reason: str) -> None:
        """Mark the lock lost (caller holds ``_mutex``) and tell the owner."""
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        logger.error("repository lock lost: %s", reason)
        if self._on_lost is not None:
            try:
                self._on_lost()
            except Exception:
                logger.exception("on_lost callback failed")

    # -- store access ----------------------------------------------------------------------------------

    def _write(self, record: dict) -> Written:
        record = {**record, "time": time.time()}
        sealed = self._seal(msgpack.packb(record, use_bin_type=True))
        key = hashlib.sha256(sealed).hexdigest()
        mono_before, boot_before, wall_before = time.monotonic(), boottime(), time.time()
        store_beside(self.store, name(LOCKS, key), sealed)  # a refresh holds up no other request
        wall_after = time.time()
        with self._decoded_lock:
            self._decoded[key] = record
        return Written(key, mono_before, wall_after, wall_before, boot_before)

    def _delete_quietly(self, key: str) -> bool:
        """Delete a lock object; False if it was already gone."""
        try:
            self.store.delete(name(LOCKS, key))
        except ObjectNotFound:
            return False
        return True

    def _exists(self, key: str) -> bool:
        return exists_beside(self.store, name(LOCKS, key))  # asked beside the epoch (``prove_unchanged``)

    def _scan(self) -> list[Entry]:
        """List ``locks/`` and decode every object (each content-named object is loaded only once)."""
        try:
            listed = [info for info in self.store.list(LOCKS) if not info.directory]
        except ObjectNotFound:
            listed = []
        entries = []
        for info in listed:
            with self._decoded_lock:
                known = info.name in self._decoded
                record = self._decoded.get(info.name)
            if not known:
                try:
                    sealed = self.store.load(name(LOCKS, info.name))
                except ObjectNotFound:
                    continue  # released between listing and loading
                record = self._open(sealed)
                with self._decoded_lock:
                    self._decoded[info.name] = record
            entries.append(Entry(key=info.name, mtime=info.mtime or None, record=record))
        listed_keys = {info.name for info in listed}
        with self._decoded_lock:
            for key in [key for key in self._decoded if key not in listed_keys]:
                del self._decoded[key]
        return entries

    def _open(self, sealed: bytes) -> dict | None:
        try:
            plain = self._unseal(sealed)
        except Exception as exc:  # unseal's failure type is the key's business; any failure means unreadable
            logger.warning("unreadable lock object (%s); treating it as held by an unknown holder", exc)
            return None
        record = decode_record(plain)
        if record is None:
            logger.warning("malformed lock record; treating it as held by an unknown holder")
        return record

    def _describe(self, entry: Entry) -> str:
        rec = entry.record
        if rec is None:
            return f"{entry.key[:16]} (unreadable)"
        kind = "probe" if entry.is_probe else "exclusive" if rec["exclusive"] else "shared"
        return f"{entry.key[:16]} ({kind}, {rec['host']} pid {rec['pid']} since {format_time(rec['since'])})"
