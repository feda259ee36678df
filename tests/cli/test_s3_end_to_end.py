"""End to end on real S3 servers: faults, concurrent writers and locks, LocalStack (issues 3 and 4)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.cli import cli_command, tree_snapshot
from tests.support.objectlock import all_keys
from tests.support.settings import env_settings

KiB = 1024
MiB = 1024 * KiB


def _tree(root: Path, seed: int, files: int = 6, size: int = 300 * KiB) -> Path:
    rnd = random.Random(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(files):
        (root / ("sub" if i % 2 else "") / f"f{i}.bin").write_bytes(rnd.randbytes(size + i))
    (root / "text.txt").write_text("compressible line\n" * 20_000)
    return root


def _env() -> dict[str, str]:
    return dict(os.environ)


@pytest.mark.parametrize("any_backend_url", ["moto", "localstack"], indirect=True)
def test_round_trip_on_s3(pv, tmp_path, any_backend_url):
    src = _tree(tmp_path / "src", seed=1)
    pv("init", any_backend_url, "--pack-size", "512K")
    created = json.loads(pv("create", "--json", f"{any_backend_url}::a", src).out)
    assert created["requests"]["PUT"] >= 3
    rerun = json.loads(pv("create", "--json", f"{any_backend_url}::b", src).out)
    assert rerun["stats"]["files_read"] == 0
    # an unchanged re-run: a small constant number of PUTs (item stream, archive metadata, fragment, entry, lock)
    assert rerun["requests"]["PUT"] <= 8
    pv("extract", f"{any_backend_url}::b", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)


def test_backup_and_restore_through_faulty_proxy(pv, tmp_path, moto_endpoint, make_s3_url, fault_proxy):
    src = _tree(tmp_path / "src", seed=2, files=10)
    proxy = fault_proxy(moto_endpoint, fault_rate=0.15, seed=42)
    location = make_s3_url(moto_endpoint).replace(moto_endpoint, proxy.endpoint)
    os.environ["PACKVAULT_S3_RETRY_ATTEMPTS"] = "12"
    try:
        pv("init", location, "--pack-size", "256K")
        pv("create", f"{location}::a", src)
        pv("extract", f"{location}::a", "--target", tmp_path / "out")
    finally:
        del os.environ["PACKVAULT_S3_RETRY_ATTEMPTS"]
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)
    assert sum(proxy.faults.values()) >= 10
    assert proxy.faults["lost_response"] >= 1  # the converging-retry path was exercised


def test_missing_bucket_and_bad_url_are_clear_errors(pv, moto_endpoint, s3_env):
    result = pv("list", f"s3://no-such-bucket-pv/x?endpoint={moto_endpoint}", expect=2)
    assert "bucket" in result.err.lower() and "Traceback" not in result.err
    result = pv("init", f"s3://no-such-bucket-pv/x?endpoint={moto_endpoint}", expect=2)
    assert "bucket" in result.err.lower()
    result = pv("list", "s3://", expect=2)
    assert result.err.startswith("packvault: error:")


@pytest.mark.slow
@pytest.mark.parametrize("writers", [2, 4])
def test_concurrent_creates_then_compact_store_common_data_once(pv, tmp_path, moto_endpoint, make_s3_url, writers):
    location = make_s3_url(moto_endpoint)
    pv("init", location, "--pack-size", "512K")
    common = _tree(tmp_path / "common", seed=3, files=8, size=400 * KiB)
    env = _env()
    procs = []
    for n in range(writers):
        own = _tree(tmp_path / f"own{n}", seed=100 + n, files=2)
        cache = tmp_path / f"cache{n}"
        procs.append(
            (
                subprocess.Popen(
                    cli_command("create", "--json", f"{location}::w{n}", common, own),
                    env={**env, "PACKVAULT_CACHE_DIR": str(cache)},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
                own,
            )
        )
    for proc, _ in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    names = sorted(a["name"] for a in json.loads(pv("list", location, "--json").out)["archives"])
    assert names == [f"w{n}" for n in range(writers)]
    report = json.loads(pv("compact", location, "--min-age", "0", "--json").out)["compact"]
    common_bytes = sum(p.stat().st_size for p in common.rglob("*") if p.is_file())
    assert report["bytes_after"] < common_bytes * 1.5 + writers * 2 * 310 * KiB  # common data stored once
    for n, (_, own) in enumerate(procs):
        out = tmp_path / f"out{n}"
        pv("extract", f"{location}::w{n}", "--target", out)
        assert tree_snapshot(out / str(common).lstrip("/")) == tree_snapshot(common)
        assert tree_snapshot(out / str(own).lstrip("/")) == tree_snapshot(own)


@pytest.mark.slow
def test_compact_waits_for_a_running_create_and_vice_versa(pv, tmp_path, moto_endpoint, make_s3_url):
    location = make_s3_url(moto_endpoint)
    pv("init", location, "--pack-size", "512K")
    bucket, prefix = location.removeprefix("s3://").split("?")[0].split("/", 1)
    env = _env()
    # create backs up standard input, which the test holds open: it stays in the middle of its backup, with
    # packs already stored that no archive references yet, for as long as the test wants
    payload = random.Random(5).randbytes(3 * MiB)
    create = subprocess.Popen(
        cli_command("create", f"{location}::slow", "-", "--stdin-name", "stream.bin"),
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    create.stdin.write(payload[: 2 * MiB])
    create.stdin.flush()
    deadline = time.monotonic() + 120
    while not all_keys(moto_endpoint, bucket, f"{prefix}/locks/"):  # create holds its shared lock
        assert create.poll() is None and time.monotonic() < deadline, create.stderr.read()
        time.sleep(0.05)
    compact = subprocess.Popen(
        cli_command("compact", location, "--min-age", "0", "--json"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    assert compact.poll() is None, compact.communicate()  # compact waits for create's lock
    create.stdin.write(payload[2 * MiB :])
    create.stdin.close()
    assert create.wait(timeout=300) == 0, create.stderr.read()
    compact_out, compact_err = compact.communicate(timeout=300)
    assert compact.returncode == 0, compact_err
    # compact only ran once create had released its lock: the new archive's data survived it
    pv("extract", f"{location}::slow", "--target", tmp_path / "out")
    assert (tmp_path / "out" / "stream.bin").read_bytes() == payload
    src = _tree(tmp_path / "src", seed=5, files=40, size=1 * MiB)

    # the reverse: a create started while compact holds the exclusive lock waits, then succeeds
    pv("delete", f"{location}::slow")
    compact = subprocess.Popen(cli_command("compact", location, "--min-age", "0"), env=env)
    deadline = time.monotonic() + 120
    while not all_keys(moto_endpoint, bucket, f"{prefix}/locks/") and compact.poll() is None:  # it has its lock
        assert time.monotonic() < deadline, "compact never took its lock"
        time.sleep(0.05)
    result = subprocess.run(cli_command("create", f"{location}::after", src), env=env, capture_output=True, text=True)
    compact.wait(timeout=300)
    assert compact.returncode == 0 and result.returncode == 0, result.stderr
    pv("extract", f"{location}::after", "--target", tmp_path / "out2")
    assert tree_snapshot(tmp_path / "out2" / str(src).lstrip("/")) == tree_snapshot(src)


def test_lock_timeout_names_the_holder(pv, tmp_path, monkeypatch):
    location = str(tmp_path / "repo")
    pv("init", location)
    from packvault.repository.repository import Repository

    holder = Repository(location, settings=env_settings())
    holder.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock=None)
    holder.acquire_lock(exclusive=True, wait=5)
    try:
        result = pv("list", location, "--lock-wait", "1", expect=2)
        assert "locked by" in result.err and f"pid {os.getpid()}" in result.err
    finally:
        holder.close()
    pv("list", location)
