"""The file system behind ``packvault mount`` at the engine level, without FUSE: what an archive that no file
system walk produces looks like, directory listings resumed a buffer at a time, the bounded chunk cache and
its read-ahead, and trees dropped and rebuilt with the same inode numbers."""

# ruff: noqa: F811

from __future__ import annotations

import errno
import os
import random
import stat
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from packvault.archive.mountfs import MountOptions, RepositoryFS
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from tests.archive.crafted import MTIME, PASSPHRASE, item, write_archive
from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)
from tests.support.settings import env_settings


@pytest.fixture
def url(pv, tmp_path) -> str:
    location = f"file://{tmp_path / 'repo'}"
    pv("init", location)
    return location


@contextmanager
def mounted_fs(location: str, *, archive: str | None = None, **options) -> Iterator[RepositoryFS]:
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock=None)
    warnings: list[str] = []
    try:
        with ChunkReader(repo) as reader:
            entries = [repo.find_archive(archive)] if archive else repo.archive_entries()
            fs = RepositoryFS(
                reader,
                entries,
                single=archive is not None,
                options=MountOptions(**options),
                on_warning=lambda path, message: warnings.append(f"{path}: {message}"),
            )
            fs.prepare()
            fs.seen_warnings = warnings  # type: ignore[attr-defined]
            yield fs
    finally:
        repo.close()


def _names(fs: RepositoryFS, path: bytes) -> list[bytes]:
    return [name for name, *_ in fs.readdir(path)]


def _read_all(fs: RepositoryFS, path: bytes, block: int = 128 * 1024) -> bytes:
    fh = fs.open(path)
    try:
        parts, offset = [], 0
        while True:
            data = fs.read(fh, block, offset)
            if not data:
                return b"".join(parts)
            parts.append(data)
            offset += len(data)
    finally:
        fs.release(fh)


def test_crafted_items_show_what_is_sound_and_skip_the_rest_with_a_warning(url) -> None:
    write_archive(
        url,
        "odd",
        [
            (item("f", "a/b/file1"), b"one"),  # its parents have no item (yet)
            (item("d", "a", m=0o40700, mt=MTIME + 5), None),  # a directory listed after its contents
            (item("f", "a/b/file1"), b"again"),  # the same path twice
            (item("f", "x"), b"x"),
            (item("f", "x/y"), b"below a file"),
            (item("h", "a/hl", h=b"a/b/file1"), None),
            (item("h", "a/bad", h=b"nope"), None),
            (item("f", b"../evil"), b"outside"),
            (item("l", "a/link", l=b"b/file1"), None),
            (item("f", "/".join(["z"] * 1500) + "/deep"), b"deep"),  # deeper than Python's recursion limit
        ],
    )
    with mounted_fs(url, uid=4321, gid=8765) as fs:
        assert _names(fs, b"/") == [b".", b"..", b"odd"]
        assert _names(fs, b"/odd") == [b".", b"..", b"a", b"x", b"z"]
        assert _read_all(fs, ("/odd/" + "/".join(["z"] * 1500) + "/deep").encode()) == b"deep"
        assert _names(fs, b"/odd/a") == [b".", b"..", b"b", b"hl", b"link"]
        a = fs.getattr(b"/odd/a")
        assert stat.S_IMODE(a["st_mode"]) == 0o700 and a["st_mtime"] == MTIME + 5  # the late item's attributes
        assert a["st_nlink"] == 3  # 2 + the subdirectory b
        b = fs.getattr(b"/odd/a/b")  # made up: the mounting user's, mode 0755
        assert stat.S_ISDIR(b["st_mode"]) and stat.S_IMODE(b["st_mode"]) == 0o755
        assert (b["st_uid"], b["st_gid"]) == (4321, 8765)
        assert _read_all(fs, b"/odd/a/b/file1") == b"one"
        file1, hl = fs.getattr(b"/odd/a/b/file1"), fs.getattr(b"/odd/a/hl")
        assert file1["st_ino"] == hl["st_ino"] and file1["st_nlink"] == hl["st_nlink"] == 2
        assert _read_all(fs, b"/odd/a/hl") == b"one"
        assert fs.readlink(b"/odd/a/link") == b"b/file1"
        assert stat.S_ISLNK(fs.getattr(b"/odd/a/link")["st_mode"])
        for missing in (b"/odd/x/y", b"/odd/a/bad", b"/nope", b"/odd/evil"):
            with pytest.raises(OSError) as info:
                fs.getattr(missing)
            assert info.value.errno in (errno.ENOENT, errno.ENOTDIR), missing
        with pytest.raises(OSError) as info:
            fs.open(b"/odd/x", os.O_WRONLY)
        assert info.value.errno == errno.EROFS
        assert fs.report.items_skipped == 4
        warnings = "\n".join(fs.seen_warnings)  # type: ignore[attr-defined]
        for expected in ("a second entry of the same path", "not a directory", "hardlink", "'..' component"):
            assert expected in warnings


