"""Issue 14: damage must never become loss, and a writer that lost its lock must never commit.

Each case damages a repository behind Packvault's back (as a lost pack, an attacker with writer credentials
or a confused operator would) and states what compact, check, repair and create must then do: refuse with
one line and delete nothing, or keep every byte that an archive may still need.  On a local directory and
on S3 (moto).
"""

# ruff: noqa: F811  (the pv fixtures are imported from tests.support.cli and used as arguments)

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.create import ArchiveCreator
from packvault.archive.patterns import ExcludeMatcher
from packvault.archive.walker import FilesystemSource
from packvault.errors import LockLost, PackvaultError
from packvault.repository.index import KIND_DATA, KIND_META
from packvault.repository.locks import LockManager
from packvault.repository.objects import HEADER_SIZE
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository, content_name
from tests.maintenance.test_check import RawStore, build, check_json, pack_rel
from tests.support.cli import pv, pv_env, tree_snapshot  # noqa: F401  (fixtures)
from tests.support.settings import env_settings

KiB = 1024


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.slow)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    request.getfixturevalue("s3_env")
    return request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))


def _files(root: Path, count: int, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"f{i:03d}.bin").write_bytes(rnd.randbytes(size))


def _open(url: str, *, lock: str | None = None) -> Repository:
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock=lock)
    return repo


def _restores(pv, url: str, archive: str, src: Path, target: Path) -> bool:
    result = pv("extract", f"{url}::{archive}", "--target", target, expect=None)
    restored = target / str(src).lstrip("/")
    return result.rc == 0 and restored.exists() and tree_snapshot(restored) == tree_snapshot(src)


def _backup(repo: Repository, name: str, src: Path, *, source=None) -> None:
    creator = ArchiveCreator(repo, name)
    walk = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
    creator.run(source(walk) if source else walk, paths=[str(src)], cmdline=["test"])


def _interleaved(pv, url: str, tmp_path: Path, seed: int) -> Path:
    """Archive 'keep' of files whose packs also hold the (deleted) archive 'both''s other files."""
    src = tmp_path / "src"
    rnd = random.Random(seed)
    src.mkdir()
    for i in range(12):
        (src / f"keep{i}").write_bytes(rnd.randbytes(70 * KiB))
        (src / f"drop{i}").write_bytes(rnd.randbytes(70 * KiB))
    pv("create", f"{url}::both", src)
    for i in range(12):
        (src / f"drop{i}").unlink()
    pv("create", f"{url}::keep", src)
    pv("delete", f"{url}::both")
    return src


# --- 1. compact never deletes the only intact copy ----------------------------------------------------------


def test_compact_refuses_while_the_index_names_a_lost_pack(pv, url, tmp_path, monkeypatch):
    """Two overlapping backups stored everything twice; one pack is lost.  compact must delete nothing
    (the other copies are the only intact ones); check --repair finds them; then compact is safe."""
    pv("init", url, "--pack-size", "256K")
    src = tmp_path / "src"
    _files(src, 8, 90 * KiB, seed=1)
    writers = []
    for name in ("a", "b"):  # both loaded the (empty) index before either finished: every chunk twice
        monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / f"cache-{name}"))
        repo = _open(url, lock="shared")
        repo.index  # noqa: B018
        writers.append((repo, name))
    for repo, name in writers:
        _backup(repo, name, src)
        repo.close()
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / "cache"))
    raw = RawStore(url)
    with _open(url) as repo:
        indexed = {repo.index.get(cid).pack for cid, _ in repo.index.entries()}
        data_packs = [info.name for info in repo.list_packs(KIND_DATA)]
    lost = next(name for name in data_packs if name in indexed)
    raw.delete(raw.find("packs/data", lost))
    before = raw.snapshot()

    result = pv("compact", url, "--min-age", "0", expect=2)
    assert "check --repair" in result.err and len(result.err.strip().splitlines()) == 1
    assert raw.snapshot() == before, "compact must not delete or write anything"

    check_json(pv, url, "--repair")
    pv("compact", url, "--min-age", "0")
    for name in ("a", "b"):
        assert _restores(pv, url, name, src, tmp_path / f"out-{name}"), f"archive {name} lost data"
    assert check_json(pv, url, "--verify-data")[1]["problems"] == []


