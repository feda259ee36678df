"""compact's requests on S3: nothing read twice that one read (or one listing) already answered (issue 21)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from packvault.repository.index import KIND_DATA, KIND_META
from packvault.repository.repository import Repository
from tests.support.settings import env_settings

KiB = 1024
PASSPHRASE = "correct horse battery staple"


def _archives(pv, repo: str, root: Path, count: int) -> None:
    pv("init", repo, "--pack-size", "256K")
    rnd = random.Random(7)
    root.mkdir()
    for n in range(count):
        (root / "f.bin").write_bytes(rnd.randbytes(50 * KiB))  # each archive's data is its own
        pv("create", f"{repo}::a{n}", root)


def test_compact_lists_the_archives_once(pv, tmp_path, moto_endpoint, make_s3_url):
    """The live entries (for the mark) and the soft-deleted ones (for the purge) come from one listing of
    archives/, taken under the exclusive lock; so do prune --compact's decisions."""
    repo = make_s3_url(moto_endpoint)
    _archives(pv, repo, tmp_path / "src", 3)
    pv("delete", f"{repo}::a0")
    output = json.loads(pv("compact", repo, "--min-age", "0", "--json").out)
    assert output["compact"]["archives_purged"] == 1
    # locks (after writing its own), archives, index, packs (both kinds in one listing); not keys/: the blob
    # that opened the repository last time is read by its name
    assert output["requests"]["LIST"] == 4, output["requests"]
    both = json.loads(pv("prune", repo, "--keep-last", "1", "--compact", "--min-age", "0", "--json").out)
    assert both["compact"]["archives_purged"] == 1
    assert both["requests"]["LIST"] == 4, both["requests"]


def test_compact_purges_what_its_listing_saw_deleted(pv, tmp_path, moto_endpoint, make_s3_url):
    """The purge still removes every soft-deleted entry (and only those) with the one listing."""
    repo = make_s3_url(moto_endpoint)
    _archives(pv, repo, tmp_path / "src", 4)
    pv("delete", f"{repo}::a0", "a2")
    output = json.loads(pv("compact", repo, "--min-age", "0", "--json").out)
    assert output["compact"]["archives_purged"] == 2
    assert [a["name"] for a in json.loads(pv("list", repo, "--json").out)["archives"]] == ["a1", "a3"]
    assert pv("undelete", f"{repo}::a0", expect=2).rc == 2


def test_bumping_the_epoch_after_loading_the_index_reads_nothing(pv, tmp_path, moto_endpoint, make_s3_url):
    """compact loads the index (which reads config/epoch) and then bumps the epoch: the backend has seen the
    current value once, which is all the compare-and-swap needs; a second GET of it is not."""
    url = make_s3_url(moto_endpoint)
    _archives(pv, url, tmp_path / "src", 1)
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock=None)
    try:
        repo.acquire_lock(exclusive=True)
        assert repo.index is not None
        before = repo.request_stats()
        repo.bump_epoch()
        after = repo.request_stats()
    finally:
        repo.close()
    assert (after["GET"] - before["GET"], after["PUT"] - before["PUT"]) == (0, 1)


def test_a_concurrent_epoch_bump_is_still_a_conflict(pv, tmp_path, moto_endpoint, make_s3_url):
    """Without the second read the compare-and-swap still holds: a bump by another client in between fails."""
    from packvault.errors import ConflictError

    url = make_s3_url(moto_endpoint)
    _archives(pv, url, tmp_path / "src", 1)
    first = Repository(url, settings=env_settings())
    first.open(lambda: PASSPHRASE, lock=None)
    other = Repository(url, settings=env_settings())
    other.open(lambda: PASSPHRASE, lock=None)
    try:
        assert first.index is not None
        other.bump_epoch()
        try:
            first.bump_epoch()
        except ConflictError:
            pass
        else:
            raise AssertionError("a lost compare-and-swap of config/epoch went unnoticed")
    finally:
        first.close()
        other.close()


def test_dropped_data_and_metadata_packs_go_in_one_delete(pv, tmp_path, moto_endpoint, make_s3_url):
    """Both kinds of old packs are deleted after the same step (the new index is durable): one batch."""
    repo = make_s3_url(moto_endpoint)
    _archives(pv, repo, tmp_path / "src", 3)
    pv("delete", f"{repo}::a0", "a1")
    output = json.loads(pv("compact", repo, "--min-age", "0", "--json").out)
    report = output["compact"]
    assert report["packs_dropped"] >= 4  # the data pack and the metadata pack of each deleted archive
    # the purged entries, the replaced fragments, every old pack (the lock is released after the count)
    assert output["requests"]["DELETE"] == 3, (output["requests"], report)


def test_the_packs_of_both_kinds_come_from_one_listing(pv, tmp_path, any_backend_url):
    """One tree listing of packs/ split by kind holds exactly what a listing of each kind holds (on S3 one LIST
    for fewer than 1000 packs, where a listing per kind costs two)."""
    url = any_backend_url
    _archives(pv, url, tmp_path / "src", 3)
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock=None)
    try:
        before = repo.request_stats()
        both = repo.list_packs_of_both_kinds()
        after = repo.request_stats()
        for kind in (KIND_DATA, KIND_META):
            assert [info.name for info in both[kind]] == [info.name for info in repo.list_packs(kind)]
            assert [info.size for info in both[kind]] == [info.size for info in repo.list_packs(kind)]
            assert both[kind]
    finally:
        repo.close()
    if not url.startswith("file://"):
        assert after["LIST"] - before["LIST"] == 1


def test_copy_forward_on_s3_reads_the_live_ranges_once_and_writes_one_pack(pv, tmp_path, moto_endpoint, make_s3_url,
                                                                          fault_proxy):
    """A partly dead pack whose live part is one large run: read that run (one GET), verify it, store the new
    pack (one PUT).  A server-side copy of the run would be a multipart upload (start, copy, complete) and then
    a GET of the whole new pack to verify it: more requests, and the bytes are downloaded anyway."""
    url = make_s3_url(moto_endpoint)
    pv("init", url, "--pack-size", "16M")
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(3)
    (src / "kept.bin").write_bytes(rnd.randbytes(6 * 1024 * KiB))
    (src / "gone.bin").write_bytes(rnd.randbytes(6 * 1024 * KiB))
    pv("create", f"{url}::both", src)
    (src / "gone.bin").unlink()
    pv("create", f"{url}::kept", src)
    pv("delete", f"{url}::both")
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["delay"], path_contains="/packs/data/", delay_seconds=0.0)
    output = json.loads(pv("compact", url.replace(moto_endpoint, proxy.endpoint), "--min-age", "0", "--json").out)
    report = output["compact"]
    assert report["packs_rewritten"] == 1 and report["packs_created"] == 1, report
    assert output["requests"]["COPY"] == 0, output["requests"]
    assert proxy.faults["delay"] == 2  # the live run's GET and the new pack's PUT: nothing else on data packs
    pv("extract", f"{url}::kept", "--target", tmp_path / "out")
    restored = tmp_path / "out" / str(src).lstrip("/") / "kept.bin"
    assert restored.read_bytes() == (src / "kept.bin").read_bytes()
    assert json.loads(pv("check", url, "--verify-data", "--json").out)["problems"] == []
