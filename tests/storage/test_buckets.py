"""``storage.buckets``: plain objects of a user's bucket for the archive layer (backup source, restore
target), on a real moto server."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from packvault.errors import StorageError
from packvault.storage.buckets import NOT_FOUND, PRECONDITION_FAILED, Buckets, parse_location, refusal
from packvault.storage.settings import from_environment
from tests.support.s3servers import new_bucket, s3_client

MiB = 1024 * 1024


def md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


@pytest.fixture
def bucket(moto_endpoint, s3_env):
    name = new_bucket(moto_endpoint)
    buckets = Buckets(extra_counts=("resumed",))
    return buckets.bucket(parse_location(f"s3://{name}?endpoint={moto_endpoint}", from_environment(os.environ)))


def test_list_head_and_missing(bucket, moto_endpoint):
    client = s3_client(moto_endpoint)
    for key in ("p/b", "p/a", "q/c"):
        client.put_object(Bucket=bucket.name, Key=key, Body=key.encode())
    assert [(o.key, o.size) for o in bucket.list("p/")] == [("p/a", 3), ("p/b", 3)]
    head = bucket.head("q/c")
    assert head is not None and head.size == 3 and head.etag.strip('"') == hashlib.md5(b"q/c").hexdigest()
    assert bucket.head("q/none") is None


def test_missing_bucket_is_refused_as_not_found(moto_endpoint, s3_env):
    missing = Buckets().bucket(parse_location(f"s3://no-such-bucket-pv-x?endpoint={moto_endpoint}"))
    with pytest.raises(StorageError) as info:
        missing.check_exists("write")
    assert refusal(info.value) == NOT_FOUND


def test_conditional_puts(bucket):
    bucket.put("k", b"one", md5=md5(b"one"), create_only=True)
    with pytest.raises(StorageError) as info:
        bucket.put("k", b"two", md5=md5(b"two"), create_only=True)
    assert refusal(info.value) == PRECONDITION_FAILED
    with pytest.raises(StorageError) as info:
        bucket.put("k", b"two", md5=md5(b"two"), if_match='"0123"')
    assert refusal(info.value) == PRECONDITION_FAILED
    bucket.put("k", b"two", md5=md5(b"two"), if_match=bucket.head("k").etag)
    reader = bucket.open("k", etag=bucket.head("k").etag, size=3)
    assert reader.read(3) == b"two" and reader.replaced is None
    reader.close()


def test_multipart_upload_completes_or_leaves_nothing(bucket, moto_endpoint):
    parts = [os.urandom(5 * MiB), os.urandom(100)]
    upload = bucket.upload("big")
    for part in parts:
        upload.add_part(part, md5(part))
    upload.complete(create_only=True)
    assert bucket.head("big").size == sum(map(len, parts))
    again = bucket.upload("big")
    again.add_part(parts[0], md5(parts[0]))
    with pytest.raises(StorageError) as info:
        again.complete(create_only=True)
    assert refusal(info.value) == PRECONDITION_FAILED
    again.abort()
    assert s3_client(moto_endpoint).list_multipart_uploads(Bucket=bucket.name).get("Uploads", []) == []


def test_an_object_replaced_after_listing_is_read_as_it_is_now(bucket, moto_endpoint):
    client = s3_client(moto_endpoint)
    client.put_object(Bucket=bucket.name, Key="f", Body=b"old")
    listed = bucket.head("f")
    client.put_object(Bucket=bucket.name, Key="f", Body=b"newer")
    reader = bucket.open("f", etag=listed.etag, size=listed.size)
    assert reader.replaced is not None and reader.replaced.size == 5 and reader.replaced.etag != listed.etag
    assert reader.read(5) == b"newer"
    reader.close()
