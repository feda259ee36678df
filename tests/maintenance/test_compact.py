"""compact: garbage collection, copy-forward, safety margin, stale caches, duplicates, crash safety (issue 5)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from packvault.archive.create import ArchiveCreator
from packvault.archive.patterns import ExcludeMatcher
from packvault.archive.walker import FilesystemSource
from packvault.repository.index import KIND_DATA
from packvault.repository.objects import iter_headers
from packvault.repository.repository import Repository
from tests.support.cli import cli_command, tree_snapshot
from tests.support.settings import env_settings

KiB = 1024


def _make_files(root: Path, count: int, size: int, seed: int) -> None:
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"f{i:03d}.bin").write_bytes(rnd.randbytes(size))


def _repo_bytes(location: str) -> int:
    repo = Repository(location, settings=env_settings())
    repo.open(None)
    try:
        return sum(info.size for kind in (0, 1) for info in repo.list_packs(kind))
    finally:
        repo.close()


def _restore_and_compare(pv, location: str, archive: str, src: Path, target: Path) -> None:
    pv("extract", f"{location}::{archive}", "--target", target)
    assert tree_snapshot(target / str(src).lstrip("/")) == tree_snapshot(src)


@pytest.mark.parametrize("any_backend_url", ["file", "moto"], indirect=True)
def test_delete_then_compact_frees_space_and_keeps_the_rest(pv, tmp_path, any_backend_url, request):
    if "s3://" in any_backend_url:
        request.getfixturevalue("s3_env")
    repo = any_backend_url
    pv("init", repo, "--pack-size", "256K")
    sources = []
    for n in range(4):
        src = tmp_path / f"src{n}"
        _make_files(src, 6, 96 * KiB, seed=n)
        pv("create", f"{repo}::a{n}", src)
        sources.append(src)
    # one archive holding data of two others -> mixed packs once those are gone
    pv("create", f"{repo}::mix", sources[0], sources[3])
    before = _repo_bytes(repo)
    pv("delete", f"{repo}::a1", "a2", "a3")
    output = json.loads(pv("compact", repo, "--min-age", "0", "--json").out)
    report = output["compact"]
    assert report["packs_dropped"] > 0
    if "s3://" in repo:  # what compact deletes it has just listed: no HEAD before each DELETE
        # one multi-object delete each for the purged entries, the replaced fragments and the old packs of
        # both kinds (all gone: bytes_after below is what is stored); the lock is released after the count
        assert report["archives_purged"] == 3 and report["packs_dropped"] > 3
        assert output["requests"]["DELETE"] == 3, output["requests"]
        assert output["requests"]["HEAD"] <= 1, output["requests"]  # the bucket, on open
        # each namespace listed once (locks: before and after writing its own; archives: live and deleted)
        assert output["requests"]["LIST"] <= 9, output["requests"]
    after = _repo_bytes(repo)
    assert report["bytes_after"] == after  # counted from its own listing and writes, exactly what is stored
    assert report["bytes_freed"] == report["bytes_before"] - after
    assert after < before * 0.75
    live = report["live_bytes"]
    assert after <= live * 1.12 + 64 * KiB  # within the 10 % threshold (plus small metadata packs)
    _restore_and_compare(pv, repo, "a0", sources[0], tmp_path / "out0")
    _restore_and_compare(pv, repo, "mix", sources[3], tmp_path / "outmix")
    assert json.loads(pv("check", repo, "--verify-data", "--json").out)["problems"] == []
    # deleted archives are gone for good now
    assert pv("undelete", f"{repo}::a1", expect=2).rc == 2


def test_partly_dead_packs_are_rewritten(pv, tmp_path):
    repo = str(tmp_path / "repo")
    pv("init", repo, "--pack-size", "512K")
    src = tmp_path / "src"
    # interleave files of two kinds in the same packs, then delete one kind
    rnd = random.Random(7)
    src.mkdir()
    for i in range(12):
        (src / f"keep{i}").write_bytes(rnd.randbytes(70 * KiB))
        (src / f"drop{i}").write_bytes(rnd.randbytes(70 * KiB))
    pv("create", f"{repo}::both", src)
    for i in range(12):
        (src / f"drop{i}").unlink()
    pv("create", f"{repo}::keep-only", src)
    pv("delete", f"{repo}::both")
    dry = json.loads(pv("compact", repo, "--min-age", "0", "--dry-run", "--json").out)["compact"]
    assert dry["packs_rewritten"] > 0 and dry["dry_run"]
    output = json.loads(pv("compact", repo, "--min-age", "0", "--json").out)
    report = output["compact"]
    assert report["packs_rewritten"] > 0 and report["bytes_copied"] > 0 and report["packs_created"] > 0
    assert report["bytes_after"] == _repo_bytes(repo)
    assert report["bytes_freed"] >= 12 * 70 * KiB * 0.8
    _restore_and_compare(pv, repo, "keep-only", src, tmp_path / "out")
    assert json.loads(pv("check", repo, "--verify-data", "--json").out)["problems"] == []


def test_young_packs_are_left_alone(pv, tmp_path):
    repo = str(tmp_path / "repo")
    pv("init", repo, "--pack-size", "256K")
    src = tmp_path / "src"
    _make_files(src, 4, 100 * KiB, seed=1)
    pv("create", f"{repo}::a", src)
    pv("delete", f"{repo}::a")
    before = _repo_bytes(repo)
    report = json.loads(pv("compact", repo, "--json").out)["compact"]  # default min-age: 2h
    assert report["packs_dropped"] == 0 and report["packs_too_young"] > 0
    assert _repo_bytes(repo) == before


def test_stale_cache_of_another_client_never_skips_a_removed_chunk(pv, tmp_path, monkeypatch):
    repo = str(tmp_path / "repo")
    pv("init", repo)
    src = tmp_path / "src"
    _make_files(src, 3, 200 * KiB, seed=3)
    cache_a, cache_b = tmp_path / "cache-a", tmp_path / "cache-b"
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(cache_a))
    pv("create", f"{repo}::first", src)  # client A's cache now lists these chunks
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(cache_b))
    pv("delete", f"{repo}::first")
    pv("compact", repo, "--min-age", "0")  # client B removes them
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(cache_a))
    pv("create", f"{repo}::second", src)  # A must notice its cache is stale and upload again
    _restore_and_compare(pv, repo, "second", src, tmp_path / "out")


def _creator(location: str, cache: Path, monkeypatch, name: str, src: Path) -> tuple[Repository, ArchiveCreator]:
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(cache))
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock="shared")
    repo.index  # noqa: B018 - load the index now, as a writer that started at this moment would
    return repo, ArchiveCreator(repo, name)


def test_duplicates_from_concurrent_writers_are_reclaimed(pv, tmp_path, monkeypatch):
    location = str(tmp_path / "repo")
    pv("init", location, "--pack-size", "256K")
    src = tmp_path / "src"
    _make_files(src, 5, 150 * KiB, seed=5)
    # two writers that both loaded the (empty) index before either finished: each uploads everything
    repo_a, creator_a = _creator(location, tmp_path / "ca", monkeypatch, "a", src)
    repo_b, creator_b = _creator(location, tmp_path / "cb", monkeypatch, "b", src)
    for repo, creator in ((repo_a, creator_a), (repo_b, creator_b)):
        source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
        creator.run(source, paths=[str(src)], cmdline=["test"])
        repo.close()

    def copies() -> dict[bytes, int]:
        repo = Repository(location, settings=env_settings())
        repo.open(None)
        counts: dict[bytes, int] = {}
        for info in repo.list_packs(KIND_DATA):
            for _, header in iter_headers(repo.load_pack_range(KIND_DATA, info.name)):
                counts[header.object_id] = counts.get(header.object_id, 0) + 1
        repo.close()
        return counts

    assert max(copies().values()) == 2
    pv("compact", location, "--min-age", "0")
    after = copies()
    assert set(after.values()) == {1}
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock=None)
    packs_present = {info.name for info in repo.list_packs(KIND_DATA)}
    for chunk_id in after:
        assert repo.index.get(chunk_id).pack in packs_present
    repo.close()
    _restore_and_compare(pv, location, "a", src, tmp_path / "oa")
    _restore_and_compare(pv, location, "b", src, tmp_path / "ob")


def test_prune_then_compact(pv, tmp_path):
    repo = str(tmp_path / "repo")
    pv("init", repo, "--pack-size", "256K")
    src = tmp_path / "src"
    for n in range(4):
        _make_files(src, 2, 80 * KiB, seed=10 + n)  # overwrite: each archive has new data
        pv("create", f"{repo}::host-{n}", src)
    listing = pv("prune", repo, "--keep-last", "2", "--dry-run", "--list").out
    assert "would prune" in listing and "last #1" in listing
    assert len(json.loads(pv("list", repo, "--json").out)["archives"]) == 4
    pv("prune", repo, "--keep-last", "2")
    names = [a["name"] for a in json.loads(pv("list", repo, "--json").out)["archives"]]
    assert names == ["host-2", "host-3"]
    pv("compact", repo, "--min-age", "0")
    _restore_and_compare(pv, repo, "host-3", src, tmp_path / "out")
    assert pv("prune", repo, expect=2).rc == 2  # an empty policy is refused


@pytest.mark.slow
def test_kill_9_during_compact_at_random_points(pv, tmp_path, pv_env):
    template = tmp_path / "template"
    pv("init", template, "--pack-size", "64K")
    sources = []
    for n in range(5):
        src = tmp_path / f"s{n}"
        _make_files(src, 8, 40 * KiB, seed=100 + n)
        pv("create", f"{template}::a{n}", src)
        sources.append(src)
    pv("create", f"{template}::mixed", sources[1], sources[4])
    pv("delete", f"{template}::a1", "a2", "a4")
    env = {**os.environ, **pv_env}
    rnd = random.Random(2026)
    measure = tmp_path / "measure"
    shutil.copytree(template, measure)
    t0 = time.monotonic()
    subprocess.run(cli_command("compact", measure, "--min-age", "0"), env=env, check=True, stdout=subprocess.DEVNULL)
    duration = time.monotonic() - t0  # kill points spread over a whole real run, start-up included
    killed = 0
    attempt = 0
    while killed < 30 and attempt < 90:  # 30+ real interruptions at random points
        attempt += 1
        repo = tmp_path / f"r{attempt}"
        shutil.copytree(template, repo)
        env["PACKVAULT_CACHE_DIR"] = str(tmp_path / f"cache{attempt}")
        proc = subprocess.Popen(cli_command("compact", repo, "--min-age", "0"), env=env, stdout=subprocess.DEVNULL)
        time.sleep(rnd.uniform(0.05, duration * 0.95))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        else:
            duration *= 0.85  # it finished first: aim earlier next time (the measured run may have been slow)
        proc.wait()
        check = subprocess.run(cli_command("check", repo, "--json"), env=env, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr  # a crash leaves a consistent repository
        again = subprocess.run(cli_command("compact", repo, "--min-age", "0"), env=env, capture_output=True)
        assert again.returncode == 0, again.stderr
        final = subprocess.run(
            cli_command("check", repo, "--verify-data", "--json"), env=env, capture_output=True, text=True
        )
        assert json.loads(final.stdout)["problems"] == [], final.stdout
        for name, src in (("a0", sources[0]), ("a3", sources[3]), ("mixed", sources[4])):
            out = tmp_path / f"o{attempt}{name}"
            restore = subprocess.run(cli_command("extract", f"{repo}::{name}", "--target", out), env=env)
            assert restore.returncode == 0
            assert tree_snapshot(out / str(src).lstrip("/")) == tree_snapshot(src)
        shutil.rmtree(repo)
    assert killed >= 30


def test_max_unused_leaves_a_little_dead_data_and_rewrites_the_most_dead_packs_first(pv, tmp_path):
    """restic's --max-unused: partly dead packs stay while the dead bytes left are within the limit; above
    it, the packs with the most dead bytes are rewritten first, and only as many as it takes."""
    repo = str(tmp_path / "repo")
    pv("init", repo, "--pack-size", "512K")
    src = tmp_path / "src"
    rnd = random.Random(9)
    src.mkdir()
    # three generations of packs: a little, half, and most of each dies
    for i in range(24):
        (src / f"f{i:02d}").write_bytes(rnd.randbytes(60 * KiB))
    pv("create", f"{repo}::all", src)
    for i in range(24):
        if i % 8 in (0, 1, 2, 3, 4) and i >= 8 or (i < 8 and i % 8 == 0):
            (src / f"f{i:02d}").unlink()
    pv("create", f"{repo}::some", src)
    pv("delete", f"{repo}::all")

    def dry(*args: str) -> dict:
        return json.loads(pv("compact", repo, "--min-age", "0", "--dry-run", "--json", *args).out)["compact"]

    everything = dry()
    assert everything["packs_rewritten"] >= 2
    assert dry("--max-unused", "90")["packs_rewritten"] == 0  # all that is dead may stay
    some = dry("--max-unused", "15")
    assert 0 < some["packs_rewritten"] < everything["packs_rewritten"]
    assert some["bytes_after"] <= some["bytes_before"]
    # the limit holds after a real run, and the archive left restores
    report = json.loads(pv("compact", repo, "--min-age", "0", "--max-unused", "15", "--json").out)["compact"]
    assert report["bytes_after"] - report["live_bytes"] <= 0.15 * report["bytes_after"] + 64 * KiB
    _restore_and_compare(pv, repo, "some", src, tmp_path / "out")
    pv("compact", repo, "--max-unused", "100", expect=2)
    pv("prune", repo, "--keep-last", "1", "--max-unused", "5", expect=2)  # only with --compact
