"""What opening an S3 repository costs: every request of it answers something no other request answers
(issue 21: prune + compact must cost no more requests than restic's forget --prune, and every command pays
for the opening)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from packvault.errors import BucketNotFound, WrongPassphrase
from packvault.repository.key_hints import CONFIG_MAC_HINT_NAME, KEY_HINT_NAME, LOCATION_KEY_HINTS
from packvault.repository.repository import Repository
from tests.support.settings import env_settings

PASSPHRASE = "correct horse battery staple"


def _opened(url: str, *, lock: str | None = "exclusive", passphrase: str = PASSPHRASE) -> dict[str, int]:
    """The requests of one opening (config, key, lock) of ``url``, by kind."""
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: passphrase, lock=lock)
        return repo.request_stats()
    finally:
        repo.close()


def test_opening_sends_no_head_the_config_read_answers_it(pv, moto_endpoint, make_s3_url):
    """The bucket's existence is proven by the config's GET (a missing bucket fails that GET with its own
    error), so the opening does not ask for it first."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    assert _opened(url)["HEAD"] == 0


def test_opening_a_repository_in_a_missing_bucket_says_the_bucket_is_missing(s3_env, moto_endpoint):
    url = f"s3://no-such-bucket-pv-{os.getpid()}/repo?endpoint={moto_endpoint}&path_style=1"
    repo = Repository(url, settings=env_settings())
    with pytest.raises(BucketNotFound) as info:
        repo.open(lambda: PASSPHRASE, lock="exclusive")
    repo.close()
    assert "does not exist" in str(info.value) and info.value.exit_code == 2


def test_a_missing_bucket_is_one_line_from_the_cli(pv, s3_env, moto_endpoint):
    result = pv("list", f"s3://no-such-bucket-pv-{os.getpid()}/repo?endpoint={moto_endpoint}&path_style=1", expect=2)
    assert "does not exist" in result.err and len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize("exclusive", [True, False])
def test_taking_the_lock_writes_then_lists_once(pv, moto_endpoint, make_s3_url, exclusive):
    """The listing after our own write decides (docs/locks.md); a listing before it answers nothing that one
    does not, so an uncontended lock costs one PUT and one LIST."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock=None)
        before = repo.request_stats()
        repo.acquire_lock(exclusive=exclusive)
        after = repo.request_stats()
    finally:
        repo.close()
    assert {k: after[k] - before[k] for k in ("PUT", "LIST", "GET", "DELETE")} == {
        "PUT": 1, "LIST": 1, "GET": 0, "DELETE": 0
    }


def _unlock_requests(url: str) -> dict[str, int]:
    return _opened(url, lock=None)


def test_the_key_that_opened_the_repository_last_time_is_read_without_listing_keys(pv, moto_endpoint, make_s3_url):
    """The cache directory remembers the name of the key blob that opened this repository: the next opening
    reads that blob directly (no LIST)."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    _unlock_requests(url)
    second = _unlock_requests(url)
    assert second["LIST"] == 0, second


def test_the_first_opening_after_init_on_this_machine_reads_its_key_without_listing(pv, moto_endpoint, make_s3_url):
    """``init`` remembers the key blob it stored and the config MAC it wrote, as an opening does: the first
    backup after it (usually on the same machine) reads the config and that blob, and nothing else."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    first = _unlock_requests(url)
    assert (first["LIST"], first["GET"], first["HEAD"]) == (0, 2, 0), first


def test_a_remembered_key_that_is_gone_is_found_by_listing(pv, moto_endpoint, make_s3_url):
    """A passphrase change replaces the blob: the remembered name then reads nothing, and the keys are listed."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    _unlock_requests(url)
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock="exclusive")
        repo.reseal_key("another passphrase")
    finally:
        repo.close()
    other = Repository(url, settings=env_settings())
    try:
        other.open(lambda: "another passphrase", lock=None)
        stats = other.request_stats()
    finally:
        other.close()
    assert other.key is not None and stats["LIST"] == 1, stats
    assert _unlock_requests_with(url, "another passphrase")["LIST"] == 0


def test_a_remembered_key_of_another_passphrase_still_lets_every_key_be_tried(pv, moto_endpoint, make_s3_url):
    """Two keys (``key add``): the one remembered is not this passphrase's, so the others are listed and tried."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock="exclusive")
        repo.add_key("second passphrase")
    finally:
        repo.close()
    _unlock_requests(url)  # remembers the first key
    assert _unlock_requests_with(url, "second passphrase")["LIST"] == 1
    with pytest.raises(WrongPassphrase):
        _unlock_requests_with(url, "no such passphrase")


def test_a_damaged_remembered_name_is_ignored(pv, pv_env, moto_endpoint, make_s3_url):
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    _unlock_requests(url)
    hints = list(Path(pv_env["PACKVAULT_CACHE_DIR"]).glob(f"*/{KEY_HINT_NAME}"))
    assert len(hints) == 1
    hints[0].write_bytes(b"../../config/repository\n")
    stats = _unlock_requests(url)
    assert stats["LIST"] == 1, stats


def _unlock_requests_with(url: str, passphrase: str) -> dict[str, int]:
    return _opened(url, lock=None, passphrase=passphrase)


def test_an_opening_reads_no_config_mac_when_the_config_is_the_one_verified_before(
    pv, pv_env, moto_endpoint, make_s3_url
):
    """The config's MAC, once verified, is kept in the cache directory: the next opening compares it with the
    MAC of the config it read (config and key: two GETs, nothing else)."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    for hint in Path(pv_env["PACKVAULT_CACHE_DIR"]).glob(f"*/{CONFIG_MAC_HINT_NAME}"):
        hint.unlink()  # another machine's first opening: init's own hint is not there
    first = _unlock_requests(url)
    assert first["GET"] == 3, first  # config, its MAC, the key
    second = _unlock_requests(url)
    assert {k: second[k] for k in ("GET", "LIST", "HEAD", "PUT")} == {"GET": 2, "LIST": 0, "HEAD": 0, "PUT": 0}


