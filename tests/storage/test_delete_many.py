"""``discard_many``: many names deleted in few requests (S3 DeleteObjects, 1000 keys per POST), failures per
key reported like a failed single delete, and a plain default (one delete per name) for every other backend."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from packvault.errors import AccessDenied
from packvault.storage import backend as backend_module
from tests.support.s3servers import s3_client

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from countingproxy import CountingProxy  # noqa: E402 - the bench directory is not a package


def keys_under(endpoint: str, bucket: str, prefix: str) -> list[str]:
    paginator = s3_client(endpoint).get_paginator("list_objects_v2")
    return [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]


def test_many_names_one_post_per_thousand(moto_endpoint, open_s3):
    """1500 names (and one already gone) in two DeleteObjects POSTs, at the wire and in the backend's table."""
    with CountingProxy(moto_endpoint) as proxy:
        be = open_s3(proxy.url)
        names = [f"packs/data/{i % 256:02x}/{i:064x}" for i in range(1500)]
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda name: be.store(name, b"x"), names))
        be.store("packs/meta/kept", b"kept")
        assert len(keys_under(moto_endpoint, be.bucket, be._key("packs/"))) == 1501
        be.reset_request_stats()
        before = proxy.snapshot()
        be.discard_many([*names, "packs/data/00/never-written"])
        wire = proxy.snapshot()  # with every request answered so far counted
    assert keys_under(moto_endpoint, be.bucket, be._key("packs/")) == [be._key("packs/meta/kept")]
    posts = wire["POST"] - before["POST"]
    deletes = wire["DELETE"] - before["DELETE"]
    assert (posts, deletes) == (2, 0)
    assert backend_module.DELETE_BATCH == 1000
    stats = be.request_stats()
    assert stats["DELETE"] == 2 and stats["HEAD"] == 0 and stats["LIST"] == 0


def test_nothing_to_delete_sends_nothing(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    be.reset_request_stats()
    be.discard_many([])
    assert be.request_stats()["DELETE"] == 0


def test_a_key_the_service_refuses_raises_like_a_single_delete(moto_endpoint, open_s3, fault_proxy):
    """S3 answers a multi-object delete with 200 and an error per key it could not delete (a policy denying
    s3:DeleteObject, Object Lock retention): that is the same AccessDenied as a refused DELETE, naming the key."""
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["refuse_delete"], methods=["DELETE", "POST"])
    be = open_s3(proxy.endpoint)
    be.store("index/aa", b"fragment")
    be.store("index/bb", b"fragment")
    with pytest.raises(AccessDenied) as single:
        be.discard("index/aa")
    with pytest.raises(AccessDenied) as many:
        be.discard_many(["index/aa", "index/bb"])
    assert type(many.value) is type(single.value)
    assert be._key("index/aa") in many.value.one_line()
    assert "\n" not in many.value.one_line()
    assert sorted(keys_under(moto_endpoint, be.bucket, be._key("index/"))) == [
        be._key("index/aa"),
        be._key("index/bb"),
    ]


def test_keys_refused_for_a_passing_reason_are_sent_again(moto_endpoint, open_s3, fault_proxy):
    """A per-key InternalError is retried like a failed DELETE would be; the batch then completes."""
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["refuse_delete_500"], methods=["POST"], max_faults=1)
    be = open_s3(proxy.endpoint)
    be.store("index/aa", b"fragment")
    be.store("index/bb", b"fragment")
    be.reset_request_stats()
    be.discard_many(["index/aa", "index/bb"])
    assert proxy.faults["refuse_delete_500"] == 1
    assert be.request_stats()["retries"] == 1 and be.request_stats()["DELETE"] == 2
    assert keys_under(moto_endpoint, be.bucket, be._key("index/")) == []


def test_every_backend_deletes_what_it_is_given(backend):
    """The default (one delete per name, a missing name no error) and S3's batch agree."""
    for name in ("index/a1", "index/a2", "index/a3"):
        backend.store(name, b"v")
    backend.discard_many(["index/a1", "index/a3", "index/gone"])
    assert [info.name for info in backend.list("index")] == ["a2"]
