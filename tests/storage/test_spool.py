"""Spool files: hashes computed while writing, anonymous files, gone when closed."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
from pathlib import Path

import blake3
import pytest

from packvault.storage.directwrites import DIRECT_FILE_SYSTEMS, file_system_type
from packvault.storage.spool import SpoolFile


@pytest.mark.parametrize("background, direct", [(False, False), (True, False), (True, True)],
                         ids=["in-caller", "background", "direct"])
def test_hashes_and_offsets_are_those_of_the_written_bytes(tmp_path, background, direct):
    pieces = [os.urandom(n) for n in (0, 1, 4096, 1_000_003, 17, 3_000_000, 5)]
    whole = b"".join(pieces)
    spool_file = SpoolFile(tmp_path / "spool", content_hash=blake3.blake3(), background=background, direct=direct)
    with spool_file as spool:
        offsets = [spool.write(piece) for piece in pieces]
        assert offsets == [sum(map(len, pieces[:i])) for i in range(len(pieces))]
        assert spool.size == len(whole)
        assert spool.md5 == hashlib.md5(whole).digest()
        assert spool.content_digest() == blake3.blake3(whole).hexdigest()
        payload = spool.payload()
        assert payload.size == len(whole) and payload.md5 == hashlib.md5(whole).digest()
        assert payload.read_at(4097, 10) == whole[4097:4107]
        assert payload.reader().read() == whole
        assert spool.read_all() == whole
        spool.write(b"more")  # payload() flushes: later writes are visible to a new payload
        assert spool.payload().read_at(len(whole), 10) == b"more"


def test_a_background_spool_keeps_what_was_written_even_if_the_buffer_changes_later(tmp_path):
    """Buffers that cannot change are gathered by reference; a bytearray (or a writable view of one) is
    copied, so that changing it after ``write`` returned changes nothing in the file."""
    mutable = bytearray(b"m" * 3000)
    backing = bytearray(b"v" * 2000)
    fixed = os.urandom(2_500_000)
    with SpoolFile(tmp_path / "spool", background=True) as spool:
        spool.write(mutable)
        spool.write(memoryview(backing)[500:1500])
        spool.write(memoryview(fixed)[1:])
        spool.write(b"end")
        mutable[:] = b"x" * 3000
        backing[:] = b"y" * 2000
        assert spool.read_all() == b"m" * 3000 + b"v" * 1000 + fixed[1:] + b"end"


def test_spool_file_is_anonymous_and_gone_when_closed(tmp_path):
    directory = tmp_path / "spool"
    spool = SpoolFile(directory)
    spool.write(os.urandom(100_000))
    fd = spool.payload().fd
    assert os.fstat(fd).st_nlink == 0  # no name anywhere: nothing to leak if the process dies
    assert os.fstat(fd).st_size == 100_000
    assert list(directory.iterdir()) == []
    spool.close()
    spool.close()  # twice is fine
    assert spool.closed
    with pytest.raises(OSError):
        os.fstat(fd)  # the descriptor is closed, so the file is gone
    with SpoolFile(directory) as other:
        other.write(b"x")
    assert other.closed
    assert list(directory.iterdir()) == []


def test_content_digest_needs_a_content_hash(tmp_path):
    with SpoolFile(tmp_path) as spool, pytest.raises(ValueError):
        spool.content_digest()


def test_linkable_spool_becomes_a_named_file_atomically(tmp_path):
    data = os.urandom(300_000)
    target = tmp_path / "repo" / "packs" / "data" / "ab" / "abcd"  # parent directories are made as needed
    (tmp_path / "repo" / "packs").mkdir(parents=True)
    with SpoolFile(tmp_path / "repo" / "packs", md5=False, linkable=True) as spool:
        spool.write(data)
        assert list((tmp_path / "repo" / "packs").iterdir()) == []  # anonymous while it is filled
        assert spool.link_as(target, fsync=True)
    assert target.read_bytes() == data  # still there after close: it has a name now
    assert sorted(p.name for p in target.parent.iterdir()) == ["abcd"]  # no temporary name left behind
    with SpoolFile(tmp_path, md5=False) as spool, pytest.raises(ValueError, match="no MD5"):
        spool.payload()  # an upload needs the MD5 this spool was told not to keep


def test_linking_replaces_an_existing_object(tmp_path):
    target = tmp_path / "obj"
    target.write_bytes(b"damaged")
    with SpoolFile(tmp_path, md5=False, linkable=True) as spool:
        spool.write(b"good content")
        assert spool.link_as(target, fsync=False)
    assert target.read_bytes() == b"good content"


def test_a_spool_that_cannot_be_linked_says_so(tmp_path):
    """Python's own TemporaryFile (O_EXCL, or created and unlinked) can't be named: the caller stores a copy."""
    with SpoolFile(tmp_path) as spool:
        spool.write(b"x" * 100)
        assert not spool.link_as(tmp_path / "obj", fsync=False)
    assert not (tmp_path / "obj").exists()
    assert list(tmp_path.iterdir()) == []


def test_a_background_write_that_fails_is_raised_not_lost(tmp_path):
    """A full disk met by the spool thread must reach the caller (its next write, or ``settle`` before the
    file is read back); a spool file that says it holds bytes it never wrote would become a short pack."""
    spool = SpoolFile(tmp_path / "spool", background=True)
    real = spool._file
    # every write fails with ENOSPC; buffered like a real spool file, so a failure can hide in the buffer
    spool._file = open("/dev/full", "wb", buffering=1024 * 1024)  # noqa: SIM115
    try:
        spool.write(os.urandom(1000))  # less than a block: handed off by settle, and must not stay buffered
        with pytest.raises(OSError) as info:
            spool.settle()
        assert info.value.errno == errno.ENOSPC
        with pytest.raises(OSError):
            spool.settle()  # the file misses those bytes for good: asking again must not pass
        with pytest.raises(OSError):
            for _ in range(16):
                spool.write(os.urandom(512 * 1024))
        with pytest.raises(OSError):
            spool.payload()  # reading it back settles first: the failure is raised again, not skipped
    finally:
        spool.close()
        real.close()


def test_a_background_spool_closes_after_its_pending_writes(tmp_path):
    directory = tmp_path / "spool"
    spool = SpoolFile(directory, background=True)
    for _ in range(8):
        spool.write(os.urandom(700_000))
    spool.close()  # waits for the spool thread; nothing writes into the closed descriptor afterwards
    spool.close()
    assert list(directory.iterdir()) == []


def test_a_failed_block_write_in_the_spool_thread_reaches_the_next_write(tmp_path):
    spool = SpoolFile(tmp_path / "spool", background=True)
    real = spool._file
    spool._file = open("/dev/full", "wb", buffering=1024 * 1024)  # noqa: SIM115 - ENOSPC on every write
    try:
        with pytest.raises(OSError) as info:
            for _ in range(64):  # blocks are handed off as they fill; a failed one is raised by a later write
                spool.write(os.urandom(256 * 1024))
        assert info.value.errno == errno.ENOSPC
    finally:
        spool.close()
        real.close()


def _direct_io_here(directory) -> bool:
    """A local disk's file system that opens files for direct I/O (where spool files are written so)."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_DIRECT)
    except OSError:
        return False
    try:
        return file_system_type(fd) in DIRECT_FILE_SYSTEMS
    finally:
        os.close(fd)


