"""The benchmark's moto server keeps large objects in RAM unless told to spool them to disk.

Why this is pinned: with moto's default, every body over 5 MiB goes into a temporary file in one write,
and on the benchmark VM that write cost about two CPU-seconds per first backup, at random, on the cores
the measured tools share (bench/README.md).  A harness change that silently dropped the setting would make S3 numbers
noisy and slower for every tool again without anyone noticing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import run as bench_run  # noqa: E402

LARGE_BODY = 6 * 1024 * 1024  # over moto's 5 MiB default buffer


def deleted_temp_files(pid: int) -> list[str]:
    """The unlinked files a process holds open: where a spooled temporary file lives."""
    names = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith("(deleted)"):
            names.append(target)
    return names


@pytest.mark.parametrize("disk_spool", [False, True])
def test_bench_moto_keeps_large_objects_in_ram_unless_asked(tmp_path: Path, disk_spool: bool) -> None:
    server = bench_run.MotoServer(bench_run.find_moto_server(None), tmp_path / "logs", disk_spool=disk_spool)
    try:
        client = bench_run.s3_client(server.url)
        client.create_bucket(Bucket="spool")
        before = deleted_temp_files(server._proc.pid)
        client.put_object(Bucket="spool", Key="pack", Body=os.urandom(LARGE_BODY))
        spooled = len(deleted_temp_files(server._proc.pid)) - len(before)
        assert client.get_object(Bucket="spool", Key="pack")["ContentLength"] == LARGE_BODY
    finally:
        server.stop()
    assert spooled == (1 if disk_spool else 0)
