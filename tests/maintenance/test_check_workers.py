"""``check --verify-data`` in worker processes reports exactly what the checker's own process reports.

The data packs of a data pass are verified by worker processes (``maintenance/check/workers.py``); the
checker compares their findings with the index.  These tests damage objects in several data packs of the
small repository of ``test_check.py`` (on a local directory and on S3 behind a real moto server) and
compare the whole report, the request accounting and repair's decisions with ``--processes 0`` (no workers)
and ``--processes 2``, and with a pool that cannot start or breaks half-way.
"""

# ruff: noqa: F811  (the pv fixtures are imported from tests.support.cli and used as arguments)

from __future__ import annotations

import os
import re
import signal
import struct
import threading
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pytest
import xxhash

from packvault.errors import UsageError
from packvault.maintenance.check import CheckOptions, workers
from packvault.maintenance.check.archives import ArchiveLevel
from packvault.repository.index import KIND_DATA
from packvault.repository.objects import AAD_SIZE, HEADER_SIZE, parse_header
from tests.maintenance.test_check import Chunk, Fixture, build, check_json, pack_rel
from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)
from tests.support.settings import env_settings

_SUMS = struct.Struct("<QQ")
_HSUM = struct.Struct("<Q")

# what differs between runs whatever does the verifying
_VOLATILE_STATS = ("duration", "requests", "verify_processes")


@pytest.fixture(params=["file", "moto"])
def damaged(request: pytest.FixtureRequest, pv, tmp_path: Path, monkeypatch) -> tuple[Fixture, set[str]]:
    """The repository of ``test_check.py`` with objects damaged in three different data packs; returns it and
    the hex ids of the damaged objects."""
    if request.param == "file":
        url = f"file://{tmp_path / 'repo'}"
    else:
        url = request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))
    monkeypatch.chdir(tmp_path)
    fx = build(pv, url, tmp_path)
    chunks = [c for files in fx.chunks.values() for cs in files.values() for c in cs if c.kind == KIND_DATA]
    by_pack: dict[str, list[Chunk]] = {}
    for chunk in chunks:
        by_pack.setdefault(chunk.pack, []).append(chunk)
    packs = sorted(by_pack)
    # a, sub/b and d are each over a pack's size whatever the repository's cut points: three packs at least
    # (not four: with this key-dependent chunking some keys cut only three, and the test held for them)
    assert len(packs) >= 3, "the repository has enough data packs to damage three of them"
    first, second, third = (by_pack[name][0] for name in packs[:3])
    # 1. a flipped bit in the sealed data: its checksum says so (found with and without the key)
    rel = pack_rel(fx, first)
    fx.raw.flip(rel, first.offset + first.stored - 1)
    # 2. a flipped bit in a header
    fx.raw.flip(pack_rel(fx, second), second.offset + 20)
    # 3. sealed data changed with its checksums made to match: only opening it under the key finds it
    rel = pack_rel(fx, third)
    fx.raw.write(rel, _forge(fx.raw.read(rel), third.offset))
    return fx, {first.id.hex(), second.id.hex(), third.id.hex()}


def _forge(buf: bytes, offset: int) -> bytes:
    """Change one byte of an object's sealed data and rewrite its checksums so the structure verifies."""
    header = parse_header(buf, offset)
    data = bytearray(buf)
    start = offset + HEADER_SIZE + header.meta_size
    end = start + header.data_size
    data[end - 1] ^= 0x10
    _SUMS.pack_into(data, offset + AAD_SIZE, header.meta_xxh64, xxhash.xxh64_intdigest(bytes(data[start:end])))
    header_end = offset + AAD_SIZE + _SUMS.size
    _HSUM.pack_into(data, header_end, xxhash.xxh64_intdigest(bytes(data[offset:header_end])))
    return bytes(data)


def _comparable(doc: dict) -> dict:
    stats = {k: v for k, v in doc["stats"].items() if k not in _VOLATILE_STATS}
    return {**{k: v for k, v in doc.items() if k != "requests"}, "stats": stats}


def _plan(doc: dict) -> list[str]:
    """Repair's decisions; the id of new archive metadata differs per run (it records when it was written)."""
    return [re.sub(r"new metadata [0-9a-f]{64}", "new metadata ...", line) for line in doc["repairs"]]


def _requests(doc: dict) -> dict:
    """Requests that do not depend on how many processes read: each worker's store opens with a HEAD on S3."""
    return {k: v for k, v in doc["stats"]["requests"].items() if k != "HEAD"}


