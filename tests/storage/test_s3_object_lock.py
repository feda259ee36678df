"""S3 Object Lock on every write path: single PUT, multipart upload, server-side copy (move, defrag).

moto and LocalStack both enforce the lock: a DELETE of a locked version is refused, and a write with lock
headers into a bucket without Object Lock is refused, which Packvault turns into one line.
"""

from __future__ import annotations

import os

import botocore.exceptions as bex
import pytest

from packvault.errors import InvalidRepositoryURL
from packvault.storage.s3.config import parse_s3_url
from packvault.storage.s3.errors import ObjectLockUnavailable
from tests.support import objectlock
from tests.support.s3servers import s3_client

MiB = 1024 * 1024


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    return request.getfixturevalue(f"{request.param}_endpoint")


def lock_url(endpoint: str, mode: str = "governance", retention: str = "3d", **query: str) -> str:
    return objectlock.lock_url(endpoint, object_lock=mode, retention=retention, **query)


def retention_of(endpoint: str, backend, name: str) -> dict:
    return objectlock.retention_of(endpoint, backend.bucket, backend._key(name))


def assert_retained(endpoint: str, backend, name: str, mode: str, days: int) -> None:
    retention = retention_of(endpoint, backend, name)
    assert objectlock.retained_for(retention, mode, days), retention


def test_url_options_parse_and_validate():
    s = parse_s3_url("s3://bkt/p?object_lock=Compliance&retention=30d")
    assert (s.object_lock, s.retention_seconds) == ("COMPLIANCE", 30 * 86400)
    assert parse_s3_url("s3://bkt/p").object_lock is None
    s = parse_s3_url("s3://bkt/p?object_lock=governance", {"retention": "2w"})
    assert (s.object_lock, s.retention_seconds) == ("GOVERNANCE", 14 * 86400)
    for url in (
        "s3://bkt/p?object_lock=legal&retention=1d",
        "s3://bkt/p?object_lock=governance",
        "s3://bkt/p?retention=1d",
        "s3://bkt/p?object_lock=governance&retention=30",
    ):
        with pytest.raises(InvalidRepositoryURL):
            parse_s3_url(url)


def test_single_puts_get_retention_but_lock_records_do_not(endpoint, open_s3):
    be = open_s3(endpoint, url=lock_url(endpoint, "governance", "3d"))
    names = [
        "packs/data/ab/ab01",
        "packs/meta/cd02",
        "index/f1",
        "archives/a1",
        "keys/k1",
        "names/n-1",
        "tombstones/t1",
        "config/repository",
    ]
    for name in names:
        be.store(name, b"bytes of " + name.encode())
    assert be.store_new("names/n-2", b"claim")
    for name in names + ["names/n-2"]:
        assert_retained(endpoint, be, name, "GOVERNANCE", 3)
    be.store("locks/l1", b"lock record")
    assert retention_of(endpoint, be, "locks/l1") == {}
    be.discard("locks/l1")  # a lock record can be released


def test_delete_of_a_locked_object_is_refused_by_the_service(endpoint, open_s3):
    be = open_s3(endpoint, url=lock_url(endpoint, "compliance", "2d"))
    be.store("packs/meta/ee", b"pack")
    client = s3_client(endpoint)
    version = client.head_object(Bucket=be.bucket, Key=be._key("packs/meta/ee"))["VersionId"]
    with pytest.raises(bex.ClientError):
        client.delete_object(Bucket=be.bucket, Key=be._key("packs/meta/ee"), VersionId=version)
    assert be.load("packs/meta/ee") == b"pack"


def test_multipart_upload_gets_retention(endpoint, open_s3):
    be = open_s3(
        endpoint, url=lock_url(endpoint, "governance", "5d"), multipart_threshold="5M", multipart_part_size="5M"
    )
    data = os.urandom(11 * MiB)
    be.store("packs/data/12/1234", data)
    head = s3_client(endpoint).head_object(Bucket=be.bucket, Key=be._key("packs/data/12/1234"))
    assert "-" in head["ETag"]  # it was a multipart upload
    assert_retained(endpoint, be, "packs/data/12/1234", "GOVERNANCE", 5)
    assert be.load("packs/data/12/1234") == data


def test_server_side_copies_get_retention(endpoint, open_s3):
    be = open_s3(endpoint, url=lock_url(endpoint, "governance", "4d"))
    be.store("archives/a1", b"archive entry")
    be.move("archives/a1", "archives/a1.del")
    assert_retained(endpoint, be, "archives/a1.del", "GOVERNANCE", 4)
    assert be.load("archives/a1.del") == b"archive entry"
    # the locked original stays as a version behind a delete marker
    versions = s3_client(endpoint).list_object_versions(Bucket=be.bucket, Prefix=be._key("archives/a1"))
    originals = [v for v in versions.get("Versions", []) if v["Key"] == be._key("archives/a1")]
    markers = [m for m in versions.get("DeleteMarkers", []) if m["Key"] == be._key("archives/a1")]
    assert len(originals) == 1 and len(markers) == 1


def test_defrag_target_gets_retention(endpoint, open_s3):
    be = open_s3(
        endpoint, url=lock_url(endpoint, "governance", "4d"), multipart_threshold="5M", multipart_part_size="5M"
    )
    a, b = os.urandom(6 * MiB), os.urandom(6 * MiB)
    be.store("packs/data/aa/aa01", a)
    be.store("packs/data/bb/bb01", b)
    target = be.defrag(
        [("packs/data/aa/aa01", 0, len(a)), ("packs/data/bb/bb01", 0, len(b))], target="packs/data/cc/cc01"
    )
    assert_retained(endpoint, be, target, "GOVERNANCE", 4)
    assert be.load(target) == a + b


def test_bucket_without_object_lock_refuses_to_write(endpoint, open_s3, make_s3_url):
    be = open_s3(endpoint, url=make_s3_url(endpoint), object_lock="governance", retention="1d")
    with pytest.raises(ObjectLockUnavailable) as info:
        be.store("packs/meta/aa", b"pack")
    assert "Object Lock" in info.value.one_line()
    assert "\n" not in info.value.one_line()
