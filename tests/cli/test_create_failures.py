"""``create`` when the repository cannot be written: a full disk (a real small file system), a pack spool
whose disk is full, an S3 service that refuses every pack.  Exit 2 and one line naming the repository (or
the spool) and the cause, no archive, no warning blaming a source file, and what was stored indexed."""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from packvault.repository.repository import Repository
from tests.support.settings import env_settings

KiB = 1024
MiB = 1024 * KiB


def _source(root: Path, files: int = 30, size: int = 300 * KiB, seed: int = 1) -> Path:
    root.mkdir(parents=True)
    rnd = random.Random(seed)
    for i in range(files):
        (root / f"f{i:02d}.bin").write_bytes(rnd.randbytes(size))
    return root


@pytest.fixture
def small_fs(tmp_path) -> Iterator[Callable[[str, str], Path]]:
    """``small_fs(name, size)`` -> a tmpfs of that size mounted at tmp_path/name (unmounted afterwards).

    A real file system that fills up: ENOSPC comes from the kernel, exactly where it would in production.
    Mounting needs root (CAP_SYS_ADMIN); without it no other honest source of ENOSPC for a directory exists
    (/dev/full is a device, not a directory a repository could live in), so the test is skipped."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs for a real ENOSPC (needs root): {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        with contextlib.suppress(OSError):
            subprocess.run(["umount", "-l", str(point)], check=False)


def _archives(pv, location: str) -> list[str]:
    return [a["name"] for a in json.loads(pv("list", "--json", location).out)["archives"]]


def _indexed_and_stored_packs(location: str, passphrase: str) -> tuple[set[str], set[str]]:
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: passphrase, lock=None)
    try:
        indexed = {repo.index.get(cid).pack for cid, _ in repo.index.entries()}
        stored = {info.name for kind in (0, 1) for info in repo.list_packs(kind)}
    finally:
        repo.close()
    return indexed, stored


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_full_repository_disk_stops_create_with_one_line_and_a_checkpoint(pv, pv_env, tmp_path, small_fs):
    src = _source(tmp_path / "src")  # 9 MiB of incompressible data
    disk = small_fs("small", "3m")
    repo = disk / "repo"
    pv("init", repo, "--pack-size", "256K")

    result = pv("create", f"{repo}::a", src, expect=2)

    lines = _error_lines(result.err)
    assert len(lines) == 1, result.err  # no "cannot read" warning per source file, no traceback
    assert lines[0].startswith("packvault: error: ")
    assert str(repo) in lines[0] and "No space left on device" in lines[0]
    assert "indexed" in lines[0]  # the packs stored before the disk filled up are in a checkpoint
    assert _archives(pv, str(repo)) == []
    indexed, stored = _indexed_and_stored_packs(str(repo), pv_env["PACKVAULT_PASSPHRASE"])
    assert indexed and indexed == stored  # every stored pack indexed, no index entry without its pack

    # with room again, the rerun completes and sends only what was not stored before
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    before = sum(p.stat().st_size for p in (repo / "packs").rglob("*") if p.is_file())
    rerun = json.loads(pv("create", "--json", f"{repo}::a", src).out)
    assert rerun["stats"]["compressed_size"] <= 9 * MiB + 64 * KiB - before + 256 * KiB
    assert _archives(pv, str(repo)) == ["a"]
    assert json.loads(pv("check", repo, "--json").out)["problems"] == []


def test_full_spool_disk_is_named_as_the_spool_not_a_source_file(pv, tmp_path, small_fs, moto_endpoint, make_s3_url):
    """A remote repository's packs are spooled in the cache directory: when that disk is full, the error
    names the spool directory (not the bucket, not the source files)."""
    src = _source(tmp_path / "src", files=12)
    location = make_s3_url(moto_endpoint)
    pv("init", location, "--pack-size", "4M")
    cache = small_fs("small-cache", "1m")
    os.environ["PACKVAULT_CACHE_DIR"] = str(cache)  # restored by pv_env's monkeypatch

    result = pv("create", f"{location}::a", src, expect=2)

    lines = _error_lines(result.err)
    assert len(lines) == 1, result.err
    assert str(cache / "spool") in lines[0] and "No space left on device" in lines[0]
    assert "cannot read" not in result.err
    assert _archives(pv, location) == []


@pytest.mark.parametrize("refused", ["/packs/", "/"])
def test_s3_refusing_puts_stops_create_with_one_line(pv, tmp_path, moto_endpoint, make_s3_url, fault_proxy, refused):
    """Every pack PUT fails (the run starts, then stops at once), or every PUT at all (not even the lock)."""
    src = _source(tmp_path / "src", files=20)
    location = make_s3_url(moto_endpoint, retry_attempts="2", retry_max_seconds="3")
    pv("init", location, "--pack-size", "256K")
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["500"], methods=["PUT"], path_contains=refused)
    through_proxy = location.replace(moto_endpoint, proxy.endpoint)

    result = pv("create", f"{through_proxy}::a", src, expect=2)

    lines = _error_lines(result.err)
    assert len(lines) == 1, result.err
    assert lines[0].startswith("packvault: error: ") and "kept failing" in lines[0]
    assert location.split("?")[0] in lines[0]  # the repository is named
    assert proxy.faults["500"] >= 2
    assert _archives(pv, location) == []


def test_read_only_repository_is_one_line_exit_2(pv, tmp_path, small_fs):
    src = _source(tmp_path / "src", files=2)
    disk = small_fs("small", "4m")
    repo = disk / "repo"
    pv("init", repo, "--pack-size", "256K")
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)

    result = pv("create", f"{repo}::a", src, expect=2)

    lines = _error_lines(result.err)
    assert len(lines) == 1, result.err
    assert str(repo) in lines[0] and "Read-only file system" in lines[0] and "remount" in lines[0]
