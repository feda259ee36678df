"""compact's mark reads metadata packs through a local cache that is authenticated on every read
(``repository/metapacks.py``, issue 21): a backup's client already had those bytes."""

from __future__ import annotations

import json
import random
from pathlib import Path

from packvault.repository.metapacks import DIRECTORY, TAG_SIZE, MetaPackCache
from packvault.repository.repository import Repository
from tests.support.settings import env_settings

KiB = 1024
PASSPHRASE = "correct horse battery staple"


def _backups(pv, repo: str, root: Path, count: int = 3) -> None:
    pv("init", repo, "--pack-size", "256K")
    rnd = random.Random(11)
    root.mkdir(exist_ok=True)
    for n in range(count):
        (root / f"f{n}.bin").write_bytes(rnd.randbytes(40 * KiB))
        pv("create", f"{repo}::a{n}", root)


def _cached(pv_env) -> list[Path]:
    return sorted(p for p in Path(pv_env["PACKVAULT_CACHE_DIR"]).glob(f"*/{DIRECTORY}/*") if not p.name.startswith("."))


def _meta_gets(fault_proxy, endpoint: str, *, fail: bool = False):
    """A proxy that sees every GET of a metadata pack: with ``fail`` each is refused (503), otherwise each is
    counted (a zero-second delay) and forwarded."""
    return fault_proxy(
        endpoint,
        fault_rate=1.0,
        kinds=["503"] if fail else ["delay"],
        methods=["GET"],
        path_contains="/packs/meta/",
        delay_seconds=0.0,
    )


def _prune_compact(pv, url: str, expect: int = 0):
    result = pv("prune", url, "--keep-last", "1", "--compact", "--min-age", "0", "--json", expect=expect)
    return json.loads(result.out) if expect == 0 else result


def test_mark_after_backups_by_this_client_reads_no_metadata_pack(pv, pv_env, tmp_path, moto_endpoint, make_s3_url,
                                                                 fault_proxy):
    url = make_s3_url(moto_endpoint)
    _backups(pv, url, tmp_path / "src")
    assert _cached(pv_env)  # the backups kept their metadata packs
    proxy = _meta_gets(fault_proxy, moto_endpoint, fail=True)
    output = _prune_compact(pv, url.replace(moto_endpoint, proxy.endpoint))
    assert output["compact"]["archives_purged"] == 2
    assert proxy.faults["503"] == 0  # not one GET of a metadata pack
    pv("extract", f"{url}::a2", "--target", tmp_path / "out")
    assert json.loads(pv("check", url, "--verify-data", "--json").out)["problems"] == []


def test_a_metadata_pack_not_cached_is_read_once_and_kept(pv, pv_env, tmp_path, moto_endpoint, make_s3_url,
                                                         fault_proxy):
    """Without the cache (another client, or a cache emptied) the pack is read whole, in one GET (not one for
    the archive's metadata and one for its item stream), and kept for the next run."""
    url = make_s3_url(moto_endpoint)
    _backups(pv, url, tmp_path / "src", count=2)
    for path in _cached(pv_env):
        path.unlink()
    proxy = _meta_gets(fault_proxy, moto_endpoint)
    via = url.replace(moto_endpoint, proxy.endpoint)
    pv("compact", via, "--min-age", "0")
    assert proxy.faults["delay"] == 2  # two archives, each with its own metadata pack: one GET each
    assert len(_cached(pv_env)) == 2
    pv("compact", via, "--min-age", "0")
    assert proxy.faults["delay"] == 2  # the second run read them from the cache


