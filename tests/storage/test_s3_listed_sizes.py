"""A server-side copy checks each range against its source's size; a listing already told the size of every
create-only object (packs), so compact's copy-forward sends no HEAD per source after listing them (issue 21)."""

from __future__ import annotations

import os

import pytest
from borgstore.backends.errors import ObjectNotFound, ReadRangeError

from tests.support.s3servers import s3_client

MiB = 1024 * 1024


def _two_packs(be) -> tuple[bytes, bytes]:
    a, b = os.urandom(6 * MiB), os.urandom(6 * MiB)
    be.store("packs/data/aa/aa01", a)
    be.store("packs/data/bb/bb01", b)
    return a, b


def test_a_listed_pack_needs_no_head_before_its_copy(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    a, b = _two_packs(be)
    assert sorted(info.name for info in be.list_tree("packs/data")) == ["aa01", "bb01"]
    be.reset_request_stats()
    target = be.defrag(
        [("packs/data/aa/aa01", 0, len(a)), ("packs/data/bb/bb01", MiB, 5 * MiB)], target="packs/data/cc/cc01"
    )
    assert be.request_stats()["HEAD"] == 0
    assert be.load(target) == a + b[MiB:]


def test_without_a_listing_each_source_is_asked_for_its_size(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    a, b = _two_packs(be)
    be.reset_request_stats()
    be.defrag([("packs/data/aa/aa01", 0, len(a)), ("packs/data/bb/bb01", 0, len(b))], target="packs/data/cc/cc01")
    assert be.request_stats()["HEAD"] == 2


def test_a_range_past_the_listed_size_is_refused_before_any_write(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    a, _ = _two_packs(be)
    list(be.list_tree("packs/data"))
    with pytest.raises(ReadRangeError):
        be.defrag([("packs/data/aa/aa01", MiB, len(a))], target="packs/data/cc/cc01")
    keys = s3_client(moto_endpoint).list_objects_v2(Bucket=be.bucket, Prefix=be._key("packs/data/cc"))
    assert keys.get("KeyCount", 0) == 0


def test_a_pack_deleted_after_the_listing_is_not_trusted(moto_endpoint, open_s3):
    """Deleted through this backend: its listed size is forgotten; deleted by another client: the copy
    itself finds it missing."""
    be = open_s3(moto_endpoint)
    a, b = _two_packs(be)
    list(be.list_tree("packs/data"))
    be.discard_many(["packs/data/aa/aa01"])
    with pytest.raises(ObjectNotFound):
        be.defrag([("packs/data/aa/aa01", 0, len(a))], target="packs/data/cc/cc01")
    s3_client(moto_endpoint).delete_object(Bucket=be.bucket, Key=be._key("packs/data/bb/bb01"))
    with pytest.raises(ObjectNotFound):
        be.defrag([("packs/data/bb/bb01", 0, len(b))], target="packs/data/dd/dd01")


def test_objects_that_may_be_rewritten_are_not_remembered(moto_endpoint, open_s3):
    """config/ is replaced by compare-and-swap: a size listed once says nothing later."""
    be = open_s3(moto_endpoint)
    be.store("config/big", os.urandom(6 * MiB))
    list(be.list_tree("config"))
    be.store("config/big", os.urandom(MiB))
    with pytest.raises(ReadRangeError):
        be.defrag([("config/big", 0, 6 * MiB)], target="packs/data/cc/cc01")
