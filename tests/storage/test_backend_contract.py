"""The borgstore backend contract, run against file: (PosixFS wrapped in CountingBackend), moto and LocalStack.

Where S3 semantics differ on purpose (no directory markers), the test says so and checks our documented
behaviour instead.
"""

from __future__ import annotations

import os

import pytest
from borgstore.backends.errors import BackendAlreadyExists, BackendDoesNotExist, ObjectNotFound, ReadRangeError
from borgstore.store import Store

from packvault.storage.layout import STORE_CONFIG
from packvault.storage.s3 import S3Backend
from packvault.storage.settings import from_environment
from packvault.storage.url import backend_from_location


def is_s3(backend) -> bool:
    return isinstance(backend, S3Backend)


def test_store_load_roundtrip_and_ranges(backend):
    data = bytes(range(256)) * 40  # 10240 bytes
    backend.store("index/aa", data)
    assert backend.load("index/aa") == data
    assert backend.load("index/aa", offset=100) == data[100:]
    assert backend.load("index/aa", offset=100, size=50) == data[100:150]
    assert backend.load("index/aa", offset=-10) == data[-10:]
    assert backend.load("index/aa", offset=-100, size=30) == data[-100:-70]
    assert backend.load("index/aa", size=0) == b""
    assert backend.load("index/aa", offset=20000) == b""  # past the end: empty, like reading a file


def test_negative_offset_far_from_the_end(backend):
    data = os.urandom(3 * 1024 * 1024)
    backend.store("index/bb", data)
    assert backend.load("index/bb", offset=-3 * 1024 * 1024 + 5, size=1000) == data[5:1005]


def test_memoryview_values(backend):
    buf = bytearray(b"0123456789" * 10)
    backend.store("index/mv", memoryview(buf)[10:30])
    assert backend.load("index/mv") == b"01234567890123456789"


def test_info(backend):
    backend.store("archives/one", b"hello")
    info = backend.info("archives/one")
    assert info.exists and not info.directory and info.size == 5 and info.name == "one"
    missing = backend.info("archives/nope")
    assert not missing.exists


def test_missing_objects_raise_object_not_found(backend):
    with pytest.raises(ObjectNotFound):
        backend.load("index/missing")
    with pytest.raises(ObjectNotFound):
        backend.load("index/missing", offset=-5, size=2)
    with pytest.raises(ObjectNotFound):
        backend.delete("index/missing")
    with pytest.raises(ObjectNotFound):
        backend.move("index/missing", "index/elsewhere")


def test_delete(backend):
    backend.store("locks/l1", b"x")
    backend.delete("locks/l1")
    assert not backend.info("locks/l1").exists
    with pytest.raises(ObjectNotFound):
        backend.delete("locks/l1")


def test_move_soft_delete_and_undelete(backend):
    backend.store("archives/a1", b"archive")
    backend.move("archives/a1", "archives/a1.del")
    assert not backend.info("archives/a1").exists
    assert backend.load("archives/a1.del") == b"archive"
    backend.move("archives/a1.del", "archives/a1")
    assert backend.load("archives/a1") == b"archive"
    # move overwrites the target
    backend.store("index/x1", b"new")
    backend.store("index/x2", b"old")
    backend.move("index/x1", "index/x2")
    assert backend.load("index/x2") == b"new"


def test_list_one_level_sorted_with_directories(backend):
    for name in ("zz", "aa", "mm"):
        backend.store(f"packs/data/{name}/{name}01", b"d" * 3)
    backend.store("packs/data/top", b"t")
    listed = list(backend.list("packs/data"))
    assert [i.name for i in listed] == ["aa", "mm", "top", "zz"]
    assert [i.directory for i in listed] == [True, True, False, True]
    assert [i.name for i in backend.list("packs/data/mm")] == ["mm01"]
    assert next(iter(backend.list("packs/data/mm"))).size == 3


def test_list_hides_temporary_names(backend):
    backend.store("index/good", b"1")
    if is_s3(backend):
        # written behind the backend's back, as an interrupted foreign upload would be
        backend.client.put_object(Bucket=backend.bucket, Key=backend._key("index/partial.tmp"), Body=b"x")
    assert [i.name for i in backend.list("index")] == ["good"]


def test_list_of_unwritten_namespace(backend):
    if is_s3(backend):
        assert list(backend.list("keys")) == []  # no directory markers: an empty prefix is an empty list
    else:
        with pytest.raises(ObjectNotFound):
            list(backend.list("keys"))


def test_gather_concatenates_in_order(backend):
    a = os.urandom(5000)
    b = os.urandom(7000)
    backend.store("packs/meta/aa", a)
    backend.store("packs/meta/bb", b)
    sources = [
        ("packs/meta/bb", 10, 100),
        ("packs/meta/aa", 0, 50),
        ("packs/meta/aa", 50, 50),
        ("packs/meta/bb", -20, 20),
    ]
    assert backend.gather(sources) == b[10:110] + a[0:50] + a[50:100] + b[-20:]
    assert backend.gather([]) == b""
    with pytest.raises(ReadRangeError):
        backend.gather([("packs/meta/aa", 4990, 20)])


