"""The Lambda handler, invoked in-process against real S3 servers (LocalStack; moto for Secrets Manager).

The fake context reports a deadline that is reached after a fixed number of questions, so the runs stop
at the same places on every machine: invocation k gets time for about ``k * PER_RUN`` entries (a resumed
run walks the finished part again, quickly, through the files cache), which makes several invocations
necessary to finish one archive.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.s3restore import S3Restorer
from packvault.errors import WrongPassphrase
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from packvault.serverless import handler
from packvault.serverless import secrets as pv_secrets
from packvault.storage.settings import from_environment
from tests.support.s3servers import new_bucket, s3_client
from tests.support.settings import env_settings

pytestmark = pytest.mark.localstack

PASSPHRASE = "correct horse battery staple"
MARGIN_S = 20
PER_RUN = 12  # entries one invocation has time for, per invocation number


class CountdownContext:
    """A Lambda context whose remaining time drops by one second each time it is asked."""

    def __init__(self, seconds: int, request_id: str = "test-request"):
        self.remaining_ms = seconds * 1000
        self.aws_request_id = request_id
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        self.remaining_ms -= 1000
        return self.remaining_ms


def make_objects(endpoint: str, bucket: str, count: int) -> dict[str, bytes]:
    rng = random.Random(11)
    client = s3_client(endpoint)
    objects = {}
    for n in range(count):
        key = f"site/{'abc'[n % 3]}/{n // 10}/obj-{n:03d}.bin"
        data = rng.randbytes(rng.randint(1, 300_000)) if n % 7 else b""
        client.put_object(Bucket=bucket, Key=key, Body=data)
        objects[key] = data
    return objects


@pytest.fixture
def job_env(monkeypatch, pv, pv_env, localstack_endpoint, make_s3_url):
    """A repository and a source bucket on LocalStack, and the job's environment as Terraform sets it."""
    repo = make_s3_url(localstack_endpoint)
    pv("init", repo)
    source_bucket = new_bucket(localstack_endpoint)
    env = {
        "PACKVAULT_REPO": repo,
        "PACKVAULT_SOURCES": json.dumps([f"s3://{source_bucket}/site?endpoint={localstack_endpoint}"]),
        "PACKVAULT_PRUNE": json.dumps({"keep_daily": 7}),
        "PACKVAULT_COMPACT": "0",
        "PACKVAULT_ARCHIVE_PREFIX": "nightly",
        "AWS_LAMBDA_FUNCTION_NAME": "packvault-test-job",
        "PACKVAULT_DEADLINE_MARGIN": str(MARGIN_S),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {"repo": repo, "source_bucket": source_bucket, "endpoint": localstack_endpoint}


def open_repo(location: str) -> Repository:
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock="shared")
    return repo


