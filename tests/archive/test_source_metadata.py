"""What the walk reads of a file besides its data.

Extended attributes of regular files are read with the file's data, and an unchanged file's are read again
only when the files cache saw some (``Entry.xattrs_pending``): they must still reach every archive, and a
change to them must reach the next one.  Files are read and directories listed without moving their access
time (``fsmeta.open_source_file``, ``fsmeta.list_directory``, ``O_NOATIME``), as restic and borg do: reading
is no change, and an unchanged tree backed up twice gives the same items both times."""

from __future__ import annotations

import dataclasses
import errno
import os

import pytest

from packvault.archive import filereaders, fsmeta
from packvault.archive import items as it
from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.create import ArchiveCreator
from packvault.archive.filescache import FilesCache
from packvault.archive.patterns import ExcludeMatcher
from packvault.archive.walker import FilesystemSource
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from tests.support.settings import env_settings

PASSPHRASE = "source-metadata"
LONG_AGO = 1_500_000_000_000_000_000  # before every mtime: a read under relatime would move it


def _xattrs_supported(path) -> bool:
    probe = path / "probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.probe", b"1")
    except OSError:
        return False
    finally:
        probe.unlink()
    return True


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    if not hasattr(os, "setxattr") or not _xattrs_supported(src):
        pytest.skip("no user extended attributes on this file system")
    for i in range(200):  # enough small files for a batch of the reader processes
        (src / f"plain{i:03d}").write_bytes(b"plain %d\n" % i)
    for name in ("tagged-small", "tagged-other"):
        (src / name).write_bytes(b"tagged " + name.encode())
        os.setxattr(src / name, "user.origin", b"value of " + name.encode())
    (src / "tagged-large").write_bytes(os.urandom(filereaders.READER_MAX_FILE + 1))  # read by the backup itself
    os.setxattr(src / "tagged-large", "user.origin", b"large")
    return src


def _open(path, processes: int) -> Repository:
    repo = Repository(str(path), settings=dataclasses.replace(env_settings(), read_processes=processes))
    repo.open(lambda: PASSPHRASE)
    return repo


def _backup(repo_path, processes: int, name: str, src) -> ArchiveCreator:
    repo = _open(repo_path, processes)
    try:
        creator = ArchiveCreator(repo, name)
        source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
        creator.run(source, paths=[str(src)], cmdline=[])
    finally:
        repo.close()
    return creator


def _xattrs_in(repo_path, name: str) -> dict[str, dict]:
    repo = _open(repo_path, 0)
    try:
        entry = next(e for e in repo.archive_entries() if e.name == name)
        with ChunkReader(repo) as reader:
            items = list(iter_archive_items(reader, load_archive(reader, entry)))
    finally:
        repo.close()
    return {os.path.basename(item[it.PATH]).decode(): item.get(it.XATTRS, {}) for item in items}


@pytest.fixture
def repo_path(pv_env, tmp_path, monkeypatch):
    monkeypatch.setattr(filereaders, "READ_WHILE_STARTING", False)  # with processes: every batch to a reader
    path = tmp_path / "repo"
    repo = Repository(str(path), settings=env_settings())
    repo.create(PASSPHRASE)
    repo.close()
    return path


@pytest.mark.parametrize("processes", [0, 2], ids=["read-here", "reader-processes"])
def test_xattrs_reach_every_archive_and_follow_changes(repo_path, tree, processes):
    first = _backup(repo_path, processes, "first", tree)
    assert first.stats.warnings == []
    if processes:
        assert first.stats.files_read_by_readers >= 200
    seen = _xattrs_in(repo_path, "first")
    assert seen["tagged-small"] == {b"user.origin": b"value of tagged-small"}
    assert seen["tagged-large"] == {b"user.origin": b"large"}
    assert seen["plain007"] == {}

    second = _backup(repo_path, processes, "second", tree)
    assert second.stats.files_unchanged == second.stats.nfiles  # nothing read: all from the files cache
    assert _xattrs_in(repo_path, "second") == seen

    # an attribute set on a file that had none, one changed, one removed: each moves the file's ctime
    os.setxattr(tree / "plain007", "user.added", b"later")
    os.setxattr(tree / "tagged-small", "user.origin", b"changed")
    os.removexattr(tree / "tagged-other", "user.origin")
    _backup(repo_path, processes, "third", tree)
    third = _xattrs_in(repo_path, "third")
    assert third["plain007"] == {b"user.added": b"later"}
    assert third["tagged-small"] == {b"user.origin": b"changed"}
    assert third["tagged-other"] == {}
    assert third["tagged-large"] == {b"user.origin": b"large"}


