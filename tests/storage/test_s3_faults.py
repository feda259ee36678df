"""Retries and convergence through the fault-injecting proxy; clear errors when the service stays down."""

from __future__ import annotations

import os
import random
import socket
import time

import pytest
from borgstore.backends.errors import ObjectNotFound

from packvault.errors import EndpointUnreachable, ServiceUnavailable
from tests.support.s3servers import free_port


def proxied(url: str, upstream: str, proxy) -> str:
    return url.replace(upstream, proxy.endpoint)


def test_lost_response_to_create_only_put_converges(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    """The PUT lands, its answer is lost; the retry meets 412 and succeeds after comparing the object."""
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["lost_response"], methods=["PUT"], max_faults=1)
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy))
    data = os.urandom(300_000)
    be.store("packs/data/ab/abcd", data)
    assert proxy.faults["lost_response"] == 1
    stats = be.request_stats()
    assert stats["retries"] == 1
    assert stats["converged"] == 1
    assert stats["PUT"] == 2  # the lost one and the conditional retry
    assert be.load("packs/data/ab/abcd") == data


def test_lost_response_to_config_update_converges(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=0.0, kinds=["lost_response"], methods=["PUT"], max_faults=1)
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy))
    be.store("config/main", b"v1")
    proxy.fault_rate = 1.0
    be.store("config/main", b"v2")  # If-Match lands, answer lost, retry gets 412: it was our own write
    assert proxy.faults["lost_response"] == 1
    assert be.request_stats()["converged"] == 1
    be.store("config/main", b"v3")  # and the remembered ETag is the new one
    assert be.load("config/main") == b"v3"


def test_lost_response_to_multipart_completion_converges(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(
        moto_endpoint, fault_rate=1.0, kinds=["lost_response"], methods=["POST"], path_contains="uploadId", max_faults=1
    )
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy), multipart_threshold="5M")
    data = os.urandom(11 * 1024 * 1024)
    be.store("packs/data/cd/cdef", data)
    assert proxy.faults["lost_response"] == 1
    assert be.load("packs/data/cd/cdef") == data


@pytest.mark.slow
@pytest.mark.parametrize("upstream", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def test_many_operations_under_random_faults(upstream, request, open_s3, make_s3_url, fault_proxy):
    """15 % of all requests fail in every way the proxy knows; everything still ends up correct."""
    endpoint = request.getfixturevalue(f"{upstream}_endpoint")
    url = make_s3_url(endpoint)
    proxy = fault_proxy(endpoint, fault_rate=0.15, seed=1234, delay_seconds=0.05)
    be = open_s3(endpoint, url=proxied(url, endpoint, proxy), retry_attempts="12", retry_max_seconds="60")
    rng = random.Random(99)
    expected: dict[str, bytes] = {}
    for i in range(120):
        name = f"packs/meta/{i:04x}"
        data = rng.randbytes(rng.choice([10, 1000, 70_000]))
        be.store(name, data)
        expected[name] = data
        if i % 3 == 0:
            assert be.load(name) == data
            assert be.load(name, offset=-5, size=3) == data[-5:-2]
        if i % 10 == 9:
            victim = sorted(expected)[rng.randrange(len(expected))]
            be.delete(victim)
            del expected[victim]
            with pytest.raises(ObjectNotFound):
                be.delete(victim)
        if i % 20 == 19:
            assert [f"packs/meta/{x.name}" for x in be.list("packs/meta")] == sorted(expected)
    for j in range(5):
        be.store("config/main", f"config {j}".encode())
        assert be.load("config/main") == f"config {j}".encode()
    for name, data in expected.items():
        assert be.load(name) == data
    assert [f"packs/meta/{x.name}" for x in be.list("packs/meta")] == sorted(expected)
    assert all(proxy.faults[k] > 0 for k in ("503", "500", "drop", "delay", "lost_response")), proxy.faults
    stats = be.request_stats()
    assert stats["retries"] >= proxy.total_faults - proxy.faults["delay"]


def test_persistent_503_ends_with_clear_error_within_bound(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=0.0, kinds=["503"])
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy), retry_attempts="50", retry_max_seconds="2")
    proxy.fault_rate = 1.0
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        be.store("packs/meta/aa", b"x")
    elapsed = time.monotonic() - started
    assert elapsed < 8  # the bound, plus a loaded machine's slack; 50 attempts would take far longer
    message = info.value.one_line()
    assert proxy.endpoint in message and "PUT" in message and "packs/meta/aa" in message
    assert info.value.exit_code == 2
    assert proxy.faults["503"] >= 3  # it did retry


def test_attempt_bound(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=0.0, kinds=["500"])
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy), retry_attempts="3", retry_max_seconds="30")
    proxy.fault_rate = 1.0
    with pytest.raises(ServiceUnavailable):
        be.load("index/whatever")
    # exactly three attempts; one of them may die on a pooled connection the proxy had dropped before it
    # reaches the proxy (also a retryable failure), so the proxy sees two or three of them
    assert be.request_stats()["GET"] == 3 and be.request_stats()["retries"] == 2
    assert proxy.faults["500"] in (2, 3), (proxy.faults, proxy.requests, be.request_stats())


def test_closed_port_is_unreachable_within_bound(s3_env):
    from packvault.storage.s3 import open_s3_backend
    from packvault.storage.settings import from_environment

    port = free_port()  # nothing listens there
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    be = open_s3_backend(
        f"s3://bucket?endpoint=http://127.0.0.1:{port}",
        {"retry_max_seconds": "2"},
        settings=from_environment(os.environ),
    )
    started = time.monotonic()
    with pytest.raises(EndpointUnreachable) as info:
        be.open()
    assert time.monotonic() - started < 8
    assert f"127.0.0.1:{port}" in str(info.value)
    assert info.value.exit_code == 2
