"""Several passphrases for one repository: key add, list and remove (issue 19)."""

# ruff: noqa: F811

from __future__ import annotations

import json
import os

import pytest

from packvault.crypto.keys import KeyNote, key_blob_note, new_key_material, seal_key, unseal_key
from packvault.repository.packs import content_name
from packvault.repository.repository import Repository
from packvault.storage import layout
from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)
from tests.support.settings import env_settings

FIRST = "correct horse battery staple"  # pv_env's passphrase
SECOND = "a passphrase for the scheduled job"


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.slow)])
def url(request, tmp_path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    request.getfixturevalue("s3_env")
    return request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def repo_url(pv, url, tmp_path) -> str:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"data")
    pv("init", url)
    pv("create", f"{url}::a", src)
    return url


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("packvault: error: "), err
    return lines[0]


def _keys(pv, url: str) -> list[dict]:
    return json.loads(pv("key", "list", "--json", url).out)["keys"]


def _as(monkeypatch, passphrase: str) -> None:
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", passphrase)


def _add_blob_the_old_way(url: str, passphrase: str) -> str:
    """A second key blob as a repository written before notes (or by hand) would hold one."""
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock=None)
    try:
        blob = seal_key(repo.key, passphrase, memory_kib=1024)
        repo.store.store(f"{layout.KEYS}/{content_name(blob)}", blob)
    finally:
        repo.close()
    return content_name(blob)


def _names_of_keys(url: str) -> list[str]:
    repo = Repository(url, settings=env_settings())
    repo.open(None, lock=None)
    try:
        return [name for name, _ in repo.named_key_blobs()]
    finally:
        repo.close()


def test_each_added_passphrase_opens_the_repository(pv, repo_url, monkeypatch):
    (first,) = _keys(pv, repo_url)
    assert first["current"] is True and first["added"] and first["label"] == ""
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", SECOND)
    added = json.loads(pv("key", "add", "--json", repo_url, "--label", "cron job").out)["added"]
    assert added["label"] == "cron job" and added["current"] is False
    keys = _keys(pv, repo_url)
    assert [k["id"] for k in keys] == [first["id"], added["id"]]
    assert [k["current"] for k in keys] == [True, False]
    _as(monkeypatch, SECOND)
    assert [a["name"] for a in json.loads(pv("list", "--json", repo_url).out)["archives"]] == ["a"]
    keys = _keys(pv, repo_url)
    assert [k["current"] for k in keys] == [False, True]
    text = pv("key", "list", repo_url).out
    assert f"{added['id']} *" in text and "cron job" in text
    _as(monkeypatch, "neither of them")
    assert "wrong passphrase" in _one_line(pv("list", repo_url, expect=2).err)


def test_remove_never_the_last_key_and_not_the_one_in_use_without_force(pv, repo_url, monkeypatch):
    (only,) = _keys(pv, repo_url)
    assert "last key" in _one_line(pv("key", "remove", repo_url, only["id"], expect=2).err)
    assert "last key" in _one_line(pv("key", "remove", repo_url, only["id"], "--force", expect=2).err)
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", SECOND)
    second = json.loads(pv("key", "add", "--json", repo_url).out)["added"]
    assert "lock yourself out" in _one_line(pv("key", "remove", repo_url, only["id"], expect=2).err)
    assert "no key with id" in _one_line(pv("key", "remove", repo_url, "ffffffffffffff", expect=2).err)
    assert len(_keys(pv, repo_url)) == 2
    out = json.loads(pv("key", "remove", "--json", repo_url, second["id"][:8]).out)
    assert out["removed"]["id"] == second["id"]
    assert [k["id"] for k in _keys(pv, repo_url)] == [only["id"]]
    _as(monkeypatch, SECOND)
    assert "wrong passphrase" in _one_line(pv("list", repo_url, expect=2).err)
    _as(monkeypatch, FIRST)
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", SECOND)
    pv("key", "add", repo_url)
    assert "Removed key" in pv("key", "remove", repo_url, only["id"], "--force").out
    _as(monkeypatch, SECOND)
    assert len(_keys(pv, repo_url)) == 1
    _as(monkeypatch, FIRST)
    assert "wrong passphrase" in _one_line(pv("list", repo_url, expect=2).err)