def test_defrag_with_algorithm_matches_default_naming(backend):
    a = os.urandom(4000)
    backend.store("packs/data/01/0100", a)
    name = backend.defrag(
        [("packs/data/01/0100", 0, 1000), ("packs/data/01/0100", 3000, 1000)],
        algorithm="sha256",
        namespace="packs/data",
        levels=1,
    )
    import hashlib

    digest = hashlib.sha256(a[:1000] + a[3000:]).hexdigest()
    assert name == f"packs/data/{digest[:2]}/{digest}"
    assert backend.load(name) == a[:1000] + a[3000:]


def test_hash(backend):
    backend.store("index/h", b"abc")
    import hashlib

    assert backend.hash("index/h") == hashlib.sha256(b"abc").hexdigest()


def test_request_stats_present(backend):
    backend.reset_request_stats()
    backend.store("index/s", b"12345")
    backend.load("index/s")
    backend.info("index/s")
    list(backend.list("index"))
    stats = backend.request_stats()
    for key in ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY", "bytes_up", "bytes_down"):
        assert key in stats
    assert stats["PUT"] >= 1 and stats["GET"] >= 1 and stats["LIST"] == 1
    assert stats["bytes_up"] >= 5 and stats["bytes_down"] >= 5


def test_through_borgstore_store(backend):
    """The lead's usage: Store with Packvault's layout over the backend."""
    store = Store(backend=backend, config=STORE_CONFIG)
    store.store("packs/data/abcdef", b"pack")
    store.store("archives/x", b"arch")
    assert store.load("packs/data/abcdef") == b"pack"
    assert [i.name for i in store.list("packs/data")] == ["abcdef"]
    store.move("archives/x", delete=True)
    assert [i.name for i in store.list("archives", deleted=True)] == ["x"]
    store.move("archives/x", undelete=True)
    assert [i.name for i in store.list("archives")] == ["x"]


def test_negative_offset_before_the_start_raises(backend):
    """The file backend's seek refuses an offset before the start (OSError EINVAL); S3 must not clamp it to
    byte 0 and hand out bytes the caller did not ask for: it raises ReadRangeError."""
    data = os.urandom(1000)
    backend.store("index/neg", data)
    expected = ReadRangeError if is_s3(backend) else OSError
    with pytest.raises(expected):
        backend.load("index/neg", offset=-1001)  # whole suffix
    with pytest.raises(expected):
        backend.load("index/neg", offset=-2000, size=10)  # suffix read and cut
    with pytest.raises(expected):
        backend.load("index/neg", offset=-3 * 1024 * 1024, size=10)  # far before the end: sized by HEAD
    with pytest.raises(expected):
        backend.gather([("index/neg", -1001, 1)])
    with pytest.raises(expected):
        backend.defrag([("index/neg", -2000, 10)], target="index/neg2")
    assert backend.load("index/neg", offset=-1000) == data  # exactly the start is fine
    assert not backend.info("index/neg2").exists


def test_move_onto_itself_is_a_no_op(backend):
    backend.store("archives/same", b"kept")
    backend.move("archives/same", "archives/same")
    assert backend.load("archives/same") == b"kept"
    with pytest.raises(ObjectNotFound):
        backend.move("archives/none", "archives/none")


@pytest.fixture
def unopened(any_backend_url):
    """A backend of each kind for a location nothing was created at, not opened."""
    return backend_from_location(any_backend_url, settings=from_environment(os.environ))


def test_destroy_of_a_destroyed_location_raises(unopened):
    unopened.create()
    unopened.open()
    unopened.store("index/x", b"x")
    unopened.close()
    unopened.destroy()
    with pytest.raises(BackendDoesNotExist):
        unopened.destroy()


def test_create_accepts_an_empty_location_twice_and_refuses_a_used_one(unopened):
    """borgstore's file backend accepts an existing empty directory; an empty S3 prefix is the same case."""
    unopened.create()
    unopened.create()
    unopened.open()
    unopened.store("index/x", b"x")
    unopened.close()
    with pytest.raises(BackendAlreadyExists):
        unopened.create()


def test_open_of_a_location_never_created(unopened):
    """The file backend refuses; S3 has no marker that could tell "created, still empty" from "never created",
    so it opens and the missing config says the rest (docs/s3-backend.md)."""
    if not is_s3(unopened):
        with pytest.raises(BackendDoesNotExist):
            unopened.open()
        return
    unopened.open()
    try:
        with pytest.raises(ObjectNotFound):
            unopened.load("config/repository")
        assert list(unopened.list("config")) == []
    finally:
        unopened.close()
