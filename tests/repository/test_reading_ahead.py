"""Small objects read one after another cost a round trip each to a distant bucket: index fragments a client
has not seen, archive entries, and everything ``check`` reads before the packs are asked for together
(``storage.store.load_in_order``, issue 21)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from packvault.repository.repository import Repository
from packvault.storage.local import LocalBackend
from tests.support.settings import env_settings

PASSPHRASE = "correct horse battery staple"
BACKUPS = 3


def _backups(pv, url: str, root: Path) -> None:
    """``BACKUPS`` archives, each with an index fragment of its own."""
    pv("init", url)
    root.mkdir()
    for n in range(BACKUPS):
        (root / f"f{n}").write_bytes(f"content {n}".encode() * 1000)
        pv("create", f"{url}::a{n}", root)


def _loads_meet(monkeypatch, namespace: str, parties: int = BACKUPS) -> list[str]:
    """The first ``parties`` loads from ``namespace`` each wait until all of them are in flight: loads made one
    after another break the barrier (after its timeout), and the command fails.  Returns the names loaded."""
    barrier = threading.Barrier(parties, timeout=30)
    seen: list[str] = []
    lock = threading.Lock()
    load = LocalBackend.load

    def load_together(self, name, *args, **kwargs):
        if name.startswith(f"{namespace}/"):
            with lock:
                seen.append(name)
                turn = len(seen) <= parties
            if turn:
                barrier.wait()
        return load(self, name, *args, **kwargs)

    monkeypatch.setattr(LocalBackend, "load", load_together)
    return seen


def test_a_client_new_to_the_repository_reads_the_index_fragments_at_once(pv, tmp_path, monkeypatch):
    url = f"file://{tmp_path / 'repo'}"
    _backups(pv, url, tmp_path / "src")
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / "fresh-cache"))
    loaded = _loads_meet(monkeypatch, "index")
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock=None)
        assert len(repo.index) > 0
    finally:
        repo.close()
    assert len(loaded) >= BACKUPS


def test_archive_entries_a_client_has_not_seen_are_read_at_once(pv, tmp_path, monkeypatch):
    url = f"file://{tmp_path / 'repo'}"
    _backups(pv, url, tmp_path / "src")
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / "fresh-cache"))
    loaded = _loads_meet(monkeypatch, "archives")
    listing = pv("list", url).out
    assert all(f"a{n}" in listing for n in range(BACKUPS))
    assert len(loaded) == BACKUPS


@pytest.mark.parametrize("namespace", ["index", "archives"])
def test_check_reads_the_small_objects_at_once(pv, tmp_path, monkeypatch, namespace):
    url = f"file://{tmp_path / 'repo'}"
    _backups(pv, url, tmp_path / "src")
    loaded = _loads_meet(monkeypatch, namespace)
    report = json.loads(pv("check", url, "--json").out)
    assert report["problems"] == []
    assert len(loaded) >= BACKUPS


def test_check_lists_each_namespace_once(pv, tmp_path, moto_endpoint, make_s3_url):
    """packs/ (data and metadata together), index/, archives/ (live and soft-deleted together), tombstones/;
    and locks/, listed once by the opening (its requests are counted as well)."""
    url = make_s3_url(moto_endpoint)
    _backups(pv, url, tmp_path / "src")
    pv("delete", f"{url}::a0")
    report = json.loads(pv("check", url, "--verify-data", "--json").out)
    assert report["problems"] == []
    assert report["stats"]["requests"]["LIST"] == 4 + 1