def test_compact_refuses_stale_index_fragments_put_back(pv, url, tmp_path):
    """Index fragments from before a compact, written back (any writer credential can): the next compact
    must refuse instead of trusting locations in packs that compact already replaced."""
    pv("init", url, "--pack-size", "512K")
    keep = _interleaved(pv, url, tmp_path, seed=4)
    raw = RawStore(url)
    old_fragments = {rel: raw.read(rel) for rel in raw.names("index")}
    report = json.loads(pv("compact", url, "--min-age", "0", "--json").out)["compact"]
    assert report["packs_rewritten"] + report["packs_merged"] > 0
    for rel, data in old_fragments.items():
        raw.write(rel, data)
    before = raw.snapshot()
    result = pv("compact", url, "--min-age", "0", expect=2)
    assert "check --repair" in result.err
    assert raw.snapshot() == before
    check_json(pv, url, "--repair")
    pv("compact", url, "--min-age", "0")
    assert _restores(pv, url, "keep", keep, tmp_path / "out")


def test_copy_forward_verifies_what_it_copied(pv, url, tmp_path):
    """A live object damaged in a pack that compact rewrites: the copy is verified by its id and checksums,
    so compact stops before it deletes anything (the damage is reported, not spread)."""
    pv("init", url, "--pack-size", "512K")
    _interleaved(pv, url, tmp_path, seed=9)
    raw = RawStore(url)
    with _open(url) as repo, ChunkReader(repo) as reader:
        entry = repo.find_archive("keep")
        item = next(i for i in iter_archive_items(reader, load_archive(reader, entry)) if i.get("c"))
        where = repo.index.get(item["c"][0][0])
    raw.flip(raw.find("packs/data", where.pack), where.offset + HEADER_SIZE + 40)
    before = set(raw.names("packs"))
    result = pv("compact", url, "--min-age", "0", expect=2)
    assert "check" in result.err and len(result.err.strip().splitlines()) == 1
    assert before <= set(raw.names("packs")), "no pack deleted after a failed verification"


# --- 3. key-less checks see every damaged byte ------------------------------------------------------------------


def test_repository_only_check_sees_a_flipped_bit_in_a_compacted_pack(pv, url, tmp_path):
    pv("init", url, "--pack-size", "512K")
    _interleaved(pv, url, tmp_path, seed=3)
    raw = RawStore(url)
    before = set(raw.names("packs/data"))
    report = json.loads(pv("compact", url, "--min-age", "0", "--json").out)["compact"]
    assert report["packs_created"] > 0
    created = sorted(set(raw.names("packs/data")) - before)
    rel = next(rel for rel in created if content_name(raw.read(rel)) != rel.rsplit("/", 1)[-1])  # copy-named
    target = rel.rsplit("/", 1)[-1]
    raw.flip(rel, HEADER_SIZE + 100)
    rc, doc = check_json(pv, url, "--repository-only")
    assert rc == 1, doc
    assert any(p.get("pack") == target for p in doc["problems"]), doc["problems"]


# --- 2. a writer that lost its lock never commits -------------------------------------------------------------------


def test_backup_that_lost_its_lock_to_break_lock_and_compact_does_not_commit(pv, url, tmp_path, monkeypatch):
    pv("init", url, "--pack-size", "256K")
    src = tmp_path / "src"
    _files(src, 30, 40 * KiB, seed=5)
    pv("create", f"{url}::old", src)
    pv("delete", f"{url}::old")  # its chunks are garbage now, but still indexed: the next backup dedups
    repo = _open(url, lock="shared")
    repo.index  # noqa: B018
    other_cache = tmp_path / "other-cache"
    own_cache = os.environ["PACKVAULT_CACHE_DIR"]

    def interfering(walk):
        for n, entry in enumerate(walk):
            if n == 10:  # meanwhile, on another machine: break the lock, compact everything unreferenced
                monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(other_cache))
                pv("break-lock", url, "--force")
                pv("compact", url, "--min-age", "0")
                monkeypatch.setenv("PACKVAULT_CACHE_DIR", own_cache)
            yield entry

    with pytest.raises(PackvaultError) as caught:
        _backup(repo, "new", src, source=interfering)
    repo.close()
    assert caught.value.exit_code == 2
    assert "lost" in str(caught.value) or "compact" in str(caught.value)
    listing = json.loads(pv("list", url, "--json").out)["archives"]
    assert [a["name"] for a in listing] == [], "nothing was committed"
    rc, doc = check_json(pv, url)
    assert doc["problems"] == [], doc["problems"]
    pv("create", f"{url}::again", src)  # a rerun works and is complete
    assert _restores(pv, url, "again", src, tmp_path / "out")


