"""The local index cache after a backup covers the fragments that backup wrote itself, so the next run on the
same machine reads none of them back; another client's fragments are still fetched."""

from __future__ import annotations

import json
import os
import shutil

import msgpack

from packvault.repository.repository import Repository
from tests.support.settings import env_settings

KiB = 1024


def _gets(pv, *args) -> int:
    return json.loads(pv(*args, "--json").out)["requests"]["GET"]


def _cached_fragments(location: str, passphrase: str) -> tuple[set[str], set[str], os.PathLike]:
    """(fragments named by the local cache, fragments in the repository, the cache directory)."""
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: passphrase, lock=None)
    try:
        meta = msgpack.unpackb(repo.cache.read("index.meta"))
        cache_dir = repo.cache.file("index.meta").parent
        return set(meta["fragments"]), set(repo.list_fragments()), cache_dir
    finally:
        repo.close()


def test_backup_leaves_its_own_fragments_in_the_cache(pv, pv_env, tmp_path, moto_endpoint, make_s3_url, monkeypatch):
    monkeypatch.setenv("PACKVAULT_CHECKPOINT_PACKS", "1")  # a fragment per pack: several per backup
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        (src / f"f{i}").write_bytes(os.urandom(300 * KiB))
    url = make_s3_url(moto_endpoint)
    pv("init", url, "--pack-size", "256K")
    pv("create", f"{url}::one", src)
    cached, present, cache_dir = _cached_fragments(url, pv_env["PACKVAULT_PASSPHRASE"])
    assert len(present) >= 4
    assert cached == present

    (src / "new").write_bytes(os.urandom(300 * KiB))
    warm = _gets(pv, "create", f"{url}::two", src)
    cached, present, cache_dir = _cached_fragments(url, pv_env["PACKVAULT_PASSPHRASE"])
    assert cached == present
    # the same run without the cache reads every fragment back
    shutil.rmtree(cache_dir)
    cold = _gets(pv, "create", f"{url}::three", src)
    assert warm + len(present) <= cold, (warm, cold, len(present))


def test_listing_archives_after_a_backup_reads_no_entry_back(pv, tmp_path, moto_endpoint, make_s3_url, monkeypatch):
    """The entry a backup wrote is cached as it is written; an entry written elsewhere is still fetched."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(os.urandom(10 * KiB))
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    pv("create", f"{url}::one", src)
    pv("create", f"{url}::two", src)
    here = _gets(pv, "list", url)
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / "another-machine"))
    elsewhere = _gets(pv, "list", url)
    # both entries, fetched only where they were not written, and the config's MAC, which that machine has not
    # verified yet (``Keyring._remembered_config_mac``)
    assert elsewhere == here + 2 + 1, (here, elsewhere)
    assert _gets(pv, "list", url) == here  # and cached there from now on