def test_a_large_directory_is_listed_in_resumable_pieces(url) -> None:
    names = [f"file-{n:05d}".encode() for n in range(1500)]
    write_archive(url, "big", [(item("f", b"dir/" + name), b"") for name in names])
    with mounted_fs(url, archive="big") as fs:
        listed: list[bytes] = []
        offset = 0
        calls = 0
        while True:
            calls += 1
            piece = []
            for entry in fs.readdir(b"/dir", offset):
                piece.append(entry)
                if len(piece) == 100:  # a full buffer: the kernel asks again from the last offset
                    break
            if not piece:
                break
            listed.extend(name for name, *_ in piece)
            offset = piece[-1][3]
        assert listed == [b".", b".."] + names
        assert calls > 10
        inodes = [ino for _, _, ino, _ in fs.readdir(b"/dir")][2:]
        assert len(set(inodes)) == len(names)


def test_reads_stay_within_the_chunk_cache_and_read_ahead_saves_requests(url) -> None:
    data = random.Random(3).randbytes(7 * 1024 * 1024 + 11)
    write_archive(url, "data", [(item("f", "big"), data)])
    with mounted_fs(url, archive="data", cache_bytes=1024 * 1024, readahead_bytes=0) as fs:
        fh = fs.open(b"/big")
        chunks = len(fs._files[fh].ends)
        assert chunks >= 5
        offset, parts = 0, []
        while offset < len(data):
            part = fs.read(fh, 128 * 1024, offset)
            assert fs.cache.size <= 1024 * 1024
            parts.append(part)
            offset += len(part)
        assert b"".join(parts) == data
        reads_without = fs.reader.stats["reads"]
        rnd = random.Random(4)
        for _ in range(30):  # random reads, cache thrashing: still the right bytes, still within the bound
            start = rnd.randrange(len(data))
            assert fs.read(fh, 200_000, start) == data[start : start + 200_000]
            assert fs.cache.size <= 1024 * 1024
        fs.release(fh)
    with mounted_fs(url, archive="data", cache_bytes=64 * 1024 * 1024) as fs:
        before = fs.reader.stats["reads"]
        assert _read_all(fs, b"/big") == data
        reads_with = fs.reader.stats["reads"] - before
    assert reads_without >= chunks  # one ranged read per chunk
    assert reads_with < chunks / 2  # the following chunks came in the same ranged reads


def test_dropped_trees_come_back_with_the_same_inodes(url) -> None:
    write_archive(url, "one", [(item("f", "d/f"), b"1")])
    write_archive(url, "two", [(item("f", "d/f"), b"2")])
    with mounted_fs(url, trees=1) as fs:
        first = fs.getattr(b"/one/d/f")["st_ino"]
        second = fs.getattr(b"/two/d/f")["st_ino"]
        assert first != second
        assert fs.getattr(b"/one/d/f")["st_ino"] == first
        assert _read_all(fs, b"/one/d/f") == b"1"
        assert fs.report.trees_built == 3  # one, two, one again: at most one tree kept
        assert fs.getattr(b"/one")["st_ino"] == first - 2  # the archive root, item 0