def _is_direct(spool: SpoolFile) -> bool:
    return bool(fcntl.fcntl(spool._file.fileno(), fcntl.F_GETFL) & os.O_DIRECT)


@pytest.mark.parametrize("linkable", [True, False], ids=["linkable", "anonymous"])
def test_a_direct_spool_writes_past_the_page_cache_and_hashes_what_it_wrote(tmp_path, linkable):
    """Sizes around the staging buffer's, a digest asked for midway (the staged tail is written, padded, and
    written again with what follows), and the file linked in holds exactly the bytes, nothing padded."""
    directory = tmp_path / "packs"
    directory.mkdir()
    if not _direct_io_here(directory):
        pytest.skip("no direct I/O on this file system")
    buffer = 1024 * 1024
    sizes = (1, buffer - 1, 2, buffer, 4095, 4097, 3 * buffer + 5, 0, 700)
    pieces = [os.urandom(n) for n in sizes]
    spool = SpoolFile(directory, content_hash=blake3.blake3(), md5=False, linkable=linkable, background=True,
                      direct=True)
    with spool:
        assert _is_direct(spool)
        for i, piece in enumerate(pieces):
            spool.write(piece)
            if i in (1, 4):  # a digest midway: the hash of everything so far, and the file that long
                so_far = b"".join(pieces[: i + 1])
                assert spool.content_digest() == blake3.blake3(so_far).hexdigest()
                assert os.fstat(spool._file.fileno()).st_size == len(so_far)
        whole = b"".join(pieces)
        assert spool.content_digest() == blake3.blake3(whole).hexdigest()
        assert _is_direct(spool)  # the digest read nothing back
        if linkable:
            assert spool.link_as(directory / "pack", fsync=True)
            assert (directory / "pack").read_bytes() == whole
        assert spool.read_all() == whole  # reading ends direct writing
        assert not _is_direct(spool)
        spool.write(b"tail")  # and later writes are ordinary appends
        assert spool.read_all() == whole + b"tail"


