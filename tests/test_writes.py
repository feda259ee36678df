"""Writes into the page cache go in pieces of at most ``WRITE_PIECE`` bytes (``writes.py``): packs spooled by a
backup, files written by a restore in its own process and in its restore processes."""

from __future__ import annotations

import errno
import os

import pytest

from packvault import writes
from packvault.archive import items as it
from packvault.archive import restorers
from packvault.repository.objects import TYPE_DATA
from packvault.repository.repository import Repository
from packvault.storage.spool import SpoolFile
from packvault.writes import WRITE_PIECE
from tests.support.settings import env_settings

MiB = 1024 * 1024


@pytest.fixture
def write_sizes(monkeypatch) -> list[int]:
    """The byte count of every ``pwrite`` and ``writev`` call made from now on, in this process."""
    sizes: list[int] = []
    real_pwrite, real_writev = os.pwrite, os.writev

    def pwrite(fd, data, offset):
        sizes.append(len(memoryview(data)))
        return real_pwrite(fd, data, offset)

    def writev(fd, buffers):
        sizes.append(sum(len(memoryview(b)) for b in buffers))
        return real_writev(fd, buffers)

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "writev", writev)
    return sizes


def test_a_spooled_pack_is_written_in_pieces(tmp_path, write_sizes):
    objects = [os.urandom(n) for n in (3 * MiB, 5_000, 2 * MiB + 17, 700_000, 4 * MiB)]
    with SpoolFile(tmp_path / "spool", md5=False, background=True) as spool:
        for data in objects:
            spool.write(data)
        spool.settle()
        assert spool.read_all() == b"".join(objects)
    assert sum(write_sizes) == sum(map(len, objects))
    assert max(write_sizes) <= WRITE_PIECE


def test_a_restore_writes_a_large_file_in_pieces(pv, tmp_path, monkeypatch, write_sizes):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(9 * MiB))  # several chunks of up to 4 MiB
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    monkeypatch.setenv("PACKVAULT_READ_PROCESSES", "0")
    write_sizes.clear()
    pv("extract", f"{repo}::a", "--target", tmp_path / "out")
    assert (tmp_path / "out" / str(src).lstrip("/") / "big").read_bytes() == (src / "big").read_bytes()
    assert sum(write_sizes) == 9 * MiB
    assert max(write_sizes) <= WRITE_PIECE


def test_a_restore_process_writes_a_large_file_in_pieces(tmp_path, pv_env, write_sizes):
    """What a restore process does with a one-chunk file, done here where the calls can be counted."""
    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.create("pw")
    kit = repo.sealing_kit()
    data = os.urandom(3 * MiB)
    chunk_id = kit.chunk_id_hasher()(data)
    sealed = kit.codec().seal(chunk_id, TYPE_DATA, data)
    target = tmp_path / "target"
    target.mkdir()
    st = os.stat(target)
    item = {it.TYPE: it.FILE, it.MODE: 0o100640, it.MTIME: 1_500_000_000 * 10**9, it.SIZE: len(data)}
    try:
        worker = restorers._Worker(kit, os.fsencode(target), (st.st_dev, st.st_ino), False, True)
        write_sizes.clear()
        outcomes = worker.restore(1, sealed, [(b"", b"file", item, chunk_id, "pack", 0, len(sealed))])
    finally:
        repo.close()
    assert outcomes == [(restorers.RESTORED, None, [])]
    assert (target / "file").read_bytes() == data
    assert sum(write_sizes) == len(data)
    assert max(write_sizes) <= WRITE_PIECE


def _gathered_after_a_head(path, buffers: list[bytes]) -> bytes:
    """What a file holds after a 4-byte head and ``write_gathered(buffers)`` at the offset after it."""
    with open(path, "wb") as f:
        f.write(b"head")
        f.flush()
        writes.write_gathered(f.fileno(), buffers)
    return path.read_bytes()


@pytest.mark.parametrize("sizes", [(0, 1, 5), (WRITE_PIECE + 1, 3, 2 * WRITE_PIECE, 0, 77), (100,) * 5000])
def test_gathered_writes_keep_order_and_bounds(tmp_path, monkeypatch, write_sizes, sizes):
    monkeypatch.setattr(writes, "_IOV_MAX", 16)
    buffers = [os.urandom(n) for n in sizes]
    assert _gathered_after_a_head(tmp_path / "out", buffers) == b"head" + b"".join(buffers)
    assert max(write_sizes, default=0) <= WRITE_PIECE


def test_gathered_writes_go_on_after_short_writes(tmp_path, monkeypatch):
    buffers = [os.urandom(n) for n in (10, 5000, 20_000, 1, 3000, 0, 9000)]
    real_writev = os.writev
    calls = []

    def short_writev(fd, views):
        calls.append(len(views))
        budget = 7_000  # at most this many bytes per call: cuts buffers in the middle
        taken = []
        for view in views:
            if budget <= 0:
                break
            taken.append(view[:budget])
            budget -= len(taken[-1])
        return real_writev(fd, taken)

    monkeypatch.setattr(writes, "_IOV_MAX", 4)
    monkeypatch.setattr(writes.os, "writev", short_writev)
    assert _gathered_after_a_head(tmp_path / "out", buffers) == b"head" + b"".join(buffers)
    assert max(calls) <= 4 and len(calls) > sum(map(len, buffers)) // 7_000


def test_a_gathered_write_that_makes_no_progress_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(writes.os, "writev", lambda fd, views: 0)
    with open(tmp_path / "out", "wb") as f, pytest.raises(OSError) as info:
        writes.write_gathered(f.fileno(), [b"", b"data"])
    assert info.value.errno == errno.EIO


def test_a_positioned_write_that_makes_no_progress_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(writes.os, "pwrite", lambda fd, view, offset: 0)
    with open(tmp_path / "out", "wb") as f, pytest.raises(OSError) as info:
        writes.pwrite_all(f.fileno(), b"data", 0)
    assert info.value.errno == errno.EIO


def test_pwrite_all_writes_everything_at_its_offset(tmp_path, write_sizes):
    data = os.urandom(3 * WRITE_PIECE + 5)
    path = tmp_path / "out"
    path.write_bytes(b"x" * 10)
    fd = os.open(path, os.O_WRONLY)
    try:
        assert writes.pwrite_all(fd, data, 7) == 7 + len(data)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 7 + data
    assert write_sizes == [WRITE_PIECE] * 3 + [5]


def test_the_files_cache_is_saved_in_pieces(tmp_path, write_sizes):
    """Its chunk lists are megabytes at 200,000 files."""
    from packvault.archive.filescache import FilesCache
    from packvault.repository.cache import RepositoryCache

    files = FilesCache(RepositoryCache(tmp_path / "cache", b"\7" * 32))
    for i in range(3000):
        files.remember(b"/f%d" % i, 100 + i, 2000 + i, 3_000_000 + i, 4_000_000 + i,
                       [(os.urandom(32), 1000 + j) for j in range(3)])
    files.save()
    assert sum(write_sizes) >= 3000 * 3 * 32
    assert max(write_sizes) <= WRITE_PIECE
