"""Spool files: hashes computed while writing, anonymous files, gone when closed."""

from __future__ import annotations

import errno
import hashlib
import os

import blake3
import pytest

from packvault.storage.spool import SpoolFile


@pytest.mark.parametrize("background", [False, True], ids=["in-caller", "background"])
def test_hashes_and_offsets_are_those_of_the_written_bytes(tmp_path, background):
    pieces = [os.urandom(n) for n in (0, 1, 4096, 1_000_003, 17, 3_000_000, 5)]
    whole = b"".join(pieces)
    with SpoolFile(tmp_path / "spool", content_hash=blake3.blake3(), background=background) as spool:
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
