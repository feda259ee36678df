"""The files cache (``archive/filescache.py``): what it returns, what it forgets, and that a damaged or
half-written cache is never trusted."""

from __future__ import annotations

import os
import time

from packvault.archive.filescache import MAX_AGE, FilesCache
from packvault.repository.cache import RepositoryCache


def _cache(tmp_path) -> RepositoryCache:
    return RepositoryCache(tmp_path / "cache", b"\7" * 32)


def _chunks(n: int, seed: int) -> list[tuple[bytes, int]]:
    return [(bytes([seed % 256, i % 256]) * 16, 1000 + i) for i in range(n)]


def _stat(i: int) -> tuple[int, int, int, int]:
    return (100 + i, 2000 + i, 3_000_000 + i, 4_000_000 + i)


def test_an_unchanged_file_gets_its_chunks_back_after_a_save(tmp_path):
    cache = _cache(tmp_path)
    files = FilesCache(cache)
    for i in range(500):
        files.remember(b"/f%d" % i, *_stat(i), _chunks(i % 4 + 1, i))
    files.save()
    again = FilesCache(cache)
    for i in range(500):
        assert again.lookup(b"/f%d" % i, _stat(i)).chunks == _chunks(i % 4 + 1, i)
    inode, size, mtime, ctime = _stat(3)
    assert again.lookup(b"/f3", (inode, size, mtime + 1, ctime)) is None  # changed: read again
    assert again.lookup(b"/f3", (inode, size, mtime, ctime + 1)) is None
    assert again.lookup(b"/nowhere", _stat(3)) is None


def test_a_file_remembered_again_gets_its_new_chunks_also_after_compaction(tmp_path):
    cache = _cache(tmp_path)
    files = FilesCache(cache)
    for i in range(100):
        files.remember(b"/f%d" % i, *_stat(i), _chunks(3, i))
    files.save()
    for round_ in range(1, 4):  # most lists replaced each time: the garbage passes half, the lists are compacted
        files = FilesCache(cache)
        for i in range(100):
            files.remember(b"/f%d" % i, *_stat(i), _chunks(2, i + 1000 * round_))
        files.save()
        check = FilesCache(cache)
        assert all(check.lookup(b"/f%d" % i, _stat(i)).chunks == _chunks(2, i + 1000 * round_) for i in range(100))
    on_disk = sum(p.stat().st_size for p in cache.path.iterdir() if p.name.endswith(".chunks"))
    assert on_disk <= 2 * 100 * 2 * 36  # compacted: not every list ever written


def test_files_not_seen_for_max_age_backups_are_forgotten(tmp_path):
    cache = _cache(tmp_path)
    files = FilesCache(cache)
    files.remember(b"/kept", *_stat(1), _chunks(1, 1))
    files.remember(b"/gone", *_stat(2), _chunks(1, 2))
    files.save()
    for _ in range(2 * MAX_AGE):
        files = FilesCache(cache)
        assert files.lookup(b"/kept", _stat(1)) is not None
        files.save()
    files = FilesCache(cache)
    assert files.lookup(b"/kept", _stat(1)).chunks == _chunks(1, 1)
    assert files.lookup(b"/gone", _stat(2)) is None


def test_a_damaged_or_half_written_cache_is_not_trusted(tmp_path):
    cache = _cache(tmp_path)
    files = FilesCache(cache)
    for i in range(50):
        files.remember(b"/f%d" % i, *_stat(i), _chunks(2, i))
    files.save()
    chunks_file = next(p for p in cache.path.iterdir() if p.name.endswith(".chunks"))
    # a crash that left chunk lists of another length than the metadata says: nothing is returned
    with open(chunks_file, "r+b") as f:
        f.truncate(36 * 10)
    assert FilesCache(cache).lookup(b"/f1", _stat(1)) is None
    # a metadata file that is garbage
    (cache.path / "files.meta").write_bytes(os.urandom(40))
    assert FilesCache(cache).lookup(b"/f1", _stat(1)) is None


def test_each_save_replaces_the_previous_version_and_the_old_format(tmp_path):
    cache = _cache(tmp_path)
    cache.write("files", b"\x80")  # the msgpack file of earlier versions
    for round_ in range(3):
        files = FilesCache(cache)
        files.remember(b"/f", *_stat(round_), _chunks(1, round_))
        files.save()
    names = sorted(p.name for p in cache.path.iterdir())
    assert len(names) == 3 and "files" not in names, names  # meta, one table, one chunk file