def test_backup_whose_lock_expired_while_suspended_does_not_commit(pv, url, tmp_path, monkeypatch):
    """A laptop suspended mid-backup: its monotonic clock stood still, another client saw the lock expire
    (by wall and store clock), removed it and compacted.  On wake-up the backup must not commit."""
    # Short enough to expire within the test, long enough that the compact below (whose refresher must keep
    # its own lock fresh meanwhile) loses its lock only to a stall of over 3.7 s, not to a loaded machine.
    stale = 4.0
    monkeypatch.setenv("PACKVAULT_LOCK_STALE_SECONDS", str(stale))
    monkeypatch.setenv("PACKVAULT_LOCK_REFRESH_SECONDS", "0.25")
    pv("init", url, "--pack-size", "256K")
    src = tmp_path / "src"
    _files(src, 30, 40 * KiB, seed=6)
    pv("create", f"{url}::old", src)
    pv("delete", f"{url}::old")
    repo = _open(url, lock="shared")
    repo.index  # noqa: B018
    frozen = time.monotonic()
    real_monotonic = time.monotonic
    other_cache = tmp_path / "other-cache"
    own_cache = os.environ["PACKVAULT_CACHE_DIR"]

    def suspended(walk):
        for n, entry in enumerate(walk):
            if n == 10:
                # suspend: this backup's refresher does nothing and the monotonic clock stands still while its
                # lock expires by the writer's clock and by the store's (which has a second of slack)
                # (only its own manager: the compact below runs in this process and must keep its lock fresh)
                monkeypatch.setattr(repo.lock_manager, "_refresh_once", lambda: None)
                monkeypatch.setattr("packvault.repository.locks.time.monotonic", lambda: frozen)
                time.sleep(stale + 1.2)
                monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(other_cache))
                monkeypatch.setattr("packvault.repository.locks.time.monotonic", real_monotonic)
                pv("compact", url, "--min-age", "0")  # sees the expired lock, removes it, compacts
                monkeypatch.setenv("PACKVAULT_CACHE_DIR", own_cache)
                monkeypatch.setattr("packvault.repository.locks.time.monotonic", lambda: frozen + 0.1)
            yield entry

    with pytest.raises(PackvaultError) as caught:
        _backup(repo, "new", src, source=suspended)
    monkeypatch.setattr("packvault.repository.locks.time.monotonic", real_monotonic)
    repo.close()
    assert caught.value.exit_code == 2
    assert [a["name"] for a in json.loads(pv("list", url, "--json").out)["archives"]] == []
    assert check_json(pv, url)[1]["problems"] == []


def test_lock_check_counts_wall_clock_time(tmp_path):
    """Monotonic time stops during suspend; the wall clock does not.  A holder whose lock could have looked
    stale to others by wall-clock time has lost it, even if its monotonic clock says otherwise."""
    from packvault.storage.url import store_from_location

    store = store_from_location(f"file://{tmp_path / 'store'}", {})
    store.create()
    store.open()
    manager = LockManager(store, seal=lambda d: d, unseal=lambda d: d, stale_seconds=60, refresh_seconds=10)
    manager.acquire(exclusive=False, wait=1)
    try:
        manager.check(verify=True)
        real_time = time.time
        import packvault.repository.locks as locks_module

        locks_module.time.time = lambda: real_time() + 120  # type: ignore[method-assign]
        try:
            with pytest.raises(LockLost):
                manager.check()
        finally:
            locks_module.time.time = real_time  # type: ignore[method-assign]
    finally:
        manager.release()
        store.close()


# --- 5. repair + compact never delete what a damaged archive may still need -----------------------------------