def test_change_passphrase_and_import_keep_the_other_keys(pv, repo_url, monkeypatch, tmp_path):
    _add_blob_the_old_way(repo_url, SECOND)
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", "the first one, changed")
    pv("key", "change-passphrase", repo_url)
    _as(monkeypatch, SECOND)  # the other passphrase still opens the repository
    pv("list", repo_url)
    pv("key", "export", repo_url, tmp_path / "second.key")
    pv("key", "import", repo_url, tmp_path / "second.key")
    _as(monkeypatch, "the first one, changed")
    pv("list", repo_url)
    assert len(_keys(pv, repo_url)) == 2


def test_export_writes_the_key_of_the_passphrase_in_use(pv, repo_url, monkeypatch, tmp_path):
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", SECOND)
    pv("key", "add", repo_url)
    _as(monkeypatch, SECOND)
    pv("key", "export", repo_url, tmp_path / "second.key")
    _as(monkeypatch, FIRST)
    second = next(k for k in _keys(pv, repo_url) if not k["current"])
    pv("key", "remove", repo_url, second["id"])
    pv("key", "import", repo_url, tmp_path / "second.key")  # brings the removed passphrase back
    _as(monkeypatch, SECOND)
    pv("list", repo_url)


def test_keys_without_a_note_are_listed_too(pv, repo_url):
    name = _add_blob_the_old_way(repo_url, SECOND)
    old = next(k for k in _keys(pv, repo_url) if k["name"] == name)
    assert (old["added"], old["label"], old["current"]) == (None, None, False)
    assert "-" in pv("key", "list", repo_url).out


def test_keyfile_repositories_say_why_in_one_line(pv, tmp_path, monkeypatch):
    location = tmp_path / "repo"
    pv("init", "--encryption", "keyfile", location)
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", SECOND)
    for args in (("add", location), ("list", location), ("remove", location, "abc")):
        line = _one_line(pv("key", *args, expect=2).err)
        assert "repokey" in line and "key file" in line


def test_the_note_is_sealed_under_the_master_key():
    material = new_key_material(bytes(range(32)))
    blob = seal_key(material, "p", memory_kib=1024, note=KeyNote("2026-12-03T12:00:00+00:00", "people"))
    assert b"people" not in blob
    assert key_blob_note(blob, material) == KeyNote("2026-12-03T12:00:00+00:00", "people")
    assert unseal_key(blob, "p") == material
    assert key_blob_note(seal_key(material, "p", memory_kib=1024), material) is None


def test_unlock_with_several_keys_tries_the_prederived_one_first_and_remembers_only_it(pv, repo_url, monkeypatch):
    """The CLI derives the key early from the parameters it remembered; with several keys that must stay one
    Argon2id run per command, and a failed try on another passphrase's key must not spoil what it remembers."""
    import packvault.crypto.kdf as kdf
    from packvault.crypto.keys import key_blob_params

    second_name = _add_blob_the_old_way(repo_url, SECOND)
    others = 0
    while min(_names_of_keys(repo_url)) == second_name:  # another key comes first in store order
        others += 1
        _add_blob_the_old_way(repo_url, f"other {others}")
    calls: list = []
    real = kdf.derive_key
    monkeypatch.setattr(kdf, "derive_key", lambda text, params: calls.append(params) or real(text, params))
    for prederived in (False, True):
        repo = Repository(repo_url, settings=env_settings())
        repo.open(None, lock=None)
        try:
            blobs = dict(repo.named_key_blobs())
            second_params = key_blob_params(blobs[second_name])
            passphrase = kdf.Passphrase(SECOND)
            if prederived:
                passphrase.prederive(second_params)
            calls.clear()
            repo.unlock(passphrase)
            assert repo.unlocked_key == second_name
            assert passphrase.used_params() == [second_params]
            if prederived:
                assert calls == []  # the other key was not tried first
        finally:
            repo.close()