def test_workers_report_what_the_checker_reports(pv, damaged):
    fx, ids = damaged
    rc0, here = check_json(pv, fx.url, "--verify-data", "--processes", "0")
    rc2, spread = check_json(pv, fx.url, "--verify-data", "--processes", "2")
    assert rc0 == rc2 == 1
    assert here["stats"]["verify_processes"] == 0 and spread["stats"]["verify_processes"] == 2
    named = {p["object"] for p in spread["problems"] if p["kind"] == "object-damaged"}
    assert named == ids, spread["problems"]
    assert any("does not authenticate" in p["message"] for p in spread["problems"]), spread["problems"]
    assert _comparable(spread) == _comparable(here)
    # the workers' requests are the run's: one GET per pack, whoever read it
    assert _requests(spread) == _requests(here)
    assert spread["stats"]["requests"]["GET"] >= spread["stats"]["packs_read"]
    # what repair would do is decided from the same findings
    _, plan0 = check_json(pv, fx.url, "--verify-data", "--repair", "--dry-run", "--processes", "0")
    _, plan2 = check_json(pv, fx.url, "--verify-data", "--repair", "--dry-run", "--processes", "2")
    assert plan2["repairs"] and _plan(plan2) == _plan(plan0)
    assert {**_comparable(plan2), "repairs": []} == {**_comparable(plan0), "repairs": []}
    # a repair with workers leaves a repository both ways check the same
    rc, done = check_json(pv, fx.url, "--verify-data", "--repair", "--processes", "2")
    assert _plan(done) == _plan(plan2)
    _, after0 = check_json(pv, fx.url, "--verify-data", "--processes", "0")
    _, after2 = check_json(pv, fx.url, "--verify-data", "--processes", "2")
    assert after2["stats"]["verify_processes"] == 2
    assert {p["kind"] for p in after2["problems"]} == {"pack-name", "bytes-damaged", "file-repaired"}
    assert _comparable(after2) == _comparable(after0)


def test_a_healthy_repository_is_walked_once_while_the_workers_verify(pv, tmp_path, monkeypatch):
    """The archive walk runs while the workers verify the data packs, and is kept when nothing it looked up
    can change (``checker.py``): the same report as the walk after the scan, and no second walk."""
    monkeypatch.chdir(tmp_path)
    fx = build(pv, f"file://{tmp_path / 'repo'}", tmp_path)
    _, here = check_json(pv, fx.url, "--verify-data", "--processes", "0", expect=0)
    walks = []
    walk = ArchiveLevel.run_archive_level

    def counted(self) -> None:
        walks.append(threading.current_thread().name)
        walk(self)

    monkeypatch.setattr(ArchiveLevel, "run_archive_level", counted)
    _, spread = check_json(pv, fx.url, "--verify-data", "--processes", "2", expect=0)
    assert spread["stats"]["verify_processes"] == 2
    assert walks == ["pv-check-walk"], "walked once, early, in its thread"
    assert _comparable(spread) == _comparable(here)
    assert spread["stats"]["files"] == here["stats"]["files"] > 0


def test_no_processes_verifies_here_with_the_same_report(pv, damaged, monkeypatch):
    """Where no process can start (AWS Lambda has no /dev/shm), the checker verifies every pack itself."""
    fx, ids = damaged
    _, here = check_json(pv, fx.url, "--verify-data", "--processes", "0")

    def no_processes(*args, **kwargs):
        raise OSError(38, "Function not implemented")  # as multiprocessing says without /dev/shm

    monkeypatch.setattr(workers, "worker_pool", no_processes)
    _, fallback = check_json(pv, fx.url, "--verify-data", "--processes", "2")
    assert fallback["stats"]["verify_processes"] == 0
    assert {p["object"] for p in fallback["problems"] if p["kind"] == "object-damaged"} == ids
    assert _comparable(fallback) == _comparable(here)
    assert fallback["stats"]["requests"] == here["stats"]["requests"]


def test_a_broken_pool_is_finished_here_with_the_same_report(pv, damaged, monkeypatch):
    """A worker that dies (killed, out of memory) breaks the pool: its pack and the rest are verified here."""
    fx, ids = damaged
    _, here = check_json(pv, fx.url, "--verify-data", "--processes", "0")
    submit = workers.VerifyPool.submit
    calls = []

    def dies_after_one(self, *args) -> Future:
        calls.append(args)
        if len(calls) == 1:
            return submit(self, *args)
        broken: Future = Future()
        broken.set_exception(BrokenProcessPool("a worker died"))
        return broken

    monkeypatch.setattr(workers.VerifyPool, "submit", dies_after_one)
    _, mixed = check_json(pv, fx.url, "--verify-data", "--processes", "2")
    assert len(calls) >= 2 and mixed["stats"]["verify_processes"] == 2
    assert {p["object"] for p in mixed["problems"] if p["kind"] == "object-damaged"} == ids
    assert _comparable(mixed) == _comparable(here)
    assert _requests(mixed) == _requests(here)