@pytest.fixture
def fx(pv, url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return build(pv, url, tmp_path)


def test_flipped_bit_in_item_stream_then_repair_and_compact_keeps_the_data(pv, fx):
    items = fx.meta["one"]["items"]
    fx.raw.flip(pack_rel(fx, items), items.offset + items.stored - 5)
    check_json(pv, fx.url, "--repair")
    data_before = set(fx.raw.names("packs/data"))
    result = pv("compact", fx.url, "--min-age", "0", expect=2)
    assert "damaged" in result.err and "'one'" in result.err
    assert set(fx.raw.names("packs/data")) >= data_before, "no data pack may go while archive 'one' is damaged"
    rc, doc = check_json(pv, fx.url, "--verify-data")
    assert rc == 1 and any(p["level"] == "archives" and p.get("archive") == "one" for p in doc["problems"])
    out = pv("extract", f"{fx.url}::one", "--target", fx.tmp / "out-one", expect=1)
    assert "damaged" in out.err
    # the user decides: once the damaged archive is deleted, compact may reclaim
    pv("delete", f"{fx.url}::one")
    pv("compact", fx.url, "--min-age", "0")
    assert check_json(pv, fx.url)[0] in (0, 1)


def test_repaired_files_stay_reported_after_compact(pv, fx):
    chunk = fx.chunks["one"][fx.p("src/a")][0]
    fx.raw.delete(pack_rel(fx, chunk))
    check_json(pv, fx.url, "--repair")
    pv("compact", fx.url, "--min-age", "0")
    rc, doc = check_json(pv, fx.url)
    assert rc == 1, "a repaired archive is still damaged"
    repaired = {(p["archive"], p["path"]) for p in doc["problems"] if p["kind"] == "file-repaired"}
    assert ("one", fx.p("src/a")) in repaired


def test_archive_metadata_lost_then_repair_and_compact_keeps_the_data(pv, fx):
    """Metadata pack lost: repair must not retire the archives in a way that lets compact delete their
    (intact) data; compact refuses until the user deletes the archives it cannot read."""
    archive = fx.meta["one"]["archive"]
    fx.raw.delete(pack_rel(fx, archive))
    data_before = set(fx.raw.names("packs/data"))
    check_json(pv, fx.url, "--repair")
    result = pv("compact", fx.url, "--min-age", "0", expect=2)
    assert "'one'" in result.err
    assert set(fx.raw.names("packs/data")) >= data_before
    rc, doc = check_json(pv, fx.url)
    assert rc == 1 and any(p["kind"] == "archive-meta-lost" for p in doc["problems"])


def test_compact_keeps_archives_metadata_apart(pv, tmp_path):
    """Merging all archives' metadata into one pack means one lost object loses every archive."""
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url, "--pack-size", "1M")
    sources = []
    for n in range(4):
        src = tmp_path / f"src{n}"
        _files(src, 3, 20 * KiB, seed=40 + n)
        pv("create", f"{url}::a{n}", src)
        sources.append(src)
    pv("create", f"{url}::tmp", sources[0])
    pv("delete", f"{url}::tmp")
    pv("compact", url, "--min-age", "0", "--threshold", "1")
    with _open(url) as repo:
        homes = {repo.index.get(entry.id).pack for entry in repo.archive_entries()}
        meta_packs = [info.name for info in repo.list_packs(KIND_META)]
    assert len(homes) == 4, f"the archives' metadata share packs: {homes} of {meta_packs}"


# --- majors: the config is authenticated and redundant --------------------------------------------------------------


def test_flipped_bit_in_config_is_detected_and_recovered(pv, url, tmp_path, caplog):
    pv("init", url)
    src = tmp_path / "src"
    _files(src, 2, 10 * KiB, seed=50)
    pv("create", f"{url}::a", src)
    raw = RawStore(url)
    config = bytearray(raw.read("config/repository"))
    config[config.index(b"repokey") + 2] ^= 0x01  # one bit: "repokey" is no longer what the key says
    raw.write("config/repository", bytes(config))
    rc, bare = check_json(pv, url, "--repository-only")
    assert rc == 1 and {p["kind"] for p in bare["problems"]} == {"config-damaged"}
    result = pv("list", url)  # the copy stands in, with a warning
    assert "a" in result.out and "config/repository is damaged" in caplog.text
    check_json(pv, url, "--repair")
    assert check_json(pv, url, "--repository-only")[1]["problems"] == []
    assert check_json(pv, url)[1]["problems"] == []