def test_an_unchanged_file_without_xattrs_is_not_asked_for_them(repo_path, tree, monkeypatch):
    _backup(repo_path, 0, "first", tree)
    asked: list[bytes | int] = []
    read_xattrs = fsmeta.read_xattrs

    def counting(target):
        asked.append(target)
        return read_xattrs(target)

    monkeypatch.setattr(fsmeta, "read_xattrs", counting)
    second = _backup(repo_path, 0, "second", tree)
    assert second.stats.files_unchanged == 203

    def files_asked() -> list[str]:
        return sorted(os.path.basename(t).decode() for t in asked if isinstance(t, bytes) and os.path.isfile(t))

    assert files_asked() == ["tagged-large", "tagged-other", "tagged-small"]  # the directory is still asked
    assert _xattrs_in(repo_path, "second")["tagged-other"] == {b"user.origin": b"value of tagged-other"}

    # The cache says the file had some: it is asked, and once it has none (without a ctime change the cache
    # would notice, here: a cache taken over from version 2, which said nothing) it is not asked again.
    repo = _open(repo_path, 0)
    cache = FilesCache(repo.cache)
    path, key = os.fsencode(tree / "plain001"), _cache_key(tree / "plain001")
    cache.remember(path, *key, cache.lookup(path, key).chunks, xattrs=True)
    cache.save()
    repo.close()
    asked.clear()
    _backup(repo_path, 0, "third", tree)
    assert "plain001" in files_asked()
    asked.clear()
    _backup(repo_path, 0, "fourth", tree)
    assert files_asked() == ["tagged-large", "tagged-other", "tagged-small"]


def _cache_key(path) -> tuple[int, int, int, int]:
    st = os.lstat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _items_of(repo_path, name: str) -> list[dict]:
    repo = _open(repo_path, 0)
    try:
        entry = next(e for e in repo.archive_entries() if e.name == name)
        with ChunkReader(repo) as reader:
            return list(iter_archive_items(reader, load_archive(reader, entry)))
    finally:
        repo.close()


def _atime_tree(root):
    root.mkdir()
    for i in range(150):
        (root / f"small{i:03d}").write_bytes(b"small file %d\n" % i)
    (root / "large.bin").write_bytes(os.urandom(filereaders.READER_MAX_FILE + 1))  # read by the backup itself
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "sub" / "deeper" / "name-\xe9").write_bytes(b"listed by the walk")
    (root / "sub" / "link").symlink_to("deeper/name-\xe9")
    return root


@pytest.mark.parametrize("processes", [0, 2], ids=["read-here", "reader-processes"])
def test_a_backup_leaves_access_times_alone(repo_path, tmp_path, processes):
    src = _atime_tree(tmp_path / "src")
    paths = [*src.rglob("*"), src]
    for path in paths:  # listing the tree just now moved the directories' atimes
        os.utime(path, ns=(LONG_AGO, path.lstat().st_mtime_ns), follow_symlinks=False)
    assert _backup(repo_path, processes, "first", src).stats.warnings == []
    moved = [p.name for p in paths if p.lstat().st_atime_ns != LONG_AGO]
    assert moved == ["link"]  # neither the files read nor the directories listed; readlink cannot help it
    # the files cache reads nothing; the items are the same, the link's too: it records no atime
    assert _backup(repo_path, processes, "second", src).stats.warnings == []
    first, second = _items_of(repo_path, "first"), _items_of(repo_path, "second")
    assert first == second
    assert all(i[it.ATIME] == LONG_AGO for i in first if i[it.TYPE] in (it.FILE, it.DIR))
    assert [it.ATIME in i for i in first if i[it.TYPE] == it.SYMLINK] == [False]
    assert any(i[it.PATH].endswith("name-\xe9".encode()) for i in first)  # names come back as they are


def test_a_file_of_someone_else_is_read_as_usual(tmp_path, monkeypatch):
    """``O_NOATIME`` is for the file's owner: for anyone else the kernel says EPERM, and the file is opened
    without it (a file nobody may read still fails as such)."""
    path = tmp_path / "theirs"
    path.write_bytes(b"content")
    real_open = os.open
    noatime = getattr(os, "O_NOATIME", 0)
    if not noatime:
        pytest.skip("no O_NOATIME here")

    def not_the_owner(name, flags, *args, **kwargs):
        if flags & noatime:
            raise PermissionError(errno.EPERM, "Operation not permitted", name)
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", not_the_owner)
    with fsmeta.open_source_file(os.fsencode(path)) as f:
        assert f.read() == b"content"

    def unreadable(name, flags, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", name)

    monkeypatch.setattr(os, "open", unreadable)
    with pytest.raises(PermissionError):
        fsmeta.open_source_file(os.fsencode(path))
