"""Two backups of the same archive name at the same time: exactly one commits (issue 15).

Four real processes start together against one repository (local directory, moto, LocalStack); each passes
the check for an existing archive before any of them commits, so only the create-only name claim right
before the ``archives/`` entry can tell them apart.
"""

# ruff: noqa: F811

from __future__ import annotations

import json
import os
import random
import subprocess

import pytest

from tests.support.cli import cli_command, pv, pv_env  # noqa: F401  (fixtures)
from tests.support.settings import env_settings

WRITERS = 4


def test_concurrent_creates_of_one_name_commit_once(pv, pv_env, any_backend_url, tmp_path):
    url = any_backend_url
    pv("init", url, "--pack-size", "256K")
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(8)
    for i in range(40):
        (src / f"f{i}").write_bytes(rnd.randbytes(20_000))
    procs = []
    for n in range(WRITERS):
        env = {**os.environ, **pv_env, "PACKVAULT_CACHE_DIR": str(tmp_path / f"cache{n}")}
        procs.append(
            subprocess.Popen(
                cli_command("create", f"{url}::same", src), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    results = [(proc.wait(), proc.stderr.read().decode()) for proc in procs]
    for proc in procs:
        proc.stdout.close()
        proc.stderr.close()
    codes = sorted(rc for rc, _ in results)
    assert codes == [0] + [2] * (WRITERS - 1), results
    for rc, err in results:
        if rc == 2:
            assert "same" in err and len(err.strip().splitlines()) == 1, err
    archives = [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]]
    assert archives == ["same"]
    target = tmp_path / "out"
    pv("extract", f"{url}::same", "--target", target)
    assert sorted(p.name for p in (target / str(src).lstrip("/")).iterdir()) == sorted(p.name for p in src.iterdir())
    # the name can be used again once the archive is deleted
    pv("delete", f"{url}::same")
    pv("create", f"{url}::same", src)
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == ["same"]


def test_a_claim_whose_backup_died_does_not_block_the_name(pv, tmp_path):
    """A backup that died between its claim and its entry: once its lock is gone the name is free again;
    while a backup holding the claim's lock is alive, another backup of that name is refused."""
    from packvault.repository.repository import Repository

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock="shared")
    repo.claim_archive_name("x", bytes(32))  # claimed, entry not written yet: its backup is still running
    result = pv("create", f"{url}::x", src, expect=2)
    assert "right now" in result.err
    repo.close()  # it died (its lock is gone)
    pv("create", f"{url}::x", src)
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == ["x"]


def test_claiming_a_new_name_is_one_create_only_write(pv, pv_env, any_backend_url):
    """The usual case, a name never used: no look for earlier claims first (at 50 ms per request on a
    distant bucket, each request of a commit is felt), only the create-only write itself."""
    from packvault.errors import ArchiveExists
    from packvault.repository.repository import Repository

    pv("init", any_backend_url)
    repo = Repository(any_backend_url, settings=env_settings())
    repo.open(lambda: pv_env["PACKVAULT_PASSPHRASE"])
    try:
        repo.store.backend.reset_request_stats()
        repo.claim_archive_name("never-used", b"\1" * 32)
        stats = repo.request_stats()
        assert stats.get("GET", 0) == 0 and stats.get("LIST", 0) == 0, stats
        # a second archive of that name still finds the first claim
        with pytest.raises(ArchiveExists):
            repo.claim_archive_name("never-used", b"\2" * 32)
    finally:
        repo.close()


def test_a_backup_that_commits_while_another_looks_at_its_claim_still_wins_alone(pv, tmp_path, monkeypatch):
    """The CI race: B finds A's claim, lists the archives before A's entry is there, and A commits and
    releases its lock before B lists the locks.  B must not read that as "A died" and take the name too:
    the locks are listed first, so a lock gone means an entry already there (A commits before it unlocks)."""
    from packvault.errors import ArchiveExists
    from packvault.repository.catalogue import ArchiveCatalogue, ArchiveEntry
    from packvault.repository.repository import Repository

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    passphrase = os.environ["PACKVAULT_PASSPHRASE"]
    first = Repository(url, settings=env_settings())
    first.open(lambda: passphrase, lock="shared")
    first_id = b"\1" * 32
    first.claim_archive_name("x", first_id)
    entry = ArchiveEntry(
        id=first_id, name="x", time="2026-12-04T10:00:00", end="2026-12-04T10:00:01", host="h", user="u"
    )

    second = Repository(url, settings=env_settings())
    second.open(lambda: passphrase, lock="shared")
    listings = ArchiveCatalogue.archive_entries
    committed: list[str] = []

    def commit_first_right_after_listing(self, *, deleted=False, strict=False):
        entries = listings(self, deleted=deleted, strict=strict)
        if self is second and not deleted and not committed:
            committed.append(first.put_archive_entry(entry))
            first.close()  # committed, then unlocked
        return entries

    monkeypatch.setattr(ArchiveCatalogue, "archive_entries", commit_first_right_after_listing)
    try:
        with pytest.raises(ArchiveExists):  # not "the first backup died": it committed
            second.claim_archive_name("x", b"\2" * 32)
    finally:
        second.close()
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == ["x"]


