"""Convergent create-only writes, compare-and-swap config writes, storage classes, create/open errors."""

from __future__ import annotations

import logging
import os

import pytest

from packvault.errors import BucketNotFound, ConflictError, IntegrityError, RepositoryAlreadyExists
from packvault.storage.s3 import open_s3_backend
from packvault.storage.settings import from_environment
from tests.support.s3servers import s3_client


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    return request.getfixturevalue(f"{request.param}_endpoint")


def test_create_only_converges_on_same_content_and_refuses_different(endpoint, open_s3):
    be = open_s3(endpoint)
    be.store("packs/meta/aa", b"content")
    be.store("packs/meta/aa", b"content")  # a repeated write of the same bytes succeeds
    assert be.request_stats()["converged"] == 1
    with pytest.raises(IntegrityError):
        be.store("packs/meta/aa", b"CONTENT")
    with pytest.raises(IntegrityError):
        be.store("packs/meta/aa", b"content, longer")
    assert be.load("packs/meta/aa") == b"content"  # never overwritten


def test_create_only_compares_foreign_objects_by_content(endpoint, open_s3):
    """An object without our MD5 metadata (written by another tool) is compared by ETag."""
    be = open_s3(endpoint)
    s3_client(endpoint).put_object(Bucket=be.bucket, Key=be._key("index/f1"), Body=b"foreign")
    be.store("index/f1", b"foreign")
    with pytest.raises(IntegrityError):
        be.store("index/f1", b"foreigN")


def test_config_compare_and_swap(endpoint, open_s3, make_s3_url):
    url = make_s3_url(endpoint)
    a = open_s3(endpoint, url=url)
    b = open_s3(endpoint, url=url, create=False)
    a.store("config/main", b"v1")
    with pytest.raises(ConflictError):
        b.store("config/main", b"v1-by-b")  # b never saw it: If-None-Match fails
    assert b.load("config/main") == b"v1"
    b.store("config/main", b"v2")  # b read v1: If-Match succeeds
    with pytest.raises(ConflictError):
        a.store("config/main", b"v2-by-a")  # a's view is stale
    assert a.load("config/main") == b"v2"
    a.store("config/main", b"v3")
    assert b.load("config/main") == b"v3"
    a.delete("config/main")
    a.store("config/main", b"v4")  # after delete, it is a fresh create again
    assert a.load("config/main") == b"v4"


def test_storage_class_only_for_data_packs(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint, storage_class="STANDARD_IA")
    be.store("packs/data/ab/abcd", b"data")
    be.store("packs/meta/ef", b"meta")
    be.store("index/ix", b"index")
    client = s3_client(moto_endpoint)

    def storage_class(name):
        return client.head_object(Bucket=be.bucket, Key=be._key(name)).get("StorageClass", "STANDARD")

    assert storage_class("packs/data/ab/abcd") == "STANDARD_IA"
    assert storage_class("packs/meta/ef") == "STANDARD"
    assert storage_class("index/ix") == "STANDARD"
    be.move("packs/data/ab/abcd", "packs/data/ab/abcd.del")  # soft delete keeps the class
    assert storage_class("packs/data/ab/abcd.del") == "STANDARD_IA"


def test_create_refuses_non_empty_prefix_and_costs_one_request(endpoint, make_s3_url):
    url = make_s3_url(endpoint, prefix="deep/repo")
    be = open_s3_backend(url, {}, settings=from_environment(os.environ))
    be.create()
    assert be.request_stats()["LIST"] == 1
    assert sum(be.request_stats()[k] for k in ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY")) == 1
    be.open()
    be.store("keys/k", b"key")
    be.close()
    with pytest.raises(RepositoryAlreadyExists):
        open_s3_backend(url, {}, settings=from_environment(os.environ)).create()
    # a sibling prefix is still free
    open_s3_backend(url.replace("deep/repo", "deep/other"), {}, settings=from_environment(os.environ)).create()


def test_destroy_removes_everything_under_the_prefix_only(endpoint, make_s3_url):
    url = make_s3_url(endpoint, prefix="r1")
    be = open_s3_backend(url, {}, settings=from_environment(os.environ))
    be.create()
    be.open()
    for i in range(5):
        be.store(f"packs/data/0{i}/0{i}aa", os.urandom(100))
    be.close()
    client = s3_client(endpoint)
    client.put_object(Bucket=be.bucket, Key="r10/keep", Body=b"neighbour")  # same string prefix, other dir
    be.destroy()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=be.bucket).get("Contents", [])]
    assert keys == ["r10/keep"]


def test_missing_bucket(endpoint, s3_env):
    be = open_s3_backend(
        f"s3://no-such-bucket-pv-{os.getpid()}?endpoint={endpoint}", {}, settings=from_environment(os.environ)
    )
    with pytest.raises(BucketNotFound) as info:
        be.open()
    assert info.value.exit_code == 2
    with pytest.raises(BucketNotFound):
        be.create()


def test_no_conditional_writes_fallback_warns_once(moto_endpoint, open_s3, make_s3_url, fault_proxy, caplog):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=0.0, no_conditional_writes=True)
    be = open_s3(moto_endpoint, url=url.replace(moto_endpoint, proxy.endpoint))
    with caplog.at_level(logging.WARNING, logger="packvault.storage.s3"):
        be.store("packs/meta/aa", b"one")
        assert conditional_warnings(caplog) == 1
        be.store("packs/meta/aa", b"one")  # converges by HEAD, no second warning
        with pytest.raises(IntegrityError):
            be.store("packs/meta/aa", b"two")
        be.store("config/main", b"c1")
        be.store("config/main", b"c2")
    assert conditional_warnings(caplog) == 1
    assert be.load("config/main") == b"c2"
    assert proxy.rejected_conditional == 1
    assert be.load("packs/meta/aa") == b"one"


def conditional_warnings(caplog) -> int:
    return sum(
        1
        for r in caplog.records
        if r.levelno == logging.WARNING and "does not support conditional writes" in r.getMessage()
    )
