"""Conditional writes under the AWS semantics the emulators do not show by themselves: racing writes (409),
writes that landed although the answer says 412, services that ignore the conditions, the namespace write
policy, and re-stores of large create-only objects.

What these tests do not claim: that two concurrent ``CompleteMultipartUpload(If-None-Match: *)`` with
different content cannot both succeed.  Neither moto nor LocalStack makes that completion atomic (both let
every racer win), so only AWS itself can show it; see docs/s3-backend.md.
"""

from __future__ import annotations

import logging
import os

import pytest

from packvault.errors import IntegrityError
from packvault.storage import layout
from packvault.storage.layout import WRITE_POLICY, WriteMode, WritePolicy
from packvault.storage.s3 import open_s3_backend
from packvault.storage.settings import from_environment
from tests.storage.test_s3_writes import conditional_warnings
from tests.support.s3servers import s3_client

MiB = 1024 * 1024


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    return request.getfixturevalue(f"{request.param}_endpoint")


def proxied(url: str, upstream: str, proxy) -> str:
    return url.replace(upstream, proxy.endpoint)


def no_uploads_left(endpoint: str, bucket: str) -> bool:
    return s3_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# --- 409 ConditionalRequestConflict ------------------------------------------------------------------------


def test_409_on_a_conditional_put_is_retried(endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(endpoint)
    proxy = fault_proxy(endpoint, fault_rate=0.0, kinds=["409"], methods=["PUT"])
    be = open_s3(endpoint, url=proxied(url, endpoint, proxy))
    proxy.fault_rate, proxy.max_faults = 1.0, 1
    be.store("packs/meta/aa", b"pack")
    proxy.max_faults = 2
    be.store("config/main", b"v1")
    assert proxy.faults["409"] == 2
    assert be.request_stats()["retries"] == 2
    assert be.load("packs/meta/aa") == b"pack"
    assert be.load("config/main") == b"v1"
    be.store("config/main", b"v2")  # the ETag of the retried write was remembered
    assert be.load("config/main") == b"v2"


def test_409_on_multipart_completion_starts_the_upload_again(endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(endpoint)
    proxy = fault_proxy(
        endpoint, fault_rate=1.0, kinds=["409"], methods=["POST"], path_contains="uploadId", max_faults=1
    )
    be = open_s3(endpoint, url=proxied(url, endpoint, proxy), multipart_threshold="5M", multipart_part_size="5M")
    be.reset_request_stats()
    data = os.urandom(11 * MiB)
    be.store("packs/data/cd/cdef", data)
    assert proxy.faults["409"] == 1
    stats = be.request_stats()
    assert stats["PUT"] == 2 * (1 + 3 + 1)  # create, three parts, complete; all of it twice
    assert stats["bytes_up"] == 2 * len(data)
    assert be.load("packs/data/cd/cdef") == data
    assert no_uploads_left(endpoint, be.bucket)


def test_409_on_every_completion_gives_up_cleanly(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    from packvault.errors import ConflictError

    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["409"], methods=["POST"], path_contains="uploadId")
    be = open_s3(
        moto_endpoint,
        url=proxied(url, moto_endpoint, proxy),
        multipart_threshold="5M",
        multipart_part_size="5M",
        retry_attempts="3",
    )
    with pytest.raises(ConflictError):
        be.store("packs/data/cd/cdef", os.urandom(6 * MiB))
    assert proxy.faults["409"] == 3
    assert not be.info("packs/data/cd/cdef").exists
    assert no_uploads_left(moto_endpoint, be.bucket)


# --- 412 answered to a write that landed ------------------------------------------------------------------


def test_412_after_the_write_landed_converges(endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(endpoint)
    proxy = fault_proxy(endpoint, fault_rate=0.0, kinds=["landed_412"])
    be = open_s3(endpoint, url=proxied(url, endpoint, proxy), multipart_threshold="5M", multipart_part_size="5M")
    proxy.fault_rate, proxy.methods, proxy.max_faults = 1.0, {"PUT"}, 1
    be.store("packs/meta/aa", b"pack")
    be.store("config/main", b"v1")  # not faulted (max reached): the ETag is known
    proxy.max_faults = 2
    be.store("config/main", b"v2")  # If-Match lands, the answer says 412: our own content is there
    proxy.methods, proxy.path_contains, proxy.max_faults = {"POST"}, "uploadId", 3
    big = os.urandom(6 * MiB)
    be.store("packs/data/bb/bb01", big)
    assert proxy.faults["landed_412"] == 3
    assert be.request_stats()["converged"] == 3
    assert be.load("packs/meta/aa") == b"pack"
    assert be.load("config/main") == b"v2"
    assert be.load("packs/data/bb/bb01") == big
    be.store("config/main", b"v3")  # and the remembered ETag is the one of v2
    assert be.load("config/main") == b"v3"


# --- services that ignore If-None-Match --------------------------------------------------------------------


def test_ignored_conditional_writes_are_detected_and_fall_back(
    endpoint, open_s3, make_s3_url, fault_proxy, tmp_path, caplog
):
    url = make_s3_url(endpoint)
    proxy = fault_proxy(endpoint, fault_rate=0.0, strip_conditional=True)
    location = proxied(url, endpoint, proxy)
    be = open_s3(endpoint, url=location, cache_dir=tmp_path)
    caplog.set_level(logging.WARNING, logger="packvault.storage.s3")
    be.store("packs/meta/aa", b"one")
    assert [r.getMessage() for r in caplog.records if "ignores If-None-Match" in r.getMessage()]
    assert conditional_warnings(caplog) == 1
    assert proxy.stripped_conditional == 2  # the probe's two writes; the store itself sent no condition
    with pytest.raises(IntegrityError):
        be.store("packs/meta/aa", b"two")  # checked by HEAD, not silently overwritten
    assert be.load("packs/meta/aa") == b"one"
    assert [i.name for i in be.list("packs/meta")] == ["aa"]  # the probe left nothing behind

    # the verdict is remembered for the location: the next client does not probe again, and warns too
    again = open_s3(endpoint, url=location, create=False, cache_dir=tmp_path)
    again.reset_request_stats()
    again.store("packs/meta/bb", b"bb")
    assert conditional_warnings(caplog) == 2  # once per client
    assert again.request_stats()["PUT"] == 1 and again.request_stats()["DELETE"] == 0
    assert proxy.stripped_conditional == 2


def test_probe_of_a_service_that_honours_conditions(endpoint, open_s3, make_s3_url, tmp_path, caplog):
    url = make_s3_url(endpoint)
    be = open_s3(endpoint, url=url, cache_dir=tmp_path)
    be.reset_request_stats()
    caplog.set_level(logging.WARNING, logger="packvault.storage.s3")
    be.store("packs/meta/aa", b"one")
    stats = be.request_stats()
    assert stats["PUT"] == 3 and stats["DELETE"] == 1  # probe: two PUTs and a DELETE; then the store
    with pytest.raises(IntegrityError):
        be.store("packs/meta/aa", b"two")
    assert conditional_warnings(caplog) == 0

    again = open_s3(endpoint, url=url, create=False, cache_dir=tmp_path)
    again.reset_request_stats()
    again.store("packs/meta/bb", b"bb")
    assert again.request_stats()["PUT"] == 1  # remembered: no probe

    # init (create) probes again, whatever was remembered: the service behind a location may have changed
    other = url.replace("/repo?", "/other?")
    first = open_s3(endpoint, url=other, create=False, cache_dir=tmp_path)
    first.store("packs/meta/cc", b"cc")
    assert first.request_stats()["PUT"] == 3
    first.close()
    first.destroy()
    recreated = open_s3_backend(
        other, {}, policy=WRITE_POLICY, cache_dir=tmp_path, settings=from_environment(os.environ)
    )
    recreated.create()
    recreated.open()
    try:
        recreated.store("packs/meta/cc", b"cc")
        assert recreated.request_stats()["PUT"] == 3
    finally:
        recreated.close()


def test_probe_of_a_service_without_conditional_writes(
    moto_endpoint, open_s3, make_s3_url, fault_proxy, tmp_path, caplog
):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=0.0, no_conditional_writes=True)
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy), cache_dir=tmp_path)
    caplog.set_level(logging.WARNING, logger="packvault.storage.s3")
    be.store("packs/meta/aa", b"one")
    assert conditional_warnings(caplog) == 1
    assert proxy.rejected_conditional == 1  # the probe's first write; nothing after it tries again
    with pytest.raises(IntegrityError):
        be.store("packs/meta/aa", b"two")
    assert proxy.rejected_conditional == 1