def _opened(url: str):
    from packvault.repository.repository import Repository

    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock="shared")
    assert repo.index is not None  # loaded, as a writer has it: the proofs include its epoch
    return repo


def _entry(name: str, archive_id: bytes):
    from packvault.repository.catalogue import ArchiveEntry

    return ArchiveEntry(id=archive_id, name=name, time="2026-12-05T10:00:00", end="2026-12-05T10:00:01", host="h",
                        user="u")


def test_a_commit_claims_the_name_while_the_lock_is_proven(pv, tmp_path):
    """The claim references no data: it goes out beside the proofs, not after them (one round trip less
    per commit to a distant bucket).  The proof here waits for the claim, which only a concurrent claim
    can satisfy."""
    import threading

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    repo = _opened(url)
    claimed = threading.Event()
    claim, check_lock = repo.claim_archive_name, repo.check_lock

    def claim_and_say(name, archive_id):
        claim(name, archive_id)
        claimed.set()

    def check_lock_after_the_claim(*, verify=False):
        assert claimed.wait(10), "the name was not claimed while the lock was being proven"
        check_lock(verify=verify)

    repo.claim_archive_name, repo.check_lock = claim_and_say, check_lock_after_the_claim
    try:
        repo.commit_archive(_entry("x", b"\1" * 32))
    finally:
        repo.close()
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == ["x"]


def test_a_commit_whose_lock_was_lost_writes_no_entry_and_leaves_the_name_free(pv, tmp_path):
    from packvault.errors import LockLost
    from packvault.storage.layout import LOCKS

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    repo = _opened(url)
    for info in list(repo.store.list(LOCKS)):  # broken by someone else while this writer slept
        repo.store.delete(f"{LOCKS}/{info.name}")
    try:
        with pytest.raises(LockLost):  # the lost lock is what is said, whatever became of the claim
            repo.commit_archive(_entry("x", b"\1" * 32))
    finally:
        repo.close()
    assert json.loads(pv("list", url, "--json").out)["archives"] == []
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    pv("create", f"{url}::x", src)  # a claim its writer could not follow with an entry holds nothing up
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == ["x"]


def test_a_commit_whose_name_is_taken_writes_no_entry(pv, tmp_path):
    from packvault.errors import ArchiveExists

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    first, second = _opened(url), _opened(url)
    try:
        first.claim_archive_name("x", b"\1" * 32)  # its backup is still running
        with pytest.raises(ArchiveExists):
            second.commit_archive(_entry("x", b"\2" * 32))
        assert second.archive_entries() == []
        first.commit_archive(_entry("x", b"\1" * 32))  # a retry of its own claim goes through
    finally:
        second.close()
        first.close()
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == ["x"]


def test_the_last_fragment_goes_out_beside_the_commit_after_its_own_proof(pv, tmp_path):
    """``RepositoryWriter.commit_archive``: the last index fragment is proven first like every fragment,
    then written while the archive's proofs and claim are asked (the fragment here waits for the claim,
    which only a concurrent claim satisfies), and the entry is written only after all of them."""
    import threading

    from packvault.repository.writer import RepositoryWriter

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    repo = _opened(url)
    events: list[str] = []
    claimed = threading.Event()
    prove, claim = repo.prove_unchanged, repo.claim_archive_name
    write_fragment, put_entry = repo.write_fragment, repo.put_archive_entry

    def proving(*args, **kwargs):
        events.append("prove")
        return prove(*args, **kwargs)

    def claiming(name, archive_id):
        claim(name, archive_id)
        events.append("claimed")
        claimed.set()

    def writing_fragment(plaintext):
        assert events == ["prove", "prove"], events  # its own proof, and the commit's being asked
        assert claimed.wait(10), "the fragment was not written beside the claim"
        name = write_fragment(plaintext)
        events.append("fragment")
        return name

    def putting_entry(entry):
        events.append("entry")
        return put_entry(entry)

    repo.prove_unchanged, repo.claim_archive_name = proving, claiming
    repo.write_fragment, repo.put_archive_entry = writing_fragment, putting_entry
    writer = RepositoryWriter(repo)
    try:
        data = os.urandom(5000)
        chunk_id = repo.chunk_id(data)
        writer.put_chunk(chunk_id, data)
        writer.commit_archive(_entry("x", b"\1" * 32))
    finally:
        writer.close()
        repo.close()
    assert events == ["prove", "prove", "claimed", "fragment", "entry"], events
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == ["x"]
    reopened = _opened(url)  # the fragment is stored: another client's index has the chunk
    try:
        assert reopened.index.get(chunk_id) is not None
    finally:
        reopened.close()