def test_a_corrupted_cache_entry_is_fetched_again(pv, pv_env, tmp_path, moto_endpoint, make_s3_url, fault_proxy):
    url = make_s3_url(moto_endpoint)
    _backups(pv, url, tmp_path / "src")
    for path in _cached(pv_env):
        raw = bytearray(path.read_bytes())
        raw[TAG_SIZE + len(raw) // 2] ^= 0x01  # one flipped bit in the pack's bytes
        path.write_bytes(bytes(raw))
    proxy = _meta_gets(fault_proxy, moto_endpoint)
    output = _prune_compact(pv, url.replace(moto_endpoint, proxy.endpoint))
    assert output["compact"]["archives_purged"] == 2
    assert proxy.faults["delay"] >= 1  # the kept archive's pack came from the store
    assert json.loads(pv("check", url, "--verify-data", "--json").out)["problems"] == []


def test_a_cache_entry_holding_another_packs_bytes_is_not_trusted(pv, pv_env, tmp_path, moto_endpoint, make_s3_url,
                                                                 fault_proxy):
    url = make_s3_url(moto_endpoint)
    _backups(pv, url, tmp_path / "src", count=2)
    first, second = _cached(pv_env)
    first.write_bytes(second.read_bytes())  # a swapped file: authentic bytes, of another pack
    proxy = _meta_gets(fault_proxy, moto_endpoint)
    pv("compact", url.replace(moto_endpoint, proxy.endpoint), "--min-age", "0")
    assert proxy.faults["delay"] == 1
    assert json.loads(pv("check", url, "--verify-data", "--json").out)["problems"] == []


def test_a_cache_of_another_repository_is_never_used(pv, pv_env, tmp_path, moto_endpoint, make_s3_url, fault_proxy):
    """Repository B's cache directory holding a file under the name of B's pack, made by repository A (its
    key, its bytes): B's key does not authenticate it, so B reads its pack from the store."""
    url_a, url_b = make_s3_url(moto_endpoint), make_s3_url(moto_endpoint)
    _backups(pv, url_a, tmp_path / "a", count=1)
    (from_a,) = _cached(pv_env)
    _backups(pv, url_b, tmp_path / "b", count=1)
    (of_b,) = [p for p in _cached(pv_env) if p != from_a]
    of_b.write_bytes(from_a.read_bytes())
    proxy = _meta_gets(fault_proxy, moto_endpoint)
    pv("compact", url_b.replace(moto_endpoint, proxy.endpoint), "--min-age", "0")
    assert proxy.faults["delay"] == 1


def test_the_cache_stays_within_its_bound(pv, tmp_path, moto_endpoint, make_s3_url):
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock=None)
        cache = MetaPackCache(repo, limit_bytes=10 * KiB, max_pack=4 * KiB)
        for n in range(8):
            cache.put(f"{n:064x}", bytes([n]) * 3 * KiB)
        cache.put("f" * 64, b"x" * 5 * KiB)  # above max_pack: not kept
        kept = sorted(p.name for p in cache.path.iterdir())
        assert sum(p.stat().st_size for p in cache.path.iterdir()) <= 10 * KiB
        assert kept == [f"{n:064x}" for n in range(5, 8)]  # the most recent ones
        assert cache._load(f"{7:064x}") == bytes([7]) * 3 * KiB
    finally:
        repo.close()


def test_reading_an_archive_on_the_client_that_made_it_reads_no_metadata_pack(
    pv, pv_env, tmp_path, moto_endpoint, make_s3_url, fault_proxy
):
    """extract, list, info and diff of an archive this client backed up: its metadata and item stream come
    from the authenticated cache (at 50 ms per request, two round trips before the first data GET)."""
    url = make_s3_url(moto_endpoint)
    _backups(pv, url, tmp_path / "src")
    proxy = _meta_gets(fault_proxy, moto_endpoint, fail=True)
    via = url.replace(moto_endpoint, proxy.endpoint)
    pv("extract", f"{via}::a2", "--target", tmp_path / "out")
    restored = tmp_path / "out" / str(tmp_path / "src").lstrip("/")
    assert sorted(p.name for p in restored.iterdir()) == ["f0.bin", "f1.bin", "f2.bin"]
    assert all((restored / p.name).read_bytes() == p.read_bytes() for p in (tmp_path / "src").iterdir())
    assert "f1.bin" in pv("list", f"{via}::a2").out
    pv("info", f"{via}::a1")
    assert "f2.bin" in pv("diff", f"{via}::a1", "a2").out
    assert proxy.faults["503"] == 0  # not one GET of a metadata pack


def test_an_archive_read_with_a_damaged_cache_entry_comes_from_the_store(
    pv, pv_env, tmp_path, moto_endpoint, make_s3_url, fault_proxy
):
    url = make_s3_url(moto_endpoint)
    _backups(pv, url, tmp_path / "src", count=1)
    (cached,) = _cached(pv_env)
    raw = bytearray(cached.read_bytes())
    raw[TAG_SIZE + len(raw) // 2] ^= 0x01
    cached.write_bytes(bytes(raw))
    proxy = _meta_gets(fault_proxy, moto_endpoint)
    pv("extract", f"{url.replace(moto_endpoint, proxy.endpoint)}::a0", "--target", tmp_path / "out")
    assert proxy.faults["delay"] >= 1
    restored = tmp_path / "out" / str(tmp_path / "src").lstrip("/") / "f0.bin"
    assert restored.read_bytes() == (tmp_path / "src" / "f0.bin").read_bytes()
    assert not cached.exists() or cached.read_bytes() != bytes(raw)  # the damaged entry is not kept
