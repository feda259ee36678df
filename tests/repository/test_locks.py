"""Repository locks against real stores (a directory, and a moto S3 server) and real processes.

Holders run as separate processes (tests/repository/lockworker.py) so that pids, kill -9 and clocks are
real; the test process itself plays the competing client.  Timings are short (stale 3 s, refresh 0.5 s)
so the suite stays fast; the cases that must outlive a stale period are marked slow.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
from borgstore.backends.posixfs import PosixFS
from borgstore.store import Store

from packvault.errors import LockError, LockLost, LockTimeout
from packvault.repository.locks import (
    DEFAULT_LOCK_WAIT,
    DEFAULT_STALE_SECONDS,
    LockManager,
    default_host_id,
    pid_alive,
    process_start,
)
from packvault.storage.layout import LOCKS, STORE_CONFIG
from tests.repository.lockworker import KEY_ENV, make_sealer, open_store

ROOT = Path(__file__).resolve().parents[2]
STALE = 3.0
REFRESH = 0.5
HAVE_S3_SUPPORT = (ROOT / "tests" / "support" / "s3servers.py").exists() and (
    ROOT / "src" / "packvault" / "storage" / "s3" / "__init__.py"
).exists()


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def lock_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def file_location(tmp_path: Path) -> str:
    path = tmp_path / "repo"
    Store(backend=PosixFS(path), config=STORE_CONFIG).create()
    return str(path)


def _s3_location(request: pytest.FixtureRequest) -> str:
    if not HAVE_S3_SUPPORT:
        pytest.skip("S3 test support (tests/support/s3servers.py, packvault.storage.s3) not available yet")
    from packvault.storage.url import store_from_location

    endpoint = request.getfixturevalue("moto_endpoint")
    url = request.getfixturevalue("make_s3_url")(endpoint)  # also sets up s3_env, inherited by the workers
    store_from_location(url).create()
    return url


@pytest.fixture(params=["file", "s3"])
def location(request: pytest.FixtureRequest, file_location: str) -> str:
    """A fresh, empty repository store: a directory, or a bucket prefix on the moto server."""
    return file_location if request.param == "file" else _s3_location(request)


@pytest.fixture
def store(location: str) -> Iterator[Store]:
    store = open_store(location)
    yield store
    store.close()


@pytest.fixture
def file_store(file_location: str) -> Iterator[Store]:
    store = open_store(file_location)
    yield store
    store.close()


def manager(store: Store, key: bytes, **kwargs) -> LockManager:
    seal, unseal = make_sealer(key)
    kwargs.setdefault("stale_seconds", STALE)
    kwargs.setdefault("refresh_seconds", REFRESH)
    return LockManager(store, seal=seal, unseal=unseal, **kwargs)


class Worker:
    """A lockworker process; its stdout lines are collected by a thread so reads can time out."""

    def __init__(self, location: str, key: bytes, *args: str, log_dir: Path):
        self.stderr_path = log_dir / f"worker-{time.monotonic_ns()}.err"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.repository.lockworker", location, *args],
            cwd=ROOT,
            env={**os.environ, KEY_ENV: key.hex()},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put("EOF")

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"worker said nothing within {timeout} s, expected {prefix!r}; stderr: {self.stderr()}")
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}; stderr: {self.stderr()}"
        return line

    def release(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("release\n")
        self.proc.stdin.flush()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)  # reaped: no zombie that still answers kill(pid, 0)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._stderr.close()


@pytest.fixture
def spawn(tmp_path: Path, lock_key: bytes) -> Iterator:
    workers: list[Worker] = []

    def start(location: str, *args: str) -> Worker:
        worker = Worker(location, lock_key, "--stale", str(STALE), "--refresh", str(REFRESH), *args, log_dir=tmp_path)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def forge_lock(
    store: Store,
    key: bytes,
    *,
    host: str = "elsewhere/000000000000",
    pid: int = 4242,
    exclusive: bool = True,
    written: float,
    since: float | None = None,
) -> str:
    """Write a lock object the way another client would (record format: docs/locks.md); return its key."""
    seal, _ = make_sealer(key)
    record = {
        "v": 1,
        "host": host,
        "pid": pid,
        "pstart": None,
        "thread": 1,
        "exclusive": exclusive,
        "time": written,
        "since": written if since is None else since,
        "session": os.urandom(8).hex(),
    }
    sealed = seal(msgpack.packb(record))
    name = hashlib.sha256(sealed).hexdigest()
    store.store(f"{LOCKS}/{name}", sealed)
    return name


def age_object(location: str, name: str, seconds: float) -> None:
    """Make the store's clock say the object was written ``seconds`` ago (file backend: set its mtime)."""
    path = Path(location) / LOCKS / name
    then = time.time() - seconds
    os.utime(path, (then, then))


