"""The scale-out flow without AWS: this test plays the engine (Step Functions) and runs the real commands.

Plan the source bucket, run one ``packvault create ... --source-range`` process per part, all at once, into
one S3 repository (moto, then LocalStack); one worker is held once it stored a pack (its uploads wait at a
gate) and is killed (SIGKILL) there, in the middle of its part, and is run again as the engine's retry would;
then merge.  The
merged archive restores bit-exactly and is the archive one ``create`` of the whole bucket writes: the same
items in the same order and the same chunk ids per file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from tests.support.cli import cli_command
from tests.support.packgate import gate_command, gate_env, wait_parked
from tests.support.s3servers import new_bucket, s3_client
from tests.support.settings import env_settings

PARTS = 3
OBJECTS = {
    **{f"lake/day={d}/part-{i:03d}.bin": os.urandom(40_000 + 997 * i) for d in ("01", "02", "03") for i in range(12)},
    "lake/day=01.manifest": b"manifest",  # sorts between day=01/ and day=02/ in S3, after day=01/ when walked
    "lake/big.iso": os.urandom(3 * 1024 * 1024),
    "lake/_SUCCESS": b"",
}


def _items(url: str, name: str) -> tuple[list[dict], list[bytes]]:
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: "correct horse battery staple", lock=None)
    with repo, ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive(name))
        return list(iter_archive_items(reader, meta)), meta.item_ids


def _worker(repo_url: str, element: dict, source: str, env: dict, *, command=cli_command) -> subprocess.Popen:
    k, n = element["part"], element["parts"]
    end = "" if element["end"] is None else element["end"]
    args = ["create", f"{repo_url}::lake.part{k}", source, "--source-range", element["start"], end]
    args += ["--part", f"{k}/{n}"]
    return subprocess.Popen(command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _flow(pv, pv_env, tmp_path: Path, repo_endpoint: str, make_s3_url, moto_endpoint) -> None:
    source_bucket = new_bucket(moto_endpoint)
    client = s3_client(moto_endpoint)
    for key, data in OBJECTS.items():
        client.put_object(Bucket=source_bucket, Key=key, Body=data)
    source = f"s3://{source_bucket}/lake?endpoint={moto_endpoint}"
    repo_url = make_s3_url(repo_endpoint)
    pv("init", repo_url, "--pack-size", "64K")
    plan = json.loads(pv("plan-source", source, "--parts", str(PARTS)).out)
    assert len(plan) == PARTS
    env = {**os.environ, **pv_env}

    victim = max(plan, key=lambda e: e["objects"])["part"]  # the most objects: a part with many packs
    assert plan[victim]["objects"] >= 10
    gate = tmp_path / "gate"  # never opened: the victim is held after its first pack until it is killed
    held = {**env, **gate_env(gate, after=1)}
    workers = {
        e["part"]: _worker(repo_url, e, source, held, command=gate_command) if e["part"] == victim
        else _worker(repo_url, e, source, env)
        for e in plan
    }
    for k, proc in workers.items():
        if k != victim:
            out, err = proc.communicate(timeout=240)
            assert proc.returncode == 0, err
    wait_parked(gate, workers[victim])  # it stored a pack of its part
    workers[victim].send_signal(signal.SIGKILL)  # a crashed task: no checkpoint, no cleanup
    workers[victim].communicate(timeout=60)
    assert workers[victim].returncode == -signal.SIGKILL
    names = [a["name"] for a in json.loads(pv("list", "--json", repo_url).out)["archives"]]
    assert sorted(names) == [f"lake.part{k}" for k in range(PARTS) if k != victim]
    listed = ["lake.part*", f"lake.part{victim}"]
    assert "not found" in pv("merge", f"{repo_url}::lake", *listed, expect=2).err

    rerun = _worker(repo_url, plan[victim], source, env)  # the engine's retry of the failed iteration
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    merged = json.loads(pv("merge", "--json", f"{repo_url}::lake", "lake.part*").out)
    assert merged["parts"] == [f"lake.part{k}" for k in range(PARTS)]

    pv("create", f"{repo_url}::single", source)
    items, item_ids = _items(repo_url, "lake")
    single, single_ids = _items(repo_url, "single")
    assert items == single and item_ids == single_ids
    target = tmp_path / "restore"
    pv("extract", f"{repo_url}::lake", "--target", str(target))
    root = target / source_bucket
    assert {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()} == OBJECTS
    pv("check", repo_url)


@pytest.mark.slow
def test_parallel_parts_with_a_killed_worker_merge_into_the_single_backup_moto(
    pv, pv_env, tmp_path, make_s3_url, moto_endpoint
):
    _flow(pv, pv_env, tmp_path, moto_endpoint, make_s3_url, moto_endpoint)


@pytest.mark.slow
@pytest.mark.localstack
def test_parallel_parts_with_a_killed_worker_merge_into_the_single_backup_localstack(
    pv, pv_env, tmp_path, make_s3_url, moto_endpoint, localstack_endpoint
):
    _flow(pv, pv_env, tmp_path, localstack_endpoint, make_s3_url, moto_endpoint)
