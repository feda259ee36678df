"""Small files restored by restore processes (``archive/restorers.py``): the tree must be the one the restore's
own process makes, and every way a file can go wrong must end as it does there."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from packvault.archive import restorers
from packvault.archive.restorers import LEFT, RestorePool
from packvault.repository.repository import Repository
from tests.support.cli import tree_snapshot
from tests.support.settings import env_settings

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def processes_for_every_round(monkeypatch):
    """Small test archives would never start processes (``MIN_FILES``): here every round does."""
    monkeypatch.setattr(restorers, "MIN_FILES", 1)


def _tree(root: Path) -> Path:
    """Hundreds of one-chunk files with varied modes and times, an all-zero one, empty ones, a file of several
    chunks, hardlinks (to a small file, planned in the same round) and symlinks."""
    rnd = random.Random(7)
    for d in range(4):
        sub = root / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for i in range(80):
            path = sub / f"f{i:03d}"
            path.write_bytes(rnd.randbytes(rnd.choice([0, 1, 300, rnd.randrange(1, 20 * KiB)])))
            os.chmod(path, rnd.choice([0o600, 0o640, 0o755, 0o444]))
            os.utime(path, ns=(1_600_000_000_000_000_000 + i, 1_500_000_000_000_000_000 + d * 1000 + i))
    (root / "zeros").write_bytes(bytes(64 * KiB))
    (root / "several-chunks.bin").write_bytes(rnd.randbytes(9 * MiB))
    os.link(root / "d1" / "inner" / "f003", root / "d1" / "link-to-f003")
    os.symlink("d0/inner/f000", root / "symlink")
    return root


def _extract(pv, repo: Path, archive: str, target: Path, *args: str, processes: int, expect: int = 0) -> dict:
    os.environ["PACKVAULT_READ_PROCESSES"] = str(processes)
    try:
        result = pv("extract", f"{repo}::{archive}", "--target", target, "--json", *args, expect=expect)
    finally:
        del os.environ["PACKVAULT_READ_PROCESSES"]
    return json.loads(result.out)


def _backup(pv, tmp_path: Path) -> tuple[Path, Path]:
    src = _tree(tmp_path / "src")
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    return src, repo


def _restored(target: Path, src: Path) -> Path:
    return target / str(src).lstrip("/")


def test_restore_processes_restore_what_the_restore_process_restores(pv, tmp_path, processes_for_every_round):
    src, repo = _backup(pv, tmp_path)
    here = _extract(pv, repo, "a", tmp_path / "here", processes=0)
    there = _extract(pv, repo, "a", tmp_path / "there", processes=2)
    assert here["stats"]["files_by_processes"] == 0
    # every one-chunk file went to the processes, but the one a hardlink is made to while it is pending
    one_chunk = [p for p in src.rglob("*") if p.is_file() and not p.is_symlink() and 0 < p.stat().st_size <= 64 * KiB]
    assert there["stats"]["files_by_processes"] == len(one_chunk) - 2, there["stats"]  # the file and its link
    snapshot = tree_snapshot(src)
    assert tree_snapshot(_restored(tmp_path / "here", src)) == snapshot
    assert tree_snapshot(_restored(tmp_path / "there", src)) == snapshot
    assert os.stat(_restored(tmp_path / "there", src) / "zeros").st_blocks == 0  # a hole, as here
    assert here["stats"]["nfiles"] == there["stats"]["nfiles"]
    assert here["stats"]["bytes"] == there["stats"]["bytes"]


def test_files_in_the_way_are_left_to_the_overwrite_policy(pv, tmp_path, processes_for_every_round):
    src, repo = _backup(pv, tmp_path)
    for policy, kept in (("never", True), ("always", False)):
        target = tmp_path / f"over-{policy}"
        inner = _restored(target, src) / "d2" / "inner"
        inner.mkdir(parents=True)
        for i in range(0, 80, 4):
            (inner / f"f{i:03d}").write_bytes(b"was here before")
        doc = _extract(pv, repo, "a", target, "--overwrite", policy, processes=2)
        assert doc["stats"]["files_by_processes"] > 0
        for i in range(80):
            content = (inner / f"f{i:03d}").read_bytes()
            expected = (src / "d2" / "inner" / f"f{i:03d}").read_bytes()
            if i % 4 == 0 and kept:
                assert content == b"was here before"
            else:
                assert content == expected, (policy, i)
        assert not [p for p in inner.iterdir() if p.name.startswith(".packvault-restore-")]


def _damage_object_of(repo: Path, path_in_source: Path) -> None:
    """Flip a byte inside the stored object of a one-chunk file."""
    r = Repository(str(repo), settings=env_settings())
    r.open(lambda: os.environ["PACKVAULT_PASSPHRASE"])
    try:
        chunk_id = r.chunk_id(path_in_source.read_bytes())
        loc = r.index.get(chunk_id)
        assert loc is not None
        pack_file = next(p for p in (repo / "packs").rglob("*") if p.is_file() and p.name == loc.pack.split("/")[-1])
    finally:
        r.close()
    with open(pack_file, "r+b") as f:
        f.seek(loc.offset + loc.size // 2)
        byte = f.read(1)
        f.seek(loc.offset + loc.size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_damaged_chunk_fails_only_its_file_as_it_does_here(pv, tmp_path, processes_for_every_round):
    src, repo = _backup(pv, tmp_path)
    victim = src / "d3" / "inner" / "f010"
    assert victim.stat().st_size > 1000
    _damage_object_of(repo, victim)
    docs = {}
    for processes in (0, 2):
        target = tmp_path / f"out{processes}"
        docs[processes] = _extract(pv, repo, "a", target, processes=processes, expect=1)
        restored = _restored(target, src)
        assert not (restored / "d3" / "inner" / "f010").exists()
        assert (restored / "d3" / "inner" / "f011").read_bytes() == (src / "d3" / "inner" / "f011").read_bytes()
    assert docs[2]["stats"]["files_by_processes"] > 0
    assert docs[0]["stats"]["errors"] == docs[2]["stats"]["errors"] == 1
    assert docs[0]["stats"]["bytes"] == docs[2]["stats"]["bytes"]


def test_files_patched_by_repair_are_reported_as_they_are_here(pv, tmp_path, processes_for_every_round):
    """A one-chunk file whose chunk ``check --repair`` replaced by zeros goes to the restore processes like any
    other: the same warning, and the same counts, as when the restore's own process writes it."""
    src = tmp_path / "src"
    (src / "many").mkdir(parents=True)
    rnd = random.Random(11)
    for i in range(40):
        (src / "many" / f"f{i:02d}").write_bytes(rnd.randbytes(2000))
    (src / "hurt").write_bytes(rnd.randbytes(100 * KiB))  # one chunk, in a pack of its own
    repo = tmp_path / "repo"
    pv("init", repo, "--pack-size", "64K")
    pv("create", f"{repo}::one", src / "hurt")
    own_packs = {p for p in (repo / "packs" / "data").rglob("*") if p.is_file()}
    pv("create", f"{repo}::two", src)
    for pack in own_packs:
        pack.unlink()
    pv("check", repo, "--repair", expect=1)
    docs, said = {}, {}
    for processes in (0, 2):
        os.environ["PACKVAULT_READ_PROCESSES"] = str(processes)
        try:
            result = pv("extract", f"{repo}::two", "--target", tmp_path / f"out{processes}", "--json", expect=1)
        finally:
            del os.environ["PACKVAULT_READ_PROCESSES"]
        docs[processes], said[processes] = json.loads(result.out)["stats"], result.err
        restored = _restored(tmp_path / f"out{processes}", src)
        assert (restored / "hurt").read_bytes() == bytes(100 * KiB)
        assert (restored / "many" / "f07").read_bytes() == (src / "many" / "f07").read_bytes()
    assert docs[2]["files_by_processes"] == 41 and docs[0]["files_by_processes"] == 0
    assert docs[0]["damaged"] == docs[2]["damaged"] == 1
    assert docs[0]["bytes"] == docs[2]["bytes"] == 40 * 2000 + 100 * KiB
    hurt = str(src / "hurt").lstrip("/")
    for processes in (0, 2):
        assert f"{hurt}: restored with 1 damaged chunk(s) replaced by zeros" in said[processes]