def test_the_cache_costs_about_a_hundred_bytes_per_file(tmp_path):
    cache = _cache(tmp_path)
    files = FilesCache(cache)
    n = 20_000
    for i in range(n):
        files.remember(b"/tree/file-%d" % i, *_stat(i), _chunks(1, i))
    files.save()
    size = sum(p.stat().st_size for p in cache.path.iterdir())
    assert size / n < 150, size / n


def test_the_cache_of_earlier_versions_is_taken_over(tmp_path):
    """Earlier versions kept a msgpack dict of path key to packed (inode, size, mtime, ctime, age) and chunk
    records; an upgrade must not make the next backup read every file again."""
    import struct

    import msgpack

    cache = _cache(tmp_path)
    head = struct.Struct("<QQqqB")
    record = struct.Struct("<32sI")
    old = {
        FilesCache.key(b"/f%d" % i): head.pack(*_stat(i), 3) + b"".join(record.pack(c, s) for c, s in _chunks(2, i))
        for i in range(20)
    }
    cache.write("files", msgpack.packb(old))
    files = FilesCache(cache)
    assert all(files.lookup(b"/f%d" % i, _stat(i)).chunks == _chunks(2, i) for i in range(20))
    files.save()
    assert not cache.file("files").exists()
    assert FilesCache(cache).lookup(b"/f7", _stat(7)).chunks == _chunks(2, 7)


def test_files_a_crashed_save_left_behind_are_removed_once_they_are_old(tmp_path):
    """A save killed between writing its files and replacing the meta file leaves a table, a chunk file or a
    temp file nobody names.  The next save removes them once they are older than a save can take, and
    leaves alone the fresh files of a save still running beside it and other caches' files."""
    cache = _cache(tmp_path)
    files = FilesCache(cache)
    files.remember(b"/f", *_stat(1), _chunks(1, 1))
    files.save()
    cache.path.mkdir(parents=True, exist_ok=True)
    old = ["files.0123456789abcdef.table", "files.0123456789abcdef.chunks", ".files.fedcba9876543210.table.k2j3h4.tmp"]
    fresh = ["files.aaaaaaaaaaaaaaaa.table"]  # a concurrent save, mid-way
    others = ["files-part3.0123456789abcdef.table", "index.0123456789abcdef.table", "files-part3.meta"]
    for name in old + fresh + others:
        (cache.path / name).write_bytes(b"x")
    long_ago = os.stat(cache.path / old[0]).st_mtime - 2 * 3600
    for name in old + others:
        os.utime(cache.path / name, (long_ago, long_ago))
    files = FilesCache(cache)
    assert files.lookup(b"/f", _stat(1)).chunks == _chunks(1, 1)
    files.save()
    names = {p.name for p in cache.path.iterdir()}
    assert not names & set(old), names
    assert set(fresh + others) <= names
    assert FilesCache(cache).lookup(b"/f", _stat(1)).chunks == _chunks(1, 1)


def test_a_backup_writes_its_files_cache_while_the_archive_is_committed(pv_env, tmp_path):
    """The cache is complete once the last file is in: it is written while the archive's entry is being
    stored (round trips to a distant bucket), not after it."""
    import threading

    from packvault.archive.create import ArchiveCreator
    from packvault.archive.patterns import ExcludeMatcher
    from packvault.archive.walker import FilesystemSource
    from packvault.repository.repository import Repository
    from tests.support.settings import env_settings

    src = tmp_path / "src"
    src.mkdir()
    for i in range(50):
        (src / f"f{i}").write_bytes(os.urandom(100 + i))
    Repository(str(tmp_path / "repo"), settings=env_settings()).create("pw")
    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.open(lambda: "pw")
    creator = ArchiveCreator(repo, "a1", files_cache_name="files")
    meta = repo.cache.file("files.meta")
    written_during_commit = threading.Event()
    store_entry = repo.put_archive_entry

    def put_archive_entry(entry):
        deadline = time.monotonic() + 60
        while not meta.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        if meta.exists():
            written_during_commit.set()
        store_entry(entry)

    repo.put_archive_entry = put_archive_entry
    try:
        source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
        creator.run(source, paths=[str(src)], cmdline=[])
    finally:
        repo.close()
    assert written_during_commit.is_set()
    # and what was written is the whole cache: a second backup reads none of the files
    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.open(lambda: "pw")
    try:
        again = ArchiveCreator(repo, "a2", files_cache_name="files")
        source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=again.warn)
        again.run(source, paths=[str(src)], cmdline=[])
    finally:
        repo.close()
    assert again.stats.files_unchanged == 50


