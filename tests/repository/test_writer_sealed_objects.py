"""Objects sealed elsewhere (a backup's reader processes) go into the packs in runs
(``RepositoryWriter.put_sealed_objects``): each where the index says, in put order, known ones left out,
and the packs cut where one object at a time would have cut them."""

from __future__ import annotations

import random

import pytest

from packvault.repository.index import KIND_DATA
from packvault.repository.objects import TYPE_DATA
from packvault.repository.repository import Repository
from packvault.repository.writer import RepositoryWriter
from tests.support.settings import env_settings

KiB = 1024
PACK_SIZE = 64 * KiB


@pytest.fixture
def repo(pv_env, tmp_path):
    repo = Repository(str(tmp_path / "repo"), settings=env_settings())
    repo.create("sealed-objects", pack_size=PACK_SIZE)
    yield repo
    repo.close()


def seal_elsewhere(repo: Repository, datas: list[bytes]) -> tuple[bytes, list[tuple[bytes, int, int]]]:
    """As a reader process does: sealed with a session of its own, back to back, with their records."""
    kit = repo.sealing_kit()
    codec, chunk_id = kit.codec(), kit.chunk_id_hasher()
    sealed, records = bytearray(), []
    for data in datas:
        cid = chunk_id(data)
        obj = codec.seal(cid, TYPE_DATA, data)
        sealed += obj
        records.append((cid, len(data), len(obj)))
    return bytes(sealed), records


def stored(repo: Repository, chunk_id: bytes) -> tuple[str, int, bytes]:
    location = repo.index.get(chunk_id)
    assert location is not None and location.kind == KIND_DATA
    buf = repo.load_pack_range(KIND_DATA, location.pack, location.offset, location.size)
    return location.pack, location.offset, repo.codec.open(buf, expected_id=chunk_id)[2]


def test_a_run_lands_where_one_object_at_a_time_would(repo):
    rnd = random.Random(8)
    datas = [rnd.randbytes(rnd.randint(1, 12 * KiB)) for _ in range(60)]  # incompressible: ~7 packs
    sealed, records = seal_elsewhere(repo, datas)
    writer = RepositoryWriter(repo)
    try:
        writer.put_sealed_objects(sealed, records[:25])
        writer.put_sealed_objects(memoryview(sealed)[sum(r[2] for r in records[:25]) :], records[25:])
        writer.flush()
        assert writer.stats["chunks_new"] == 60
        assert writer.stats["bytes_new"] == sum(len(d) for d in datas)
        assert writer.stats["bytes_stored"] == len(sealed)
    finally:
        writer.close()
    # the layout one object at a time gives: a pack is full after the object that reaches the pack size
    expected, pack, offset = [], 0, 0
    for _, _, size in records:
        expected.append((pack, offset))
        offset += size
        if offset >= PACK_SIZE:
            pack, offset = pack + 1, 0
    packs: dict[str, int] = {}
    for (cid, _, _), data, (pack_number, offset) in zip(records, datas, expected, strict=True):
        name, at, plaintext = stored(repo, cid)
        assert plaintext == data
        assert packs.setdefault(name, pack_number) == pack_number
        assert at == offset
    assert len(packs) == expected[-1][0] + 1


def test_known_and_repeated_objects_are_left_out_and_the_rest_stay_adjacent(repo):
    a, b, c = b"a" * 3000, b"b" * 5000, b"c" * 7000
    writer = RepositoryWriter(repo)
    try:
        sealed_a, records_a = seal_elsewhere(repo, [a])
        writer.put_sealed_objects(sealed_a, records_a)
        writer.flush()
        first_a = stored(repo, records_a[0][0])
        sealed, records = seal_elsewhere(repo, [a, b, a, c])
        writer.put_sealed_objects(sealed, records)
        writer.flush()
        assert writer.stats["chunks_new"] == 3  # a, then b and c
    finally:
        writer.close()
    assert stored(repo, records[0][0]) == first_a  # a stays where it was
    pack_b, at_b, data_b = stored(repo, records[1][0])
    pack_c, at_c, data_c = stored(repo, records[3][0])
    assert (data_b, data_c) == (b, c)
    assert pack_c == pack_b and at_c == at_b + records[1][2]  # the repeated a between them is not in the pack


def test_objects_sealed_elsewhere_follow_the_chunks_still_being_sealed_here(repo):
    here = random.Random(3).randbytes(20 * KiB)
    sealed, records = seal_elsewhere(repo, [b"x" * 900, b"y" * 800])
    writer = RepositoryWriter(repo)
    try:
        here_id = repo.chunk_id(here)
        assert writer.put_chunk(here_id, here)
        writer.put_sealed_objects(sealed, records)
        writer.flush()
    finally:
        writer.close()
    pack_here, at_here, _ = stored(repo, here_id)
    pack_x, at_x, _ = stored(repo, records[0][0])
    pack_y, at_y, _ = stored(repo, records[1][0])
    assert pack_here == pack_x == pack_y
    assert at_here < at_x < at_y