LOCKED_BY = re.compile(r"^repository is locked by (\S+) pid (\d+) since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


# --- basic semantics ---------------------------------------------------------------------------------


def test_defaults_are_sensible():
    assert DEFAULT_STALE_SECONDS == 15 * 60
    assert DEFAULT_LOCK_WAIT == 60
    lm = LockManager(None, seal=bytes, unseal=bytes)  # type: ignore[arg-type]
    assert lm.refresh_seconds == pytest.approx(DEFAULT_STALE_SECONDS / 6)
    with pytest.raises(ValueError):
        LockManager(None, seal=bytes, unseal=bytes, stale_seconds=10, refresh_seconds=6)  # type: ignore[arg-type]


def test_acquire_release_leaves_nothing(store: Store, lock_key: bytes):
    lm = manager(store, lock_key)
    lm.acquire(exclusive=True, wait=0)
    assert lm.held
    [info] = lm.list_locks()
    assert (info.host, info.pid, info.exclusive, info.stale, info.readable) == (
        lm.host_id,
        os.getpid(),
        True,
        False,
        True,
    )
    assert info.thread == threading.get_native_id()
    assert info.store_mtime is not None and abs(info.store_mtime - time.time()) < 5
    lm.check()
    lm.release()
    lm.release()  # idempotent
    assert list(store.list(LOCKS)) == []
    with pytest.raises(LockError):
        lm.check()


def test_context_manager_and_no_reentry(store: Store, lock_key: bytes):
    lm = manager(store, lock_key, exclusive=True, lock_wait=0)
    with lm:
        assert lm.list_locks()[0].exclusive
        with pytest.raises(LockError, match="already holds"):
            lm.acquire(exclusive=False, wait=0)
    assert list(store.list(LOCKS)) == []


def test_shared_locks_coexist(location: str, store: Store, lock_key: bytes, spawn):
    first = spawn(location)
    first.expect("ACQUIRED")
    second = spawn(location, "--wait", "0")
    second.expect("ACQUIRED")
    mine = manager(store, lock_key)
    mine.acquire(exclusive=False, wait=0)
    locks = mine.list_locks()
    assert len(locks) == 3
    assert not any(info.exclusive or info.stale for info in locks)
    assert {info.pid for info in locks} == {first.proc.pid, second.proc.pid, os.getpid()}
    mine.release()
    for worker in (first, second):
        worker.release()
        worker.expect("RELEASED")
        assert worker.proc.wait(timeout=10) == 0
    assert list(store.list(LOCKS)) == []


@pytest.mark.parametrize("held_exclusive", [True, False], ids=["exclusive-held", "shared-held"])
def test_exclusive_excludes(location: str, store: Store, lock_key: bytes, spawn, held_exclusive: bool):
    holder = spawn(location, *(["--exclusive"] if held_exclusive else []))
    holder.expect("ACQUIRED")
    lm = manager(store, lock_key)
    attempts = [True, False] if held_exclusive else [True]
    for exclusive in attempts:
        started = time.monotonic()
        with pytest.raises(LockTimeout) as caught:
            lm.acquire(exclusive=exclusive, wait=0.6)
        assert time.monotonic() - started >= 0.6
        match = LOCKED_BY.match(str(caught.value))
        assert match, str(caught.value)
        assert match.group(1) == default_host_id()
        assert int(match.group(2)) == holder.proc.pid
        assert ("exclusive lock" if held_exclusive else "shared lock") in str(caught.value)
    assert not lm.held
    # the failed attempts left no candidate behind
    assert [info.pid for info in lm.list_locks()] == [holder.proc.pid]
    if not held_exclusive:
        lm.acquire(exclusive=False, wait=0)  # shared still works next to shared
        lm.release()
    holder.release()
    holder.expect("RELEASED")


@pytest.mark.parametrize("held_exclusive,want_exclusive", [(True, True), (True, False), (False, True)])
def test_waits_then_succeeds_when_holder_releases(
    location: str, store: Store, lock_key: bytes, spawn, held_exclusive: bool, want_exclusive: bool
):
    holder = spawn(location, *(["--exclusive"] if held_exclusive else []))  # holds until told to release
    holder.expect("ACQUIRED")
    lm = manager(store, lock_key)
    acquired = threading.Event()
    failure: list[BaseException] = []

    def take() -> None:
        try:
            lm.acquire(exclusive=want_exclusive, wait=60)
            acquired.set()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)

    taker = threading.Thread(target=take)
    taker.start()
    assert not acquired.wait(timeout=1.0), "acquired while the holder still held its lock"
    holder.release()
    holder.expect("RELEASED")
    taker.join(timeout=60)
    assert acquired.is_set() and not failure, failure
    assert holder.proc.wait(timeout=10) == 0
    [info] = lm.list_locks()
    assert info.pid == os.getpid() and info.exclusive == want_exclusive
    lm.release()