def test_without_processes_the_restore_is_the_same(pv, tmp_path, processes_for_every_round, monkeypatch):
    """No ``/dev/shm`` (AWS Lambda): the pool cannot start, the restore's process does everything."""

    def no_pool(*args, **kwargs):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(restorers, "worker_pool", no_pool)
    src, repo = _backup(pv, tmp_path)
    doc = _extract(pv, repo, "a", tmp_path / "out", processes=2)
    assert doc["stats"]["files_by_processes"] == 0
    assert tree_snapshot(_restored(tmp_path / "out", src)) == tree_snapshot(src)


def test_workers_that_cannot_start_leave_their_files_to_the_restore(tmp_path, pv_env):
    """A worker refuses a target that is not the directory the restore opened (replaced meanwhile): its files
    come back to the restore's process, and the pool is not used again."""
    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.create("pw")
    target = tmp_path / "target"
    target.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    try:
        pool = RestorePool(repo.sealing_kit(), 1, os.fsencode(elsewhere), fd, numeric_ids=False, sparse=True)
        try:
            pool.add("first", (b"", b"name", {}, bytes(32), "pack"), b"sealed")
            results = pool.finish()
        finally:
            pool.close()
    finally:
        os.close(fd)
        repo.close()
    assert results == [("first", LEFT, None, [])]
    assert not pool.usable
    assert list(elsewhere.iterdir()) == []


