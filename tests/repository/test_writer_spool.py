"""The writer spools packs of remote repositories to files: the backup still round-trips, pack names are
still content hashes, and no spool file outlives its upload, whether it succeeded or failed."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from packvault.errors import ServiceUnavailable
from packvault.repository.index import KIND_DATA, KIND_META
from packvault.repository.objects import TYPE_DATA, TYPE_ITEMS
from packvault.repository.repository import Repository, content_name
from packvault.repository.writer import RepositoryWriter
from packvault.storage.spool import SpoolFile
from tests.support.settings import env_settings

KiB = 1024
PASSPHRASE = "writer-spool"


@pytest.fixture
def new_repo(pv_env) -> Callable[..., Repository]:
    """``new_repo(location, pack_size=64 KiB)`` -> a created, open repository (closed after the test)."""
    repos: list[Repository] = []

    def make(location: str, pack_size: int = 64 * KiB) -> Repository:
        repo = Repository(location, settings=env_settings())
        repo.create(PASSPHRASE, pack_size=pack_size)
        repos.append(repo)
        return repo

    yield make
    for repo in repos:
        repo.close()


def record_spools(repo: Repository) -> list[SpoolFile]:
    """Every spool file the writer creates for ``repo`` from now on (closed = removed: they are anonymous)."""
    created: list[SpoolFile] = []
    make = repo.new_pack_spool

    def new_pack_spool(directory=None) -> SpoolFile:
        spool = make(directory)
        created.append(spool)
        return spool

    repo.new_pack_spool = new_pack_spool
    return created


def put_chunks(writer: RepositoryWriter, repo: Repository, count: int, seed: int) -> dict[bytes, tuple[int, bytes]]:
    """Random (incompressible) data chunks and a few metadata chunks; returns id -> (kind, plaintext)."""
    rnd = random.Random(seed)
    chunks = {}
    for i in range(count):
        obj_type = TYPE_ITEMS if i % 7 == 3 else TYPE_DATA
        data = rnd.randbytes(rnd.randint(1, 30 * KiB))
        chunk_id = repo.chunk_id(data)
        assert writer.put_chunk(chunk_id, data, obj_type)
        chunks[chunk_id] = (KIND_DATA if obj_type == TYPE_DATA else KIND_META, data)
    return chunks


def assert_round_trip(repo: Repository, chunks: dict[bytes, tuple[int, bytes]]) -> None:
    for kind in (KIND_DATA, KIND_META):
        for info in repo.list_packs(kind):
            assert content_name(repo.load_pack_range(kind, info.name)) == info.name
    for chunk_id, (kind, data) in chunks.items():
        location = repo.index.get(chunk_id)
        assert location is not None and location.kind == kind
        buf = repo.load_pack_range(kind, location.pack, location.offset, location.size)
        assert repo.codec.open(buf, expected_id=chunk_id)[2] == data


def test_spooled_backup_round_trips_and_leaves_no_spool_file(new_repo, moto_endpoint, make_s3_url, tmp_path):
    location = make_s3_url(moto_endpoint)
    repo = new_repo(location)
    spool_dir = tmp_path / "spool"
    spools = record_spools(repo)
    writer = RepositoryWriter(repo, spool_dir=spool_dir)
    assert writer.spool  # the default for a remote repository
    try:
        chunks = put_chunks(writer, repo, 60, seed=1)
        assert any(not spool.closed for spool in spools)  # packs are being filled on disk, not in memory
        writer.flush()
        assert all(spool.closed for spool in spools)  # each removed right after its upload
    finally:
        writer.close()
    assert writer.stats["packs"] == len(spools) >= 10
    assert list(spool_dir.iterdir()) == []
    assert_round_trip(repo, chunks)
    # a second client sees every chunk through the index fragments the writer wrote
    again = Repository(location, settings=env_settings())
    again.open(lambda: PASSPHRASE, lock=None)
    try:
        assert_round_trip(again, chunks)
    finally:
        again.close()


def test_failed_uploads_remove_their_spool_files(new_repo, moto_endpoint, make_s3_url, fault_proxy, tmp_path):
    proxy = fault_proxy(moto_endpoint, fault_rate=0.0, kinds=["503"])
    url = make_s3_url(moto_endpoint, retry_attempts="2", retry_max_seconds="3")
    repo = new_repo(url.replace(moto_endpoint, proxy.endpoint))
    spool_dir = tmp_path / "spool"
    spools = record_spools(repo)
    writer = RepositoryWriter(repo, spool_dir=spool_dir)
    proxy.fault_rate = 1.0  # the service is down from now on
    try:
        with pytest.raises(ServiceUnavailable):
            put_chunks(writer, repo, 60, seed=2)
            writer.flush()
    finally:
        writer.close()
    assert proxy.faults["503"] >= 2
    assert writer.stats["packs"] == 0
    assert len(spools) >= 2 and all(spool.closed for spool in spools)  # failed and never-uploaded packs
    assert list(spool_dir.iterdir()) == []


def test_local_repository_links_spooled_packs_in_place(new_repo, tmp_path, monkeypatch):
    """A local directory repository spools each pack inside itself and links the file in: the backend's
    ``store`` (which would write a second copy from memory) is never called for a pack."""
    repo = new_repo(f"file://{tmp_path / 'repo'}")
    assert repo.links_pack_spools
    spool_dir = tmp_path / "spool"
    stored_names: list[str] = []
    inner = repo.store.backend.inner
    real_store = inner.store

    def store(name, value):
        stored_names.append(name)
        real_store(name, value)

    monkeypatch.setattr(inner, "store", store)
    spools = record_spools(repo)
    writer = RepositoryWriter(repo, spool_dir=spool_dir)
    assert writer.spool
    try:
        chunks = put_chunks(writer, repo, 40, seed=3)
        writer.flush()
    finally:
        writer.close()
    assert writer.stats["packs"] == len(spools) >= 5
    assert not [name for name in stored_names if name.startswith("packs/")]
    assert repo.store.backend.request_stats()["PUT"] >= len(spools)  # a link counts as the store it replaces
    assert not spool_dir.exists()  # the writer's spool directory is for remote repositories only
    leftovers = [p for p in (tmp_path / "repo").rglob("*") if p.name.endswith(".tmp") or "pv-spool" in p.name]
    assert leftovers == []
    assert_round_trip(repo, chunks)


def test_spooling_to_a_backend_without_file_uploads(new_repo, tmp_path):
    """A local store that checks every write (a quota here) can't take a linked file: it gets the spooled
    bytes in memory, and the spool files still go to the writer's spool directory."""
    repo = new_repo(f"file://{tmp_path / 'repo'}")
    repo.store.backend.inner.quota_limit = 1 << 40
    assert not repo.links_pack_spools
    spool_dir: Path = tmp_path / "spool"
    spools = record_spools(repo)
    writer = RepositoryWriter(repo, spool=True, spool_dir=spool_dir)
    try:
        chunks = put_chunks(writer, repo, 40, seed=4)
        assert spool_dir.is_dir()
        writer.flush()
    finally:
        writer.close()
    assert writer.stats["packs"] == len(spools) >= 5
    assert all(spool.closed for spool in spools)
    assert list(spool_dir.iterdir()) == []
    assert_round_trip(repo, chunks)