def test_config_rewritten_without_the_key_is_refused_and_restored(pv, url, tmp_path):
    from packvault.repository.config import RepoConfig

    pv("init", url)
    raw = RawStore(url)
    original = RepoConfig.decode(raw.read("config/repository"))
    import dataclasses

    forged = dataclasses.replace(original, compression="none", pack_size=64 * 1024)
    raw.write("config/repository", forged.encode())  # a consistent record, checksum and all
    raw.write("config/repository.copy", forged.encode())
    result = pv("list", url, expect=2)
    assert "does not authenticate" in result.err and len(result.err.strip().splitlines()) == 1
    rc, doc = check_json(pv, url)
    assert rc == 1 and "config-unauthenticated" in {p["kind"] for p in doc["problems"]}
    check_json(pv, url, "--repair")  # no authentic version left: nothing is blessed
    pv("list", url, expect=2)


# --- majors: one damaged small object does not stop every command ----------------------------------------------


def test_a_damaged_archive_entry_is_skipped_with_a_warning(pv, url, tmp_path, monkeypatch, caplog):
    pv("init", url)
    src = tmp_path / "src"
    _files(src, 2, 10 * KiB, seed=60)
    pv("create", f"{url}::a", src)
    pv("create", f"{url}::b", src)
    raw = RawStore(url)
    with _open(url) as repo:
        key_a = repo.entry_names()[repo.find_archive("a").id]
    raw.flip(raw.find("archives", key_a), HEADER_SIZE + 3)
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / "cold-cache"))  # a machine without a warm cache
    result = pv("list", url)
    assert "b" in result.out
    assert key_a in caplog.text and "check --repair" in caplog.text
    assert _restores(pv, url, "b", src, tmp_path / "out")
    result = pv("compact", url, "--min-age", "0", expect=2)  # compact must not guess
    assert key_a in result.err or "damaged" in result.err


def test_a_damaged_index_fragment_is_skipped_with_a_warning(pv, url, tmp_path, monkeypatch, caplog):
    pv("init", url)
    src = tmp_path / "src"
    _files(src, 2, 10 * KiB, seed=61)
    pv("create", f"{url}::a", src)
    raw = RawStore(url)
    fragment = raw.names("index")[0]
    raw.flip(fragment, HEADER_SIZE + 3)
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / "cold-cache"))
    assert "a" in pv("list", url).out
    pv("create", f"{url}::b", src)  # works: what the damaged fragment described is stored again
    assert fragment.rsplit("/", 1)[-1] in caplog.text and "check --repair" in caplog.text
    result = pv("compact", url, "--min-age", "0", expect=2)
    assert "check --repair" in result.err
    check_json(pv, url, "--repair")
    pv("compact", url, "--min-age", "0")
    assert _restores(pv, url, "a", src, tmp_path / "out-a")


# --- majors: break-lock ------------------------------------------------------------------------------------------


def test_break_lock_probe_is_sealed_and_harmless_when_left_behind(pv, url, tmp_path, monkeypatch):
    """break-lock writes a probe to read the store clock; if it dies before deleting it, the probe must be a
    readable probe record (ignored by everyone), not a plaintext record others take for an unknown holder."""
    pv("init", url)
    with monkeypatch.context() as patched:
        patched.setattr(LockManager, "_delete_quietly", lambda self, key: False)  # dies before cleaning up
        pv("break-lock", url)
    raw = RawStore(url)
    assert raw.names("locks"), "the probe was left behind"
    with _open(url) as repo:
        manager = repo.new_lock_manager()
        assert all(info.readable for info in manager.list_locks()) and manager.list_locks() == []
    monkeypatch.setenv("PACKVAULT_LOCK_WAIT", "1")
    pv("list", url)
    pv("compact", url, "--min-age", "0")  # an exclusive lock is not blocked by it either


def test_lock_timeout_hint_names_the_break_lock_that_works(pv, url, tmp_path, monkeypatch):
    pv("init", url)
    holder = _open(url, lock="exclusive")  # a holder that seems alive (this process) and blocks
    try:
        monkeypatch.setenv("PACKVAULT_LOCK_WAIT", "0.5")
        result = pv("list", url, expect=2)
        assert "break-lock --force" in result.err
    finally:
        holder.close()


