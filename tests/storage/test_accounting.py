"""Request accounting: the S3 backend counts HTTP requests, CountingBackend counts calls of any backend."""

from __future__ import annotations

import os

from borgstore.backends.posixfs import PosixFS
from borgstore.store import Store

from packvault.storage.accounting import CountingBackend
from packvault.storage.layout import STORE_CONFIG
from packvault.storage.s3 import open_s3_backend
from packvault.storage.settings import from_environment

REQUESTS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY")


def requests_only(stats):
    return {k: stats[k] for k in REQUESTS if stats[k]}


def test_counting_backend_maps_calls(tmp_path):
    be = CountingBackend(PosixFS(str(tmp_path / "r")))
    be.create()
    be.open()
    assert be.request_stats() == dict.fromkeys((*REQUESTS, "bytes_up", "bytes_down"), 0)
    be.store("index/a", b"12345")
    be.load("index/a")
    be.load("index/a", offset=1, size=2)
    be.info("index/a")
    list(be.list("index"))
    be.move("index/a", "index/b")
    be.gather([("index/b", 0, 2), ("index/b", 3, 2)])
    be.delete("index/b")
    stats = be.request_stats()
    assert requests_only(stats) == {"PUT": 1, "GET": 4, "HEAD": 1, "LIST": 1, "DELETE": 2, "COPY": 1}
    assert stats["bytes_up"] == 5 and stats["bytes_down"] == 5 + 2 + 4
    be.reset_request_stats()
    assert sum(be.request_stats().values()) == 0
    be.close()


def test_counting_backend_delegates_everything(tmp_path):
    store = Store(backend=CountingBackend(PosixFS(str(tmp_path / "r"))), config=STORE_CONFIG)
    store.create()
    with store:
        store.store("packs/data/aabb", b"0123456789")
        name = store.defrag([("aabb", 2, 3)], namespace="packs/data", algorithm="sha256")
        assert store.load(f"packs/data/{name}") == b"234"
        assert store.hash("packs/data/aabb")
        assert store.quota() == {"limit": -1, "usage": -1}
        stats = store.backend.request_stats()
    assert stats["PUT"] == 2 and stats["bytes_up"] == 13


def test_s3_request_numbers(moto_endpoint, make_s3_url):
    be = open_s3_backend(make_s3_url(moto_endpoint), {}, settings=from_environment(os.environ))
    be.create()
    assert requests_only(be.request_stats()) == {"LIST": 1}
    be.reset_request_stats()
    be.open()
    assert requests_only(be.request_stats()) == {"HEAD": 1}
    be.reset_request_stats()
    data = os.urandom(1000)
    be.store("packs/data/ab/abcd", data)
    assert requests_only(be.request_stats()) == {"PUT": 1}
    assert be.request_stats()["bytes_up"] == 1000
    be.reset_request_stats()
    be.load("packs/data/ab/abcd")
    be.load("packs/data/ab/abcd", offset=10, size=10)
    assert requests_only(be.request_stats()) == {"GET": 2}
    assert be.request_stats()["bytes_down"] == 1010
    be.reset_request_stats()
    be.gather([("packs/data/ab/abcd", 0, 10), ("packs/data/ab/abcd", 20, 10)])  # coalesced into one GET
    assert requests_only(be.request_stats()) == {"GET": 1}
    be.reset_request_stats()
    list(be.list("packs/data"))
    be.info("packs/data/ab/abcd")
    assert requests_only(be.request_stats()) == {"LIST": 1, "HEAD": 1}
    be.reset_request_stats()
    be.move("packs/data/ab/abcd", "packs/data/ab/abcd.del")
    assert requests_only(be.request_stats()) == {"COPY": 1, "DELETE": 1}
    be.reset_request_stats()
    be.delete("packs/data/ab/abcd.del")
    assert requests_only(be.request_stats()) == {"HEAD": 1, "DELETE": 1}
    assert be.request_stats()["retries"] == 0
    be.close()


def test_repository_create_through_store_costs_one_request(moto_endpoint, make_s3_url):
    store = Store(
        backend=open_s3_backend(make_s3_url(moto_endpoint), {}, settings=from_environment(os.environ)),
        config=STORE_CONFIG,
    )
    store.create()
    assert requests_only(store.backend.request_stats()) == {"LIST": 1}