def test_waiting_exclusive_is_not_starved_by_new_shared_lockers(
    file_location: str, file_store: Store, lock_key: bytes, spawn
):
    """Once an exclusive candidate waits first in line, later shared lockers queue behind it."""
    store = file_store
    shared_holder = spawn(file_location)  # holds until told to release
    shared_holder.expect("ACQUIRED")
    done = threading.Event()
    failure: list[BaseException] = []

    def take_exclusive() -> None:
        try:
            lm = manager(store, lock_key)
            lm.acquire(exclusive=True, wait=20)
            lm.release()
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        done.set()

    waiter = threading.Thread(target=take_exclusive)
    waiter.start()
    observer = manager(store, lock_key)
    deadline = time.monotonic() + 60
    while not any(info.pid == os.getpid() and info.exclusive for info in observer.list_locks()):
        assert time.monotonic() < deadline and not done.is_set(), failure or "the exclusive candidate never showed"
        time.sleep(0.02)
    # the exclusive candidate waits now, behind the shared holder: a new shared locker queues behind it
    late = spawn(file_location, "--wait", "0")
    late.expect("TIMEOUT repository is locked by")
    shared_holder.release()
    shared_holder.expect("RELEASED")
    waiter.join(timeout=60)
    assert done.is_set() and not failure, failure


# --- stale locks --------------------------------------------------------------------------------------


def test_killed_holder_on_same_host_is_stale_at_once(location: str, store: Store, lock_key: bytes, spawn):
    holder = spawn(location, "--exclusive", "--stale", "600", "--refresh", "60")
    holder.expect("ACQUIRED")
    lm = manager(store, lock_key, stale_seconds=600, refresh_seconds=60)
    with pytest.raises(LockTimeout):
        lm.acquire(exclusive=True, wait=0)  # alive: respected
    holder.kill9()
    [info] = lm.list_locks()
    assert info.pid == holder.proc.pid and info.stale
    lm.acquire(exclusive=True, wait=0)  # no waiting for it to age
    assert [info.pid for info in lm.list_locks()] == [os.getpid()]  # the dead holder's lock is gone
    lm.release()


