"""The serverless handler with cold data packs and Object Lock (issue 18), invoked in-process on moto.

- ``{"action": "extract", ...}`` into a bucket: the first invocation requests the restores and returns
  "restore-pending" (no exception: Lambda must not count it as failed), a later one extracts;
- the handler's compact extends the Object Lock retention of live objects, as the CLI's compact does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from packvault.errors import UsageError
from packvault.serverless import handler
from packvault.serverless.job import load_job
from tests.cold.helpers import finish, objects_of, start
from tests.support.objectlock import all_keys, lock_url, retention_of
from tests.support.s3servers import new_bucket, s3_client

moto_only = pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)


@pytest.fixture
def lambda_env(monkeypatch, pv_env, s3_env):
    monkeypatch.setenv("PACKVAULT_COMPACT", "0")
    for name in ("PACKVAULT_OBJECT_LOCK", "PACKVAULT_RETENTION", "PACKVAULT_RETENTION_EXTEND", "PACKVAULT_SOURCES"):
        monkeypatch.delenv(name, raising=False)


def bucket_objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    return {
        key: client.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in (obj["Key"] for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []))
    }


@moto_only
def test_extract_job_requests_restores_then_completes_on_a_later_invocation(
    cold_repo, moto_endpoint, manual_restores, lambda_env
):
    url, src = cold_repo
    target_bucket = new_bucket(moto_endpoint)
    event = {
        "action": "extract",
        "repository": url.replace("&storage_class=DEEP_ARCHIVE", ""),  # the repository knows its data is cold
        "archive": "a",
        "target": f"s3://{target_bucket}/restored?endpoint={moto_endpoint}",
        "restore_tier": "bulk",
        "restore_days": 2,
    }
    first = handler(dict(event))
    assert first["status"] == "restore-pending"
    assert first["restores"]["requested"] == first["restores"]["waiting"] == first["restores"]["packs"] >= 2
    assert bucket_objects(moto_endpoint, target_bucket) == {}
    packs = sorted(k for k in objects_of(url) if "/packs/data/" in k)
    start(url, packs)
    again = handler(dict(event))  # still restoring: pending, nothing asked for twice
    assert again["status"] == "restore-pending" and again["restores"]["requested"] == 0
    finish(url, packs)
    done = handler(dict(event))
    assert done["status"] == "extracted" and done["stats"]["errors"] == 0
    restored = bucket_objects(moto_endpoint, target_bucket)
    expected = {
        "restored/" + str(path).lstrip("/"): path.read_bytes() for path in sorted(src.rglob("*")) if path.is_file()
    }
    assert restored == expected


def test_extract_job_needs_archive_and_an_s3_target():
    env = {"PACKVAULT_REPO": "s3://bkt/repo"}
    with pytest.raises(UsageError, match="archive"):
        load_job({"action": "extract", "target": "s3://bkt/out"}, env)
    with pytest.raises(UsageError, match="target"):
        load_job({"action": "extract", "archive": "a", "target": "/tmp/out"}, env)
    with pytest.raises(UsageError, match="tier"):
        load_job({"action": "extract", "archive": "a", "target": "s3://bkt/out", "restore_tier": "fast"}, env)
    job = load_job({"action": "extract", "archive": "a", "target": "s3://bkt/out", "paths": ["x"]}, env)
    assert (job.archive, job.target, job.paths, job.compact_due()) == ("a", "s3://bkt/out", ("x",), False)


def test_object_lock_settings_of_the_job_are_checked_before_anything_runs():
    env = {"PACKVAULT_REPO": "s3://bkt/repo", "PACKVAULT_OBJECT_LOCK": "governance"}
    with pytest.raises(UsageError, match="go together"):
        load_job({}, env)
    with pytest.raises(UsageError, match="not a mode"):
        load_job({}, {**env, "PACKVAULT_OBJECT_LOCK": "strict", "PACKVAULT_RETENTION": "30d"})
    job = load_job({}, {**env, "PACKVAULT_RETENTION": "30d", "PACKVAULT_RETENTION_EXTEND": "45d"})
    assert job.s3_options() == {"object_lock": "governance", "retention": "30d"}
    assert job.retention_extend == 45 * 86400


def test_compact_job_extends_the_retention_of_live_objects(pv, moto_endpoint, lambda_env, tmp_path, monkeypatch):
    url = lock_url(moto_endpoint)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(b"x" * 300_000)
    pv("init", url, "--pack-size", "128K", "--object-lock", "governance", "--retention", "1d")
    pv("create", f"{url}::one", src)
    monkeypatch.setenv("PACKVAULT_RETENTION_EXTEND", "3d")  # as terraform sets it
    summary = handler({"action": "compact", "repository": url})
    retention = summary["compact"]["retention"]
    assert retention["mode"] == "GOVERNANCE"
    assert retention["objects_live"] > 0
    assert retention["objects_extended"] == retention["objects_live"]  # 1 day left < half of 3 days
    assert retention["requests"].get("PUT", 0) >= retention["objects_extended"]
    bucket = url.split("/")[2]
    pack = next(k for k in all_keys(moto_endpoint, bucket) if "/packs/data/" in k)
    until = retention_of(moto_endpoint, bucket, pack)["RetainUntilDate"]
    assert until > datetime.now(UTC) + timedelta(days=2, hours=23)


def test_compact_job_without_object_lock_has_no_retention_step(pv, moto_endpoint, make_s3_url, lambda_env):
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    summary = handler({"action": "compact", "repository": url})
    assert summary["compact"]["retention"] is None