def _ignores_sigint(pid: int) -> bool:
    import signal

    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return bool(int(fields["SigIgn"].strip(), 16) & (1 << (signal.SIGINT - 1)))


def test_restore_and_backup_workers_leave_ctrl_c_to_the_command(tmp_path, pv_env):
    """A Ctrl-C goes to the whole process group: the workers ignore it, the command handles it."""
    import threading

    from packvault.archive.filereaders import ReaderPool

    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.create("pw")
    target = tmp_path / "target"
    target.mkdir()
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    small = tmp_path / "small"
    small.write_bytes(b"x" * 100)
    readers = ReaderPool(repo.sealing_kit(), 1)
    restore = RestorePool(repo.sealing_kit(), 1, os.fsencode(target), fd, numeric_ids=False, sparse=True)
    try:
        readers.submit([(os.fsencode(small), 100)]).result(timeout=60)
        # restore's pool is started from a reader thread, where no signal handler can be changed
        thread = threading.Thread(target=restore.add, args=("t", (b"", b"n", {}, bytes(32), "p"), b"sealed"))
        thread.start()
        thread.join()
        restore.finish()
        pids = [*readers._pool._processes, *restore._pool._processes]  # noqa: SLF001
        assert len(pids) == 2
        for pid in pids:
            assert _ignores_sigint(pid), f"worker {pid} does not ignore SIGINT"
    finally:
        readers.close()
        restore.close()
        os.close(fd)
        repo.close()


def test_sealed_objects_handed_to_the_processes_do_not_pile_up_in_the_restore(tmp_path, pv_env):
    """A round hands its small files to the processes a batch at a time, at most ``2 * processes`` batches in
    flight: what the restore's own process holds of them stays that bounded however large the round is."""
    import tracemalloc

    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.create("pw")
    target = tmp_path / "target"
    target.mkdir()
    fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    object_size, count = 256 * KiB, 240  # 60 MiB in all; not sealed by this repository: each file fails
    bound = (2 * 1 + 2) * restorers.BATCH_BYTES + 4 * MiB  # in flight, gathering and its copy, slack
    pool = RestorePool(repo.sealing_kit(), 1, os.fsencode(target), fd, numeric_ids=False, sparse=True)
    tracemalloc.start()
    try:
        for n in range(count):
            pool.add(n, (b"", f"f{n}".encode(), {}, bytes(32), "pack"), os.urandom(object_size))
        _, peak = tracemalloc.get_traced_memory()
        results = pool.finish()
    finally:
        tracemalloc.stop()
        pool.close()
        os.close(fd)
        repo.close()
    assert len(results) == count
    assert peak < bound, f"{peak / MiB:.0f} MiB held for {count * object_size / MiB:.0f} MiB handed over"


def test_restore_processes_keep_the_memory_they_free(tmp_path, pv_env):
    """Each restore process tunes glibc's allocator as the restore's own process does: every batch it takes
    is a buffer of up to ``BATCH_BYTES``, which with the defaults was fresh zeroed pages each time."""
    from tests.support import importcount

    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.create("pw")
    st = os.stat(tmp_path)
    start_args = (repo.sealing_kit(), os.fsencode(tmp_path), (st.st_dev, st.st_ino), False, True)
    try:
        tuned = importcount.asked_in_a_worker(restorers._start_worker, start_args, importcount.restore_allocator_tuned)
    finally:
        repo.close()
    assert tuned is importcount.glibc_here()
    assert restorers.allocator_tuned is False  # set in the processes, not here