def test_a_config_rewritten_without_the_key_after_an_opening_is_still_refused(pv, moto_endpoint, make_s3_url):
    import dataclasses

    from packvault.errors import IntegrityError
    from packvault.repository.config import RepoConfig
    from tests.maintenance.test_check import RawStore

    url = make_s3_url(moto_endpoint)
    pv("init", url)
    _unlock_requests(url)  # remembers the MAC it verified
    raw = RawStore(url)
    forged = dataclasses.replace(RepoConfig.decode(raw.read("config/repository")), pack_size=64 * 1024)
    raw.write("config/repository", forged.encode())  # a consistent record, checksum and all
    with pytest.raises(IntegrityError, match="does not authenticate"):
        _unlock_requests(url)
    result = pv("list", url, expect=2)
    assert "does not authenticate" in result.err and len(result.err.strip().splitlines()) == 1


def test_a_config_changed_with_the_key_is_verified_against_the_stored_mac(pv, pv_env, moto_endpoint, make_s3_url):
    """The kept MAC no longer matches (here: it is damaged): the stored MAC is read and decides, and the kept
    one is replaced."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    _unlock_requests(url)
    (kept,) = Path(pv_env["PACKVAULT_CACHE_DIR"]).glob(f"*/{CONFIG_MAC_HINT_NAME}")
    kept.write_bytes(b"\0" * 32)
    assert _unlock_requests(url)["GET"] == 3
    assert _unlock_requests(url)["GET"] == 2


def test_a_pack_reading_process_opens_its_store_without_a_head(pv, moto_endpoint, make_s3_url):
    """``check --verify-data``'s workers open a store of their own: its first pack read proves the bucket."""
    from packvault.repository.packreading import PackReadingKit

    url = make_s3_url(moto_endpoint)
    pv("init", url)
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock=None)
        reader = PackReadingKit.of(repo).open_reader()
        try:
            assert reader.request_stats()["HEAD"] == 0
        finally:
            reader.close()
    finally:
        repo.close()


@pytest.mark.parametrize("command", ["extract", "list", "create"])
def test_the_archive_listing_and_the_index_are_asked_at_once(pv, tmp_path, monkeypatch, command):
    """Commands that need an archive and the index ask for both at the same time (each a round trip to a
    distant bucket): the index is not loaded until the archives are being listed."""
    import threading

    from packvault.repository.catalogue import ArchiveCatalogue
    from packvault.repository.index_store import IndexStore

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    pv("create", f"{url}::a", src)
    listing = threading.Event()
    entries, load = ArchiveCatalogue.archive_entries, IndexStore._load_index

    def listed(self, **kwargs):
        listing.set()
        return entries(self, **kwargs)

    def loaded(self):
        assert listing.wait(60), "the index was loaded before the archives were listed"
        return load(self)

    monkeypatch.setattr(ArchiveCatalogue, "archive_entries", listed)
    monkeypatch.setattr(IndexStore, "_load_index", loaded)
    if command == "extract":
        pv("extract", f"{url}::a", "--target", tmp_path / "out")
    elif command == "list":
        assert "f" in pv("list", f"{url}::a").out
    else:
        pv("create", f"{url}::b", src)
    assert listing.is_set()


def test_the_remembered_key_is_read_beside_the_config(pv, moto_endpoint, make_s3_url, monkeypatch):
    """An opening knows the name of the key blob that opened this location last time before the config says
    which repository it is: it reads that blob at the same time as the config.  Here the config's read waits
    until the key's has started, which only a concurrent read allows; still two GETs and no LIST."""
    import threading

    from packvault.repository import key_hints, keyring

    url = make_s3_url(moto_endpoint)
    pv("init", url)
    key_read = threading.Event()
    load_beside, load_config = key_hints.load_beside, keyring.Keyring._load_config

    def loading(store, name, **kwargs):
        if name.startswith("keys/"):
            key_read.set()
        return load_beside(store, name, **kwargs)

    def config_once_the_key_is_asked_for(self):
        assert key_read.wait(60), "the key was not read beside the config"
        return load_config(self)

    monkeypatch.setattr(key_hints, "load_beside", loading)
    monkeypatch.setattr(keyring.Keyring, "_load_config", config_once_the_key_is_asked_for)
    stats = _unlock_requests(url)
    assert (stats["GET"], stats["LIST"]) == (2, 0), stats


def test_a_location_hint_naming_another_blob_is_not_used(pv, pv_env, moto_endpoint, make_s3_url):
    """The blob read by the location's hint counts only if the repository's own hint names it (a location
    reused for a new repository, a hint from another key): otherwise the opening goes on as before."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    hints = list((Path(pv_env["PACKVAULT_CACHE_DIR"]) / LOCATION_KEY_HINTS).glob(f"*/{KEY_HINT_NAME}"))
    assert len(hints) == 1
    hints[0].write_text("ab" * 32)  # a blob this repository does not have
    stats = _unlock_requests(url)
    assert stats["LIST"] == 0 and stats["GET"] == 3, stats  # config, its key, and the hint's vain GET
    assert hints[0].read_text() != "ab" * 32  # put right by the opening
    assert _unlock_requests(url)["GET"] == 2