# --- minors ------------------------------------------------------------------------------------------------------


def test_key_files_are_private_from_creation(pv, tmp_path, monkeypatch):
    """Created 0600, not created 0644 and chmod'ed after (anyone could open it in between)."""
    monkeypatch.setenv("PACKVAULT_KEY_FILE", str(tmp_path / "keys" / "repo.key"))
    os.umask(0o022)
    with monkeypatch.context() as patched:
        patched.setattr(os, "chmod", lambda *a, **k: None)  # a chmod after the fact does not count
        patched.setattr(Path, "chmod", lambda *a, **k: None)
        pv("init", tmp_path / "repo", "--encryption", "keyfile")
        pv("key", "export", tmp_path / "repo", tmp_path / "exported.txt")
    assert (tmp_path / "keys" / "repo.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "exported.txt").stat().st_mode & 0o777 == 0o600


# --- 4. check flags archives whose items would leave the restore target ------------------------------------------


def test_check_flags_items_that_would_leave_the_target(pv, tmp_path):
    from tests.archive.crafted import item, write_archive

    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    write_archive(url, "evil", [(item("d", "a"), None), (item("f", "a/../../escape"), b"x"), (item("f", "a/ok"), b"y")])
    rc, doc = check_json(pv, url)
    assert rc == 1
    unsafe = [p for p in doc["problems"] if p["kind"] == "item-unsafe"]
    assert [(p["archive"], p["path"]) for p in unsafe] == [("evil", "a/../../escape")]


def test_repair_does_not_index_objects_of_another_repository(pv, tmp_path, monkeypatch):
    """A pack from another repository (another key) copied in: its objects pass every key-less check, but
    repair without --verify-data must not index them as ours."""
    url = f"file://{tmp_path / 'repo'}"
    other = f"file://{tmp_path / 'other'}"
    src = tmp_path / "src"
    _files(src, 3, 30 * KiB, seed=70)
    pv("init", url)
    pv("create", f"{url}::mine", src)
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "another passphrase entirely")
    pv("init", other)
    (tmp_path / "other-src").mkdir()
    _files(tmp_path / "other-src", 3, 30 * KiB, seed=71)
    pv("create", f"{other}::theirs", tmp_path / "other-src")
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "correct horse battery staple")
    theirs, mine = RawStore(other), RawStore(url)
    foreign = theirs.names("packs/data")
    for rel in foreign:
        mine.write(rel, theirs.read(rel))
    rc, doc = check_json(pv, url, "--repair")
    assert rc == 1
    with _open(url) as repo:
        indexed_packs = {repo.index.packs.names[e.pack] for _, e in repo.index.entries()}
    assert not indexed_packs & {rel.rsplit("/", 1)[-1] for rel in foreign}
    assert _restores(pv, url, "mine", src, tmp_path / "out")


def test_pack_name_problems_clear_after_repair_of_swapped_packs(pv, fx):
    """Two packs whose bytes were swapped: repair points the index at correctly named copies; the
    pack-name problem goes away (the misnamed originals are left to compact)."""
    chunk_a = fx.chunks["one"][fx.p("src/a")][0]
    chunk_b = fx.chunks["one"][fx.p("src/sub/b")][0]
    assert chunk_a.pack != chunk_b.pack
    rel_a, rel_b = pack_rel(fx, chunk_a), pack_rel(fx, chunk_b)
    bytes_a, bytes_b = fx.raw.read(rel_a), fx.raw.read(rel_b)
    fx.raw.write(rel_a, bytes_b)
    fx.raw.write(rel_b, bytes_a)
    rc, doc = check_json(pv, fx.url)
    assert rc == 1 and "pack-name" in {p["kind"] for p in doc["problems"]}
    check_json(pv, fx.url, "--repair")
    rc, after = check_json(pv, fx.url, "--verify-data")
    assert after["problems"] == [], after["problems"]
    assert rc == 0
    pv("compact", fx.url, "--min-age", "0")
    rc, final = check_json(pv, fx.url, "--verify-data")
    assert rc == 0 and final["notes"] == [] or all("pack" not in n for n in final["notes"])