def test_a_direct_spool_whose_writes_are_refused_goes_on_buffered(tmp_path, monkeypatch):
    """A file system that takes the flag and refuses the writes (an alignment it needs larger than 4 KiB):
    the same bytes are written through the page cache, and the file is whole."""
    directory = tmp_path / "packs"
    directory.mkdir()
    if not _direct_io_here(directory):
        pytest.skip("no direct I/O on this file system")
    real_pwrite = os.pwrite
    refused = []

    def pwrite(fd, data, offset):
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            refused.append(offset)
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    pieces = [os.urandom(n) for n in (3_000_000, 10, 1_500_000)]
    with SpoolFile(directory, content_hash=blake3.blake3(), md5=False, linkable=True, background=True,
                   direct=True) as spool:
        for piece in pieces:
            spool.write(piece)
        assert spool.content_digest() == blake3.blake3(b"".join(pieces)).hexdigest()
        assert refused == [0]  # refused once, buffered from there on
        assert not _is_direct(spool)
        assert spool.link_as(directory / "pack", fsync=True)
        assert (directory / "pack").read_bytes() == b"".join(pieces)


def test_a_spool_on_a_file_system_without_direct_io_is_written_buffered(tmp_path, monkeypatch):
    real_fcntl = fcntl.fcntl

    def no_direct(fd, cmd, arg=0):
        if cmd == fcntl.F_SETFL and arg & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_fcntl(fd, cmd, arg)

    monkeypatch.setattr(fcntl, "fcntl", no_direct)
    data = os.urandom(2_500_000)
    with SpoolFile(tmp_path, content_hash=blake3.blake3(), md5=False, linkable=True, background=True,
                   direct=True) as spool:
        spool.write(data)
        assert not _is_direct(spool)
        assert spool.content_digest() == blake3.blake3(data).hexdigest()
        assert spool.read_all() == data


def test_direct_writing_is_for_local_disks_only(tmp_path):
    """tmpfs (and NFS, FUSE) files are written through the page cache even where they would take the flag:
    a direct write there gains nothing, or waits for a server."""
    shm = Path("/dev/shm")
    fd = os.open(shm, os.O_RDONLY) if shm.is_dir() else None
    if fd is None:
        pytest.skip("no /dev/shm here")
    try:
        kind = file_system_type(fd)
    finally:
        os.close(fd)
    assert kind not in DIRECT_FILE_SYSTEMS
    data = os.urandom(1_500_000)
    with SpoolFile(shm, content_hash=blake3.blake3(), md5=False, background=True, direct=True) as spool:
        spool.write(data)
        assert not _is_direct(spool)
        assert spool.content_digest() == blake3.blake3(data).hexdigest()
        assert spool.read_all() == data
