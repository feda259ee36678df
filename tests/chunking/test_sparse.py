"""Sparse files: large holes are not read, cut or hashed (``Chunker.chunks_of_sparse``), and the file comes
back bit-exact, its holes still holes."""

from __future__ import annotations

import os
import random

import pytest

from packvault.chunking import chunker as chunker_module
from packvault.chunking.chunker import DEFAULT_MAX, data_regions

MiB = 1024 * 1024


def _sparse_file(path, layout: list[tuple[int, int]], size: int, seed: int = 5) -> bytes:
    """A file of ``size`` bytes with random data at each (offset, length) and holes elsewhere; returns its
    content."""
    rnd = random.Random(seed)
    content = bytearray(size)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in layout:
            data = rnd.randbytes(length)
            f.seek(offset)
            f.write(data)
            content[offset : offset + length] = data
    return bytes(content)


def _holes_supported(path) -> bool:
    st = os.stat(path)
    return st.st_blocks * 512 < st.st_size // 2


LAYOUT = [(0, 1 * MiB), (20 * MiB, 1 * MiB), (21 * MiB + 64 * 1024, 512 * 1024), (40 * MiB, 300_000), (63 * MiB, MiB)]


def test_regions_merge_small_holes_and_skip_large_ones(tmp_path):
    path = tmp_path / "disk.img"
    _sparse_file(path, LAYOUT, 64 * MiB)
    if not _holes_supported(path):
        pytest.skip("this file system does not keep holes")
    fd = os.open(path, os.O_RDONLY)
    try:
        regions = data_regions(fd, 64 * MiB, DEFAULT_MAX)
    finally:
        os.close(fd)
    assert regions is not None
    # the two regions around 20 MiB are one (a 64 KiB hole between them is read as zeros); 40 MiB is alone;
    # the last one reaches the end of the file
    assert [start // MiB for start, _ in regions] == [0, 20, 40, 63]
    assert regions[1][1] >= 21 * MiB + 64 * 1024 + 512 * 1024
    assert regions[-1][1] == 64 * MiB
    # a file without large holes: read it as always
    dense = tmp_path / "dense"
    dense.write_bytes(os.urandom(6 * MiB))
    fd = os.open(dense, os.O_RDONLY)
    try:
        assert data_regions(fd, 6 * MiB, DEFAULT_MAX) is None
    finally:
        os.close(fd)


def test_a_sparse_file_is_backed_up_without_reading_its_holes_and_restored_exactly(pv, tmp_path, monkeypatch):
    src = tmp_path / "src"
    src.mkdir()
    content = _sparse_file(src / "disk.img", LAYOUT, 64 * MiB)
    if not _holes_supported(src / "disk.img"):
        pytest.skip("this file system does not keep holes")
    (src / "dense.img").write_bytes(content)  # the same bytes, not sparse
    read = {"bytes": 0}
    original = chunker_module._Window.readinto

    def counting(self, buffer):
        n = original(self, buffer)
        read["bytes"] += n
        return n

    monkeypatch.setattr(chunker_module._Window, "readinto", counting)
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    # what was read of the sparse file: its data regions, a few MiB, not 64
    assert 2 * MiB < read["bytes"] < 8 * MiB, read
    pv("extract", f"{repo}::a", "--target", tmp_path / "out")
    restored = tmp_path / "out" / str(src).lstrip("/")
    for name in ("disk.img", "dense.img"):
        assert (restored / name).read_bytes() == content
    assert os.stat(restored / "disk.img").st_blocks * 512 < 16 * MiB  # holes stayed holes
    pv("check", repo, "--verify-data")


@pytest.mark.parametrize("size", [0, 1, 4096, 4 * 1024 * 1024, 16 * 1024 * 1024])
def test_a_chunk_is_a_hole_only_when_every_byte_is_zero(size):
    from packvault.archive.outfile import is_zeros

    assert is_zeros(bytes(size))
    assert is_zeros(memoryview(bytes(size)))
    if size:
        for at in (0, size // 2, size - 1):
            data = bytearray(size)
            data[at] = 1
            assert not is_zeros(bytes(data))
    assert not is_zeros(bytes(16 * 1024 * 1024 + 1))  # longer than the comparison buffer: written, not a hole


def test_a_sparse_file_that_changed_size_since_it_was_listed_is_read_as_it_is_now(tmp_path):
    """The holes are laid out up to the size the walk listed: for a file that shrank since, that would store
    zeros the file no longer has; it is read as a stream instead (the backup then warns that it changed)."""
    from packvault.chunking.chunker import Chunker, ChunkerParams

    path = tmp_path / "disk.img"
    _sparse_file(path, LAYOUT, 64 * MiB)
    if not _holes_supported(path):
        pytest.skip("this file system does not keep holes")
    chunker = Chunker(ChunkerParams(), seed=1)
    with open(path, "rb") as f:
        assert chunker.chunks_of_sparse(f, 64 * MiB) is not None
        assert chunker.chunks_of_sparse(f, 70 * MiB) is None  # listed larger than it is now
        os.truncate(path, 40 * MiB + 100)
        assert chunker.chunks_of_sparse(f, 64 * MiB) is None  # shrank since
        data = b"".join(bytes(view) for view in chunker.chunks_of_file(f, 64 * MiB))
    assert data == path.read_bytes() and len(data) == 40 * MiB + 100
