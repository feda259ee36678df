"""A writer-role attacker against a repository with Object Lock (issue 18).

moto evaluates no IAM policy, so the attacker is any client with the bucket's credentials: it tries to
delete, overwrite and shorten the retention of packs and archive entries.  What the lock guarantees is that
every locked version survives; what the attacker can do is hide them (a delete marker, a newer version).
``check`` detects that; the documented recovery (docs/s3-backend.md, "Object Lock") removes the attacker's
unlocked versions and delete markers, after which the repository restores bit-exact.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import botocore.exceptions as bex
import pytest

from tests.support import objectlock
from tests.support.cli import tree_snapshot
from tests.support.s3servers import s3_client

KiB = 1024


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def server(request) -> tuple[str, str]:
    """(kind, endpoint).  moto accepts a PutObjectRetention that shortens a retention (AWS and LocalStack
    refuse it), so that step is asserted on LocalStack only."""
    return request.param, request.getfixturevalue(f"{request.param}_endpoint")


def _tree(root: Path) -> Path:
    rnd = random.Random(7)
    root.mkdir(parents=True)
    for i in range(3):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(150 * KiB + i))
    return root


PROTECTED = ("packs/", "index/", "archives/", "keys/")


def _recover(client, bucket: str, prefix: str) -> list[str]:
    """The documented recovery: under the protected namespaces, delete every delete marker and every version
    without a retention that hides an older one.  Returns the keys that were repaired."""
    repaired = []
    versions = client.list_object_versions(Bucket=bucket, Prefix=prefix)
    for marker in versions.get("DeleteMarkers", []):
        if marker["Key"][len(prefix) :].startswith(PROTECTED):
            client.delete_object(Bucket=bucket, Key=marker["Key"], VersionId=marker["VersionId"])
            repaired.append(marker["Key"])
    by_key: dict[str, list[dict]] = {}
    for version in versions.get("Versions", []):
        by_key.setdefault(version["Key"], []).append(version)
    for key, listed in by_key.items():
        if len(listed) < 2 or not key[len(prefix) :].startswith(PROTECTED):
            continue
        for version in listed:
            head = client.head_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
            if "ObjectLockMode" not in head:
                client.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
                repaired.append(key)
    return sorted(repaired)


@pytest.mark.parametrize("mode", ["governance", "compliance"])
def test_attacker_cannot_destroy_a_locked_repository(pv, tmp_path, server, s3_env, mode):
    kind, endpoint = server
    url = objectlock.lock_url(endpoint)
    src = _tree(tmp_path / "src")
    pv("init", url, "--pack-size", "128K", "--object-lock", mode, "--retention", "3d")
    pv("create", f"{url}::a", src)
    bucket = url.split("://", 1)[1].split("/", 1)[0]
    prefix = "repo/"
    client = s3_client(endpoint)
    keys = objectlock.all_keys(endpoint, bucket, prefix)
    packs = [k for k in keys if k.startswith(prefix + "packs/data/")]
    entries = [k for k in keys if k.startswith(prefix + "archives/")]
    assert packs and entries
    victims = packs[:2] + entries
    # 1. deleting a locked version is refused
    for key in victims:
        version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
        with pytest.raises(bex.ClientError):
            client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    # 2. shortening the retention is refused (GOVERNANCE: without the bypass permission)
    for key in victims if kind == "localstack" else []:
        with pytest.raises(bex.ClientError):
            client.put_object_retention(
                Bucket=bucket,
                Key=key,
                Retention={"Mode": mode.upper(), "RetainUntilDate": datetime.now(UTC) + timedelta(hours=1)},
            )
        assert objectlock.retained_for(objectlock.retention_of(endpoint, bucket, key), mode.upper(), 3)
    # 3. overwriting makes a new (unlocked) version; a plain delete makes a delete marker: both only hide
    client.put_object(Bucket=bucket, Key=packs[0], Body=b"ransom note")
    client.delete_object(Bucket=bucket, Key=packs[1])
    client.put_object(Bucket=bucket, Key=entries[0], Body=b"ransom note")
    assert pv("check", url, expect=None).rc != 0  # check sees the damage
    # the documented recovery brings the locked versions back to the top
    assert _recover(client, bucket, prefix) == sorted([packs[0], packs[1], entries[0]])
    pv("check", url)
    pv("extract", f"{url}::a", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)