# --- the namespace write policy ---------------------------------------------------------------------------


def test_repository_write_policy():
    assert WRITE_POLICY.mode(layout.name(layout.CONFIG, "repository")) is WriteMode.COMPARE_AND_SWAP
    for namespace in (layout.KEYS, layout.LOCKS, layout.ARCHIVES, layout.INDEX, layout.DATA_PACKS, layout.META_PACKS):
        assert WRITE_POLICY.mode(layout.name(namespace, "ab")) is WriteMode.CREATE_ONLY, namespace
    assert WRITE_POLICY.mode(layout.name(layout.TOMBSTONES, "ab")) is WriteMode.FIRST_WINS
    assert WRITE_POLICY.mode(layout.name(layout.DATA_PACKS, "ab/abcd.del")) is WriteMode.CREATE_ONLY
    assert WRITE_POLICY.mode("elsewhere/x") is WriteMode.OVERWRITE
    assert WRITE_POLICY.mode("configuration/x") is WriteMode.OVERWRITE  # a namespace is a whole path segment
    assert WRITE_POLICY.is_data(layout.name(layout.DATA_PACKS, "ab/abcd"))
    assert not WRITE_POLICY.is_data(layout.name(layout.META_PACKS, "abcd"))
    assert {ns for ns in layout.NAMESPACES} == set(WRITE_POLICY.namespaces())  # no namespace without a rule