def test_a_checkpoint_being_written_does_not_hold_up_the_backup(new_repo, tmp_path):
    """A checkpoint's round trips (the proofs and the fragment's PUT: 100 ms and more to a distant bucket) run
    without the writer's lock, which every chunk lookup of the backup takes."""
    import threading

    repo = new_repo(f"file://{tmp_path / 'repo'}")
    writing, release = threading.Event(), threading.Event()
    write_fragment = repo.write_fragment

    def slow_write_fragment(plaintext: bytes) -> str:
        first = not writing.is_set()  # only the first checkpoint is held: the others keep slots free
        writing.set()
        if first:
            assert release.wait(60)
        return write_fragment(plaintext)

    repo.write_fragment = slow_write_fragment
    # uploads to spare: the backup goes on filling packs while the checkpoint is written
    writer = RepositoryWriter(repo, checkpoint_packs=1, upload_threads=8)
    try:
        chunks = {}
        rnd = random.Random(3)
        while not writing.is_set():  # until a pack is stored and its checkpoint begins
            data = rnd.randbytes(30 * KiB)
            chunk_id = repo.chunk_id(data)
            writer.put_chunk(chunk_id, data)
            chunks[chunk_id] = (KIND_DATA, data)
            assert len(chunks) < 1000
        answered = []
        lookup = threading.Thread(target=lambda: answered.append(writer.known(next(iter(chunks)))))
        lookup.start()
        lookup.join(60)
        assert answered == [True], "a chunk lookup waited for the checkpoint's fragment to be written"
        release.set()
        writer.flush()
    finally:
        release.set()
        writer.close()
    assert writer.stats["fragments"] >= 2
    assert_round_trip(repo, chunks)