def test_the_cache_without_the_xattrs_flag_is_taken_over(tmp_path):
    """Version 2 had no flag saying whether a file had extended attributes: its entries still spare reading
    the files, and count as having some (read again), never as having none."""
    from collections import namedtuple

    import msgpack
    from borghash import HashTableNT

    cache = _cache(tmp_path)
    old_entry = namedtuple("Entry", "inode size mtime_ns ctime_ns seen offset count")
    table = HashTableNT(key_size=16, value_type=old_entry, value_format=old_entry("Q", "Q", "q", "q", "I", "Q", "I"))
    chunks = bytearray()
    for i in range(30):
        listed = b"".join(c + s.to_bytes(4, "little") for c, s in _chunks(2, i))
        table[FilesCache.key(b"/f%d" % i)] = old_entry(*_stat(i), 4, len(chunks), 2)
        chunks += listed
    cache.path.mkdir(parents=True, exist_ok=True)
    table.write(str(cache.file("files.00000000000000aa.table")))
    cache.file("files.00000000000000aa.chunks").write_bytes(chunks)
    meta = {
        "version": 2, "generation": 4, "table": "files.00000000000000aa.table",
        "chunks": "files.00000000000000aa.chunks",
        "table_size": cache.file("files.00000000000000aa.table").stat().st_size,
        "chunks_size": len(chunks), "garbage": 0,
    }
    cache.write("files.meta", msgpack.packb(meta))
    files = FilesCache(cache)
    for i in range(30):
        found = files.lookup(b"/f%d" % i, _stat(i))
        assert found is not None and found.chunks == _chunks(2, i) and found.xattrs is True
    files.remember(b"/new", *_stat(99), _chunks(1, 99), xattrs=False)
    files.save()
    again = FilesCache(cache)
    assert again.lookup(b"/new", _stat(99)).xattrs is False
    assert again.lookup(b"/f3", _stat(3)).chunks == _chunks(2, 3)


def test_a_file_found_without_xattrs_is_remembered_so(tmp_path):
    cache = _cache(tmp_path)
    files = FilesCache(cache)
    files.remember(b"/f", *_stat(1), _chunks(1, 1), xattrs=True)
    files.save()
    files = FilesCache(cache)
    assert files.lookup(b"/f", _stat(1)).xattrs is True
    files.has_no_xattrs(b"/f")
    files.has_no_xattrs(b"/never-remembered")
    files.save()
    found = FilesCache(cache).lookup(b"/f", _stat(1))
    assert found.xattrs is False and found.chunks == _chunks(1, 1)


def test_a_backup_hashes_each_path_once_for_the_files_cache(pv_env, tmp_path, monkeypatch):
    """Looking a file up and remembering it after its read need the same key: a backup computes it once per
    file (``Entry.files_cache_key``), and the second backup finds every file by it."""
    from packvault.archive.create import ArchiveCreator
    from packvault.archive.patterns import ExcludeMatcher
    from packvault.archive.walker import FilesystemSource
    from packvault.repository.repository import Repository
    from tests.support.settings import env_settings

    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(os.urandom(100 + i))
    hashed: list[bytes] = []
    key = FilesCache.key
    monkeypatch.setattr(FilesCache, "key", staticmethod(lambda path: hashed.append(path) or key(path)))
    Repository(str(tmp_path / "repo"), settings=env_settings()).create("pw")
    for name in ("a1", "a2"):
        hashed.clear()
        repo = Repository(str(tmp_path / "repo"), settings=env_settings())
        repo.open(lambda: "pw")
        try:
            creator = ArchiveCreator(repo, name, files_cache_name="files")
            source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
            creator.run(source, paths=[str(src)], cmdline=[])
        finally:
            repo.close()
        assert sorted(hashed) == sorted(os.fsencode(src / f"f{i}") for i in range(40))
    assert creator.stats.files_unchanged == 40
