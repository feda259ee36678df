"""``init --object-lock MODE --retention D`` end to end on moto and LocalStack (issue 18)."""

from __future__ import annotations

import json
import os
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from packvault.repository.repository import Repository
from tests.support import objectlock
from tests.support.cli import tree_snapshot
from tests.support.settings import env_settings

KiB = 1024


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    return request.getfixturevalue(f"{request.param}_endpoint")


def _tree(root: Path, seed: int) -> Path:
    rnd = random.Random(seed)
    root.mkdir(parents=True)
    for i in range(4):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(200 * KiB + i))
    return root


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    path = url.split("://", 1)[1].split("?", 1)[0]
    bucket, _, prefix = path.partition("/")
    return bucket, prefix + "/"


def test_init_records_the_lock_and_every_write_is_retained(pv, tmp_path, endpoint, s3_env):
    url = objectlock.lock_url(endpoint)
    src = _tree(tmp_path / "src", seed=1)
    result = pv("init", url, "--pack-size", "256K", "--object-lock", "governance", "--retention", "7d")
    assert "Object Lock: governance" in result.out
    repo = Repository(url, settings=env_settings())
    repo.open()
    assert (repo.config.object_lock, repo.config.retention_seconds) == ("GOVERNANCE", 7 * 86400)
    repo.close()
    # later clients give no lock option: the policy comes from the repository config
    pv("create", f"{url}::a", src)
    pv("create", f"{url}::b", src)
    bucket, prefix = _bucket_and_prefix(url)
    keys = objectlock.all_keys(endpoint, bucket, prefix)
    namespaces = {key[len(prefix) :].split("/", 1)[0] for key in keys}
    assert {"packs", "index", "archives", "keys", "config", "names"} <= namespaces
    for key in keys:
        retention = objectlock.retention_of(endpoint, bucket, key)
        if key[len(prefix) :].startswith("locks/"):
            assert retention == {}, key
        else:
            assert objectlock.retained_for(retention, "GOVERNANCE", 7), (key, retention)
    pv("extract", f"{url}::b", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)


def test_init_refuses_a_bucket_without_object_lock(pv, endpoint, make_s3_url):
    result = pv("init", make_s3_url(endpoint), "--object-lock", "compliance", "--retention", "1d", expect=2)
    assert "Object Lock" in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_url_options_are_recorded_like_the_init_options(pv, endpoint, s3_env):
    url = objectlock.lock_url(endpoint, object_lock="compliance", retention="2d")
    pv("init", url)
    repo = Repository(url.split("&object_lock")[0], settings=env_settings())
    repo.open()
    assert (repo.config.object_lock, repo.config.retention_seconds) == ("COMPLIANCE", 2 * 86400)
    repo.close()


def test_lock_options_are_checked_before_anything_is_created(pv, tmp_path):
    for args in (("--object-lock", "governance"), ("--retention", "3d")):
        result = pv("init", tmp_path / f"r{len(args[0])}", *args, expect=2)
        assert "Traceback" not in result.err
    local = tmp_path / "local"
    result = pv("init", local, "--object-lock", "governance", "--retention", "3d", expect=2)
    assert "s3://" in result.err and len(result.err.strip().splitlines()) == 1
    assert not local.exists() or not any(local.iterdir())


def test_a_url_mode_cannot_downgrade_the_recorded_one(pv, endpoint, s3_env):
    url = objectlock.lock_url(endpoint, object_lock="compliance", retention="2d")
    pv("init", url)
    base = url.split("&object_lock")[0]
    result = pv("create", f"{base}&object_lock=governance&retention=1d::a", os.devnull, expect=2)
    assert "disagrees" in result.err


def _retentions(endpoint: str, url: str) -> dict[str, dict]:
    bucket, prefix = _bucket_and_prefix(url)
    return {
        key[len(prefix) :]: objectlock.retention_of(endpoint, bucket, key)
        for key in objectlock.all_keys(endpoint, bucket, prefix)
    }