def test_dead_pid_from_another_host_is_not_trusted(store: Store, lock_key: bytes):
    """A pid says nothing about processes on other hosts: such a lock waits for expiry."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    forge_lock(store, lock_key, host="elsewhere/abcdef", pid=child.pid, written=time.time())
    lm = manager(store, lock_key)
    assert not lm.list_locks()[0].stale
    with pytest.raises(LockTimeout, match="elsewhere/abcdef"):
        lm.acquire(exclusive=False, wait=0)


@pytest.mark.slow
def test_foreign_holder_that_stops_refreshing_expires_by_time(location: str, store: Store, lock_key: bytes, spawn):
    holder = spawn(location, "--exclusive", "--host-id", "elsewhere/0123456789ab")
    holder.expect("ACQUIRED")
    time.sleep(1.0)  # a few refreshes happen
    holder.kill9()
    lm = manager(store, lock_key)
    [last] = lm.list_locks()  # the newest object the holder wrote before it died
    assert last.host == "elsewhere/0123456789ab" and not last.stale
    with pytest.raises(LockTimeout, match="elsewhere/0123456789ab"):
        lm.acquire(exclusive=True, wait=0)
    lm.acquire(exclusive=True, wait=STALE + 5)
    now = time.time()
    # not before it aged STALE by the writer's clock and by the store's clock (plus its 1 s of slack) ...
    assert now >= last.time + STALE and now >= last.store_mtime + STALE + 1
    # ... and not much later either (the store's whole seconds and a loaded machine's delays aside)
    assert now < last.time + STALE + 1 + 10
    assert [info.host for info in lm.list_locks()] == [lm.host_id]
    lm.release()


def test_old_writer_time_but_fresh_store_time_is_live(store: Store, lock_key: bytes):
    """The writer's clock is far behind: by the store's clock its lock was just written."""
    forge_lock(store, lock_key, written=time.time() - 10_000)
    lm = manager(store, lock_key)
    [info] = lm.list_locks()
    assert not info.stale
    assert lm.break_locks() == 0
    with pytest.raises(LockTimeout):
        lm.acquire(exclusive=False, wait=0)


def test_fresh_writer_time_but_old_store_time_is_live(file_location: str, file_store: Store, lock_key: bytes):
    """The store's clock says old, the writer's says fresh (our clock may be behind): still live."""
    name = forge_lock(file_store, lock_key, written=time.time() + 10_000)
    age_object(file_location, name, 10_000)
    lm = manager(file_store, lock_key)
    [info] = lm.list_locks()
    assert not info.stale and info.store_mtime < time.time() - 9_000
    assert lm.break_locks() == 0
    with pytest.raises(LockTimeout):
        lm.acquire(exclusive=True, wait=0)


def test_expired_by_both_clocks_is_stale_and_removed(
    file_location: str, file_store: Store, lock_key: bytes, caplog: pytest.LogCaptureFixture
):
    name = forge_lock(file_store, lock_key, written=time.time() - STALE - 1)
    age_object(file_location, name, STALE + 2)
    lm = manager(file_store, lock_key)
    assert lm.list_locks()[0].stale
    with caplog.at_level(logging.WARNING, logger="packvault.repository.locks"):
        lm.acquire(exclusive=True, wait=0)
    assert "removing stale lock" in caplog.text and "elsewhere/000000000000" in caplog.text
    assert [info.pid for info in lm.list_locks()] == [os.getpid()]
    lm.release()


def test_break_locks(file_location: str, file_store: Store, lock_key: bytes):
    stale = forge_lock(file_store, lock_key, written=time.time() - 100)
    age_object(file_location, stale, 100)
    forge_lock(file_store, lock_key, written=time.time(), exclusive=False)
    lm = manager(file_store, lock_key)
    assert lm.break_locks() == 1
    assert len(lm.list_locks()) == 1
    assert lm.break_locks(force=True) == 1
    assert list(file_store.list(LOCKS)) == []


def test_unreadable_lock_blocks_until_stale_by_store_time(
    file_location: str, file_store: Store, lock_key: bytes, caplog: pytest.LogCaptureFixture
):
    # sealed under another key: does not authenticate, so nothing in it can be trusted
    foreign = forge_lock(file_store, os.urandom(32), written=time.time(), exclusive=False)
    lm = manager(file_store, lock_key)
    [info] = lm.list_locks()
    assert (info.readable, info.host, info.pid, info.exclusive, info.stale) == (False, None, None, True, False)
    with pytest.raises(LockTimeout, match="unknown holder"):
        lm.acquire(exclusive=False, wait=0)  # treated as exclusive: even a shared lock must wait
    assert lm.break_locks() == 0
    age_object(file_location, foreign, STALE + 2)
    with caplog.at_level(logging.WARNING, logger="packvault.repository.locks"):
        lm.acquire(exclusive=False, wait=0)
    assert "unreadable" in caplog.text
    assert [info.readable for info in lm.list_locks()] == [True]
    lm.release()


def test_tampered_lock_object_is_unreadable(file_location: str, file_store: Store, lock_key: bytes):
    name = forge_lock(file_store, lock_key, written=time.time())
    path = Path(file_location) / LOCKS / name
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    lm = manager(file_store, lock_key)
    assert [info.readable for info in lm.list_locks()] == [False]


# --- refreshing and losing ----------------------------------------------------------------------------


def test_refresh_replaces_the_lock_object(store: Store, lock_key: bytes):
    lm = manager(store, lock_key, refresh_seconds=0.2)
    lm.acquire(exclusive=True, wait=0)
    keys_seen: set[str] = set()
    deadline = time.monotonic() + 60
    while len(keys_seen) < 4:  # a new object at every refresh
        assert time.monotonic() < deadline, keys_seen
        names = [info.name for info in store.list(LOCKS)]
        assert 1 <= len(names) <= 2  # the current object, and briefly the previous one
        keys_seen.update(names)
        assert len(lm.list_locks()) == 1  # one holder, whatever the object count
        time.sleep(0.1)
    lm.check()
    lm.release()
    assert list(store.list(LOCKS)) == []


@pytest.mark.slow
def test_long_operation_keeps_its_lock_alive(location: str, store: Store, lock_key: bytes, spawn):
    stale, hold = STALE, 3 * STALE
    holder = spawn(location, "--exclusive", "--hold", str(hold), "--stale", str(stale), "--refresh", str(REFRESH))
    holder.expect("ACQUIRED")
    started = time.monotonic()
    # Another host: only time can make this lock stale, so only refreshing keeps it live.
    observer = manager(store, lock_key, stale_seconds=stale, refresh_seconds=REFRESH, host_id="observer/1")
    checks = 0
    observed = started
    while time.monotonic() - started < hold - 1:
        locks = observer.list_locks()
        assert [(info.pid, info.stale) for info in locks] == [(holder.proc.pid, False)]
        if checks % 5 == 0:
            with pytest.raises(LockTimeout):
                observer.acquire(exclusive=False, wait=0)
        checks += 1
        observed = time.monotonic()
        time.sleep(0.15)
    assert checks >= 2 and observed - started > 1.5 * stale  # live well past the stale period
    holder.expect("RELEASED")  # not LOST: nobody took its lock for stale
    assert holder.proc.wait(timeout=10) == 0
    observer.acquire(exclusive=True, wait=0)
    observer.release()


def test_breaking_our_lock_makes_check_raise(store: Store, lock_key: bytes):
    lost = threading.Event()
    lm = manager(store, lock_key, refresh_seconds=0.2, on_lost=lost.set)
    lm.acquire(exclusive=True, wait=0)
    breaker = manager(store, lock_key)
    assert breaker.break_locks() == 0  # a live lock is not stale
    assert breaker.break_locks(force=True) >= 1
    # A refresh that ran between the breaker's listing and its deletions leaves the holder a live object
    # the breaker never saw; breaking again then removes that one.  (Ten rounds: a loaded CI machine can
    # delay the refresher's wake-ups by seconds.)
    for _ in range(10):
        if lost.wait(timeout=1.0):
            break
        breaker.break_locks(force=True)
    assert lost.is_set(), "the refresher did not notice"
    with pytest.raises(LockLost, match="removed by someone else"):
        lm.check()
    # someone else can take it now, and the lost holder's release does not touch their lock
    breaker.acquire(exclusive=True, wait=0)
    lm.release()
    assert [info.pid for info in breaker.list_locks()] == [os.getpid()]
    breaker.check(verify=True)
    breaker.release()


def test_check_verify_notices_at_once(store: Store, lock_key: bytes):
    lm = manager(store, lock_key, stale_seconds=60, refresh_seconds=10)
    lm.acquire(exclusive=False, wait=0)
    lm.check(verify=True)
    manager(store, lock_key).break_locks(force=True)
    with pytest.raises(LockLost):
        lm.check(verify=True)
    lm.release()


def test_broken_lock_stops_another_process(location: str, store: Store, lock_key: bytes, spawn):
    holder = spawn(location, "--exclusive", "--hold", "20")
    holder.expect("ACQUIRED")
    breaker = manager(store, lock_key)
    assert breaker.break_locks(force=True) >= 1
    deadline = time.monotonic() + 60
    while True:  # see test_breaking_our_lock_makes_check_raise for why once may not be enough
        try:
            line = holder.lines.get(timeout=1.0)
            break
        except queue.Empty:
            assert time.monotonic() < deadline, "the holder did not notice that its lock was broken"
            breaker.break_locks(force=True)
    assert line.startswith("LOST repository lock lost: the lock object was removed by someone else"), line
    assert holder.proc.wait(timeout=10) == 3


# --- races --------------------------------------------------------------------------------------------


def _intervals(log: Path) -> list[tuple[int, int, str]]:
    """(enter, exit, tag) per critical section from the O_APPEND log; checks every entry has its exit."""
    open_: dict[str, int] = {}
    spans = []
    for line in log.read_text().splitlines():
        what, tag, stamp = line.split()
        if what == "enter":
            assert tag not in open_
            open_[tag] = int(stamp)
        else:
            spans.append((open_.pop(tag), int(stamp), tag))
    assert not open_
    return sorted(spans)


def _race(location: str, spawn, tmp_path: Path, *, exclusive: int, shared: int, repeat: int) -> None:
    log = tmp_path / "sections.log"
    workers = []
    for i in range(exclusive + shared):
        kind = ["--exclusive"] if i < exclusive else []
        tag = f"{'x' if i < exclusive else 's'}{i}"
        args = [*kind, "--repeat", str(repeat), "--hold", "0.02", "--wait", "120", "--log", str(log), "--tag", tag]
        workers.append(spawn(location, *args))
    for worker in workers:
        assert worker.proc.wait(timeout=240) == 0, worker.stderr()
    spans = _intervals(log)
    assert len(spans) == (exclusive + shared) * repeat
    for i, (enter, leave, tag) in enumerate(spans):
        if not tag.startswith("x"):
            continue
        for other_enter, other_leave, other_tag in spans[:i] + spans[i + 1 :]:
            assert other_leave < enter or leave < other_enter, f"{tag} overlapped {other_tag}"
    # shared holders did share at some point would be nice, but is not guaranteed; exclusion is.


def test_race_small(location: str, spawn, tmp_path: Path, store: Store):
    _race(location, spawn, tmp_path, exclusive=4, shared=0, repeat=3)
    assert list(store.list(LOCKS)) == []


@pytest.mark.slow
def test_race_many_exclusive(location: str, spawn, tmp_path: Path, store: Store):
    _race(location, spawn, tmp_path, exclusive=7, shared=0, repeat=20)
    assert list(store.list(LOCKS)) == []


@pytest.mark.slow
def test_race_mixed(location: str, spawn, tmp_path: Path, store: Store):
    _race(location, spawn, tmp_path, exclusive=5, shared=3, repeat=10)
    assert list(store.list(LOCKS)) == []


# --- local process identity ---------------------------------------------------------------------------


def test_pid_alive():
    assert pid_alive(os.getpid(), process_start(os.getpid()))
    assert pid_alive(0) and pid_alive(-1)  # not real pids: never declared dead
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child_start = process_start(child.pid)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped: a zombie answers kill(pid, 0)
    assert not pid_alive(child.pid, child_start)
    child.wait()
    assert not pid_alive(child.pid)


def test_reused_pid_is_not_the_holder():
    start = process_start(os.getpid())
    assert start is not None
    assert not pid_alive(os.getpid(), start + 1)


def test_host_id_is_stable_across_processes():
    here = default_host_id()
    assert here.split("/")[0] == __import__("socket").gethostname()
    there = subprocess.run(
        [sys.executable, "-c", "from packvault.repository.locks import default_host_id; print(default_host_id())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert there == here


def test_release_removes_our_lock_object_in_one_request(request: pytest.FixtureRequest, lock_key: bytes):
    """Releasing needs no existence check: on S3 it is a single DELETE (a HEAD first would double it)."""
    store = open_store(_s3_location(request))
    try:
        lm = manager(store, lock_key)
        lm.acquire(exclusive=True, wait=0)
        before = store.backend.request_stats()
        lm.release()
        after = store.backend.request_stats()
        assert after["DELETE"] - before["DELETE"] == 1
        assert after["HEAD"] == before["HEAD"]
        assert [info for info in store.list("locks") if not info.directory] == []
        lm.release()  # a second release (nothing held) is harmless
    finally:
        store.close()


def test_a_holder_that_released_and_exited_since_the_listing_is_not_called_stale(
    store: Store, lock_key: bytes, caplog
):
    """Four backups start together; one commits, releases its lock and exits while another lists the locks:
    the listed lock's pid is dead, but the lock is gone, not stale, and no warning says otherwise."""
    lm = manager(store, lock_key)
    lm.acquire(exclusive=False, wait=0)
    host = lm.list_locks()[0].host
    lm.release()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    key = forge_lock(store, lock_key, host=host, pid=child.pid, exclusive=False, written=time.time())
    other = manager(store, lock_key)
    scan = other._scan

    released = []

    def listed_then_released():
        entries = scan()
        if not released:
            store.delete(f"{LOCKS}/{key}")  # the holder released it right after the first listing
            released.append(key)
        return entries

    other._scan = listed_then_released
    with caplog.at_level("WARNING"):
        other.acquire(exclusive=False, wait=0)
    other.release()
    assert not [r for r in caplog.records if "stale" in r.getMessage()], caplog.text