def archive_files(location: str, name: str) -> dict[str, bytes]:
    with open_repo(location) as repo, ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive(name))
        return {
            item["p"].decode(): b"".join(reader.read_chunk(cid) for cid, _ in item.get("c") or ())
            for item in iter_archive_items(reader, meta)
            if item["t"] == "f"
        }


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_invocations_with_short_deadlines_complete_one_archive(job_env, pv, tmp_path, capsys):
    endpoint, bucket, repo = job_env["endpoint"], job_env["source_bucket"], job_env["repo"]
    objects = make_objects(endpoint, bucket, 60)
    event = {"source": "packvault.scheduler", "job": "test", "time": "2026-11-20T03:00:00Z"}
    summaries = []
    for invocation in range(1, 12):
        context = CountdownContext(MARGIN_S + 3 + invocation * PER_RUN)
        summary = handler(event, context)
        summaries.append(summary)
        assert summary["archive"] == "nightly-2026-11-20"
        if summary["status"] == "created":
            break
        assert summary["status"] == "incomplete"
    statuses = [s["status"] for s in summaries]
    assert statuses[-1] == "created", statuses
    assert len(statuses) >= 3, "the deadline should have split the work over several invocations"
    # resumed runs did not download what earlier runs had stored
    for summary in summaries[1:]:
        assert summary["stats"]["files_unchanged"] > 0
        assert summary["source_requests"]["GET"] < len([v for v in objects.values() if v])
    assert summaries[-1]["stats"]["nfiles"] == len(objects)
    assert summaries[-1]["prune"] == {"kept": 1, "pruned": []}

    # the logs are JSON lines, one of them a checkpoint per incomplete run
    logged = json_lines(capsys.readouterr().out)
    assert sum(1 for rec in logged if rec["event"] == "create.checkpoint") == len(statuses) - 1
    assert all(rec["request_id"] == "test-request" for rec in logged)

    # one more run in the same period: nothing to do
    again = handler(event, CountdownContext(600))
    assert again["status"] == "already-complete"
    with open_repo(repo) as r:
        assert [e.name for e in r.archive_entries()] == ["nightly-2026-11-20"]

    # nothing lost, bit-exact: in the archive, restored to a directory, restored into a bucket
    expected = {f"{bucket}/{k}": v for k, v in objects.items()}
    assert archive_files(repo, "nightly-2026-11-20") == expected
    target = tmp_path / "restore"
    pv("extract", f"{repo}::nightly-2026-11-20", "--target", str(target))
    restored = {str(p.relative_to(target)): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert restored == expected
    back = new_bucket(endpoint)
    with open_repo(repo) as r, ChunkReader(r) as reader:
        meta = load_archive(reader, r.find_archive("nightly-2026-11-20"))
        stats = S3Restorer(
            reader, f"s3://{back}?endpoint={endpoint}", strip_components=1, settings=from_environment(os.environ)
        ).run(iter_archive_items(reader, meta))
    assert not stats.errors
    client = s3_client(endpoint)
    for key, data in objects.items():
        assert client.get_object(Bucket=back, Key=key)["Body"].read() == data


def test_run_out_of_time_at_once_then_finish(job_env, monkeypatch):
    """A run that starts inside the margin stops before the first entry; the next one does all the work."""
    objects = make_objects(job_env["endpoint"], job_env["source_bucket"], 8)
    event = {"time": "2026-11-21T03:00:00Z"}
    first = handler(event, CountdownContext(MARGIN_S))
    assert first["status"] == "incomplete" and first["stats"]["nfiles"] == 0
    assert "prune" not in first  # no maintenance in a run that is out of time
    second = handler(event, None)  # no context: a local call never runs out of time
    assert second["status"] == "created"
    assert archive_files(job_env["repo"], "nightly-2026-11-21") == {
        f"{job_env['source_bucket']}/{k}": v for k, v in objects.items()
    }


@pytest.mark.slow
def test_passphrase_from_secrets_manager_prune_and_compact(job_env, monkeypatch, moto_endpoint):
    import boto3

    secret = boto3.client("secretsmanager", endpoint_url=moto_endpoint).create_secret(
        Name=f"pv/{os.getpid()}/passphrase-{random.randrange(10**9)}",
        SecretString=json.dumps({"passphrase": PASSPHRASE}),
    )
    monkeypatch.delenv("PACKVAULT_PASSPHRASE")
    monkeypatch.setenv("PACKVAULT_PASSPHRASE_SECRET_ARN", secret["ARN"])
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    monkeypatch.setenv("PACKVAULT_COMPACT_MIN_AGE", "0s")
    pv_secrets._cache.clear()
    objects = make_objects(job_env["endpoint"], job_env["source_bucket"], 12)

    day1 = handler({"time": "2026-11-20T03:00:00Z"}, None)
    assert day1["status"] == "created" and day1["prune"]["pruned"] == []
    client = s3_client(job_env["endpoint"])
    client.put_object(Bucket=job_env["source_bucket"], Key="site/new.bin", Body=b"new on day 2")
    client.delete_object(Bucket=job_env["source_bucket"], Key="site/a/0/obj-000.bin")
    day2 = handler({"time": "2026-11-21T03:00:00Z"}, None)
    assert day2["status"] == "created"
    # both archives were made today (real time): keep_daily keeps only the newest of the day
    assert day2["prune"] == {"kept": 1, "pruned": ["nightly-2026-11-20"]}
    assert "compact" not in day2  # PACKVAULT_COMPACT=0: only on its own schedule

    maintenance = handler({"action": "compact"}, CountdownContext(900))
    assert maintenance["status"] == "done"
    assert maintenance["compact"]["archives_purged"] == 1
    assert maintenance["compact"]["chunks_dropped"] >= 1  # the deleted object's data is gone
    expected = {f"{job_env['source_bucket']}/{k}": v for k, v in objects.items() if k != "site/a/0/obj-000.bin"}
    expected[f"{job_env['source_bucket']}/site/new.bin"] = b"new on day 2"
    assert archive_files(job_env["repo"], "nightly-2026-11-21") == expected


def test_wrong_passphrase_fails_the_invocation_with_a_json_error(job_env, monkeypatch, capsys):
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "not the passphrase")
    with pytest.raises(WrongPassphrase):
        handler({}, CountdownContext(600))
    last = json_lines(capsys.readouterr().out)[-1]
    assert last["event"] == "job.end" and last["status"] == "error" and last["level"] == "error"
    assert last["exit_code"] == 2


def test_lambda_defaults_cache_dir_to_tmp(monkeypatch, tmp_path: Path):
    from packvault.serverless.handler import prepare_environment

    env = {"AWS_LAMBDA_FUNCTION_NAME": "job"}
    prepare_environment(env)
    assert env["PACKVAULT_CACHE_DIR"].startswith("/tmp/")
    assert env["PACKVAULT_CONFIG_DIR"].startswith("/tmp/")
    explicit = {"AWS_LAMBDA_FUNCTION_NAME": "job", "PACKVAULT_CACHE_DIR": str(tmp_path)}
    prepare_environment(explicit)
    assert explicit["PACKVAULT_CACHE_DIR"] == str(tmp_path)
    local: dict[str, str] = {}
    prepare_environment(local)
    assert local == {}


def test_scheduled_compact_refuses_when_the_index_names_a_lost_pack(job_env, monkeypatch, capsys):
    """Issue 14: the scheduled job must not be able to compact a damaged repository either."""
    from urllib.parse import urlsplit

    from packvault.errors import ObjectMissing

    monkeypatch.setenv("PACKVAULT_COMPACT_MIN_AGE", "0s")
    make_objects(job_env["endpoint"], job_env["source_bucket"], 12)
    assert handler({"time": "2026-11-20T03:00:00Z"}, None)["status"] == "created"
    client = s3_client(job_env["endpoint"])
    parts = urlsplit(job_env["repo"])
    bucket, prefix = parts.netloc, parts.path.strip("/")
    base = f"{prefix}/" if prefix else ""

    def keys() -> set[str]:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}

    data_pack = sorted(k for k in keys() if k.startswith(f"{base}packs/data/"))[0]
    client.delete_object(Bucket=bucket, Key=data_pack)
    before = keys()
    with pytest.raises(ObjectMissing):
        handler({"action": "compact"}, CountdownContext(900))
    assert keys() == before
    last = json_lines(capsys.readouterr().out)[-1]
    assert last["status"] == "error" and last["exit_code"] == 2 and "check --repair" in last.get("error", str(last))