def test_retention_extend_renews_live_objects_only(pv, tmp_path, endpoint, s3_env):
    url = objectlock.lock_url(endpoint)
    src = _tree(tmp_path / "src", seed=3)
    pv("init", url, "--pack-size", "256K", "--object-lock", "governance", "--retention", "2d")
    pv("create", f"{url}::a", src)
    # fresh objects have almost 2 days left: with the default (renew below 1 day) nothing is due
    quiet = json.loads(pv("retention", "extend", url, "--json").out)["retention"]
    assert quiet["objects_live"] > 0 and quiet["objects_extended"] == 0
    assert quiet["objects_current"] == quiet["objects_live"]
    pv("delete", f"{url}::a")  # its entry becomes archives/<name>.del: no longer live
    (tmp_path / "src2").mkdir()
    (tmp_path / "src2" / "x").write_bytes(b"x" * 1000)
    pv("create", f"{url}::b", tmp_path / "src2")
    result = json.loads(pv("retention", "extend", url, "--retention", "10d", "--renew-below", "5d", "--json").out)
    report = result["retention"]
    assert report["objects_extended"] == report["objects_live"] > 0
    assert result["requests"]["PUT"] >= report["objects_extended"]  # one PutObjectRetention per live object
    # no compact ran, so the index still references every pack: all of them are live
    retentions = _retentions(endpoint, url)
    assert any(name.endswith(".del") for name in retentions)
    for name, retention in retentions.items():
        if name.startswith("locks/"):
            assert retention == {}, name
            continue
        live = not name.startswith(("names/", "tombstones/")) and not name.endswith(".del")
        assert objectlock.retained_for(retention, "GOVERNANCE", 10 if live else 2), (name, retention)
    again = json.loads(pv("retention", "extend", url, "--renew-below", "1d", "--json").out)["retention"]
    assert again["objects_extended"] == 0  # 10 days left: nothing to do, and never shortened to 2 days
    assert objectlock.retained_for(_retentions(endpoint, url)["config/repository"], "GOVERNANCE", 10)


def test_retention_extend_refuses_a_repository_without_lock(pv, tmp_path):
    repo = tmp_path / "plain"
    pv("init", repo)
    result = pv("retention", "extend", repo, expect=2)
    assert "no Object Lock" in result.err and len(result.err.strip().splitlines()) == 1


def test_compact_extends_retention_and_keeps_the_repository_restorable(pv, tmp_path, endpoint, s3_env):
    url = objectlock.lock_url(endpoint)
    pv("init", url, "--pack-size", "256K", "--object-lock", "governance", "--retention", "1d")
    pv("create", f"{url}::a", _tree(tmp_path / "a", seed=4))
    src = _tree(tmp_path / "b", seed=5)
    pv("create", f"{url}::b", src)
    pv("delete", f"{url}::a")
    out = pv("compact", url, "--min-age", "0").out
    assert "Object Lock (governance)" in out
    pv("check", url)
    pv("extract", f"{url}::b", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)


def test_compact_leaves_retained_packs_and_collects_them_after_expiry(pv, tmp_path, moto_endpoint, s3_env):
    endpoint = moto_endpoint
    url = objectlock.lock_url(endpoint)
    pv("init", url, "--pack-size", "128K", "--object-lock", "governance", "--retention", "1d")
    pv("create", f"{url}::a", _tree(tmp_path / "a", seed=6))
    src = _tree(tmp_path / "b", seed=7)
    pv("create", f"{url}::b", src)
    pv("delete", f"{url}::a")
    result = json.loads(pv("compact", url, "--min-age", "0", "--json").out)["compact"]
    held = result["packs_held"]
    assert result["retention"]["objects_live"] > 0  # the extension step ran after compact
    assert held and result["packs_dropped"] >= len(held)
    bucket, prefix = _bucket_and_prefix(url)
    present = objectlock.all_keys(endpoint, bucket, prefix + "packs/")
    assert all(any(key.endswith(entry["pack"]) for key in present) for entry in held)
    text = pv("compact", url, "--min-age", "0").out
    assert "held by retention until" in text
    pv("extract", f"{url}::b", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)
    # the retention runs out (here: lifted by an administrator allowed to bypass governance retention)
    client = objectlock.s3_client(endpoint)
    for key in present:
        if any(key.endswith(entry["pack"]) for entry in held):
            client.put_object_retention(
                Bucket=bucket,
                Key=key,
                Retention={"Mode": "GOVERNANCE", "RetainUntilDate": datetime(2000, 1, 1, tzinfo=UTC)},
                BypassGovernanceRetention=True,
            )
    again = json.loads(pv("compact", url, "--min-age", "0", "--json").out)["compact"]
    assert again["packs_held"] == []
    remaining = objectlock.all_keys(endpoint, bucket, prefix + "packs/")
    assert not any(key.endswith(entry["pack"]) for entry in held for key in remaining)
    pv("check", url)