def test_processes_must_not_be_negative():
    with pytest.raises(UsageError, match="--processes"):
        CheckOptions(verify_data=True, processes=-1)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal dispositions from /proc")
def test_workers_ignore_ctrl_c_the_checker_handles_it(tmp_path):
    """Ctrl-C reaches the whole process group; a worker that took it died with a traceback (or in its
    imports) and could hang the pool's shutdown.  Workers ignore SIGINT; the checker's handler is kept."""
    pool = workers.VerifyPool(workers.PackReadingKit(str(tmp_path), env_settings()), 2)
    try:
        pool.start()
        pids = {pool._pool.submit(os.getpid).result(timeout=60) for _ in range(8)}
        assert pids and os.getpid() not in pids
        for pid in pids:
            fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            ignored = int(fields["SigIgn"].strip(), 16)
            assert ignored & (1 << (signal.SIGINT - 1)), f"worker {pid} does not ignore SIGINT"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        pool.close()


@pytest.mark.parametrize("processes", ["0", "2"])
def test_damage_in_transit_is_read_again_not_reported(pv, tmp_path, monkeypatch, processes, request):
    """A data pack is read as one range of its listed size, which S3 does not check against the stored MD5
    (``verify.read_and_verify``); a pack in which verification then finds damage is read again whole, MD5
    checked, so a byte changed on the way costs a second GET, not a report of damage."""
    moto = request.getfixturevalue("moto_endpoint")
    url = request.getfixturevalue("make_s3_url")(moto)
    monkeypatch.chdir(tmp_path)
    build(pv, url, tmp_path)
    rc, clean = check_json(pv, url, "--verify-data", "--processes", processes)
    assert rc == 0 and not clean["problems"]
    proxy = request.getfixturevalue("fault_proxy")(
        moto, fault_rate=1.0, kinds=["flip_byte"], methods=["GET"], path_contains="/packs/data/", max_faults=2
    )
    rc, doc = check_json(pv, url.replace(moto, proxy.endpoint), "--verify-data", "--processes", processes)
    assert proxy.faults["flip_byte"] == 2
    assert rc == 0 and not doc["problems"], doc["problems"]
    # each damaged read cost one more GET of the whole pack
    assert doc["stats"]["requests"]["GET"] == clean["stats"]["requests"]["GET"] + 2


def test_a_clean_pack_is_not_md5_hashed_on_its_way_in(pv, tmp_path, monkeypatch, request):
    """The MD5 check of whole-object downloads is left to the packs in which verification finds damage: a
    healthy repository's check hashes none of its packs with MD5 (that was ~15 % of check's CPU time)."""
    import hashlib

    from packvault.storage.s3 import bucket

    url = request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))
    monkeypatch.chdir(tmp_path)
    build(pv, url, tmp_path)
    hashed: list[int] = []

    class CountingHashlib:
        def __getattr__(self, name):
            return getattr(hashlib, name)

        @staticmethod
        def md5(data=b"", **kwargs):
            hashed.append(len(data))
            return hashlib.md5(data, **kwargs)

    monkeypatch.setattr(bucket, "hashlib", CountingHashlib())
    rc, doc = check_json(pv, url, "--verify-data", "--processes", "0")
    assert rc == 0 and not doc["problems"]
    assert doc["stats"]["data_packs_read"] >= 3
    assert sum(hashed) < 64 * 1024, hashed  # small objects (config, index) may be; no pack was


GATED_START = """
import os, sys
from pathlib import Path
from packvault.maintenance.check import workers
from packvault.repository.packreading import PackReadingKit
from tests.support.settings import env_settings

if __name__ == "__main__":
    PackReadingKit.backend_modules = lambda self: ["tests.support.slowimport"]
    pool = workers.VerifyPool(PackReadingKit(sys.argv[1], env_settings(), {}), 2)
    pool.start()  # returns while the server still imports: the gate opens only after it
    Path(os.environ["PV_TEST_IMPORT_GATE"]).touch()
    print(pool._pool.submit(os.getpid).result(timeout=60) != os.getpid())
    pool.close()
"""


def test_starting_the_workers_does_not_wait_for_their_servers_imports(tmp_path):
    """The CLI starts the data pass's workers before it opens the repository, so that their start-up
    overlaps the opening; waiting there for the server's imports (botocore, on S3) would only move the wait.
    Here the server's imports cannot end before ``start`` returns: a ``start`` that waited would hang."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PV_TEST_IMPORT_GATE": str(tmp_path / "gate"),
        "PYTHONPATH": os.pathsep.join([str(root), *sys.path]),
    }
    result = subprocess.run(
        [sys.executable, "-c", GATED_START, str(tmp_path / "repo")], env=env, capture_output=True, text=True,
        timeout=60,  # the gate holds the server for five minutes: a start that waits for it times out here
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]