def test_tombstones_keep_the_first_write(endpoint, open_s3):
    """A tombstone's presence is its message; a compact re-run after a crash seals it again (new nonce, other
    bytes).  The first one stays, and the second write is not an error."""
    be = open_s3(endpoint)
    be.store("tombstones/ab", b"first")
    be.store("tombstones/ab", b"second")
    assert be.load("tombstones/ab") == b"first"


def test_the_backend_follows_the_policy_it_is_given(endpoint, make_s3_url):
    url = make_s3_url(endpoint)
    policy = WritePolicy(modes=(("mine", WriteMode.CREATE_ONLY),))
    be = open_s3_backend(url, {}, policy=policy, settings=from_environment(os.environ))
    be.create()
    be.open()
    try:
        be.store("mine/a", b"one")
        with pytest.raises(IntegrityError):
            be.store("mine/a", b"two")
        be.store("packs/meta/aa", b"one")  # not in this policy: borgstore's plain overwrite
        be.store("packs/meta/aa", b"two")
        assert be.load("packs/meta/aa") == b"two"
    finally:
        be.close()


# --- large create-only objects ----------------------------------------------------------------------------


def test_restoring_a_large_existing_object_uploads_nothing(endpoint, open_s3):
    be = open_s3(endpoint, multipart_threshold="5M", multipart_part_size="5M")
    data = os.urandom(11 * MiB)
    be.store("packs/data/aa/aa01", data)
    be.reset_request_stats()
    be.store("packs/data/aa/aa01", data)
    stats = be.request_stats()
    assert stats["PUT"] == 0 and stats["bytes_up"] == 0
    assert stats["HEAD"] == 1 and stats["converged"] == 1
    with pytest.raises(IntegrityError):
        be.store("packs/data/aa/aa01", os.urandom(11 * MiB))
    assert be.request_stats()["PUT"] == 0
    assert be.load("packs/data/aa/aa01") == data


def test_store_from_location_probes_through_the_cache_dir(moto_endpoint, make_s3_url, fault_proxy, tmp_path, caplog):
    """The wiring a repository uses: the location's store gets the write policy and the cache directory."""
    from packvault.storage.url import store_from_location

    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=0.0, strip_conditional=True)
    store = store_from_location(
        proxied(url, moto_endpoint, proxy), cache_dir=tmp_path, settings=from_environment(os.environ)
    )
    store.create()
    store.open()
    caplog.set_level(logging.WARNING, logger="packvault.storage.s3")
    try:
        store.store("packs/meta/aa", b"one")
        with pytest.raises(IntegrityError):
            store.store("packs/meta/aa", b"two")
        store.store("tombstones/ab", b"first")
        store.store("tombstones/ab", b"second")
        assert store.load("tombstones/ab") == b"first"
    finally:
        store.close()
    assert conditional_warnings(caplog) == 1
    assert list((tmp_path / "s3-conditional-writes").iterdir())


def test_probe_record_survives_damage(tmp_path):
    from packvault.storage.s3.probe import CACHE_SUBDIR, ConditionalWrites, ProbeRecord

    record = ProbeRecord(tmp_path, "http://x s3://b/p")
    assert record.load() is None
    record.save(ConditionalWrites.IGNORED)
    assert record.load() is ConditionalWrites.IGNORED
    assert ProbeRecord(tmp_path, "http://x s3://b/other").load() is None  # per location
    record.path.write_text("{not json")
    assert record.load() is None  # unreadable: probe again
    record.path.write_text('{"location": "http://x s3://b/p", "conditional_writes": "maybe"}')
    assert record.load() is None
    record.save(ConditionalWrites.HONOURED)
    record.forget()
    record.forget()
    assert record.load() is None
    assert [p.name for p in (tmp_path / CACHE_SUBDIR).iterdir()] == []  # no temporary files left


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_probe_under_random_faults(endpoint, open_s3, make_s3_url, fault_proxy, tmp_path, seed, caplog):
    """Lost answers, drops and 5xx around the probe's writes never turn an honouring service into an
    ignoring one, and leave no probe object behind."""
    url = make_s3_url(endpoint)
    proxy = fault_proxy(endpoint, fault_rate=0.0, seed=seed)
    be = open_s3(endpoint, url=proxied(url, endpoint, proxy), cache_dir=tmp_path, retry_attempts="12")
    proxy.fault_rate = 0.4
    caplog.set_level(logging.WARNING, logger="packvault.storage.s3")
    be.store("packs/meta/aa", b"one")
    proxy.fault_rate = 0.0
    assert conditional_warnings(caplog) == 0
    with pytest.raises(IntegrityError):
        be.store("packs/meta/aa", b"two")
    keys = [o["Key"] for o in s3_client(endpoint).list_objects_v2(Bucket=be.bucket).get("Contents", [])]
    assert keys == [be._key("packs/meta/aa")]
