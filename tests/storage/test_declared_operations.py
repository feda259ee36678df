"""Optional backend operations are declared on ``PackvaultBackend``, not probed, and request counting sees
every one of them: forwarded when the inner backend implements it, counted call by call when it keeps the
base class's default."""

from __future__ import annotations

import io
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from borgstore.backends._base import BackendBase, ItemInfo
from borgstore.backends.posixfs import PosixFS
from borgstore.store import Store

from packvault.storage.accounting import CountingBackend
from packvault.storage.backend import OPTIONAL_OPERATIONS, PackvaultBackend
from packvault.storage.layout import STORE_CONFIG, WriteMode, WritePolicy
from packvault.storage.local import LocalBackend
from packvault.storage.payload import BufferPayload
from packvault.storage.s3 import open_s3_backend
from packvault.storage.settings import from_environment
from packvault.storage.spool import SpoolFile
from packvault.storage.store import discard, discard_many, store_new
from packvault.storage.url import store_from_location

SRC = Path(__file__).resolve().parents[2] / "src" / "packvault"
REQUESTS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY", "RESTORE")


def requests_made(stats: dict[str, int]) -> int:
    return sum(stats.get(k, 0) for k in REQUESTS)


def test_the_list_of_optional_operations_is_complete():
    """Every method ``PackvaultBackend`` adds to borgstore's base is in ``OPTIONAL_OPERATIONS`` (the list the
    wrapper test below walks), and nothing else is."""
    added = {
        name
        for name, value in vars(PackvaultBackend).items()
        if callable(value) and not name.startswith("_") and not hasattr(BackendBase, name)
    }
    assert added == set(OPTIONAL_OPERATIONS)


def test_the_counting_wrapper_defines_every_operation_itself():
    """No catch-all: every borgstore and Packvault operation is a method of the wrapper's own class."""
    assert "__getattr__" not in vars(CountingBackend)
    borgstore_ops = {name for name, value in vars(BackendBase).items() if callable(value) and not name.startswith("_")}
    missing = (borgstore_ops | set(OPTIONAL_OPERATIONS)) - set(vars(CountingBackend))
    assert not missing


class Recording(PackvaultBackend):
    """An inner backend that implements every optional operation itself and records the calls."""

    streams_ranges = True

    def __init__(self, tmp: Path):
        self.calls: list[str] = []
        self.tmp = tmp

    # borgstore's contract: not called by this test
    create = destroy = open = close = mkdir = rmdir = info = load = store = delete = move = list = None

    def list_tree(self, name):
        self.calls.append("list_tree")
        return iter([ItemInfo(name="x", exists=True, size=1, directory=False)])

    def list_tree_paths(self, name):
        self.calls.append("list_tree_paths")
        return iter([("data/x", ItemInfo(name="x", exists=True, size=1, directory=False))])

    def store_payload(self, name, payload):
        self.calls.append("store_payload")

    def spool_directory(self):
        self.calls.append("spool_directory")
        return self.tmp

    def store_spool(self, name, spool):
        self.calls.append("store_spool")

    def open_range(self, name, offset, size):
        self.calls.append("open_range")
        return io.BytesIO(b"\0" * size)

    def discard(self, name):
        self.calls.append("discard")
        return True

    def discard_many(self, names):
        self.calls.append("discard_many")

    def store_new(self, name, value):
        self.calls.append("store_new")
        return True

    def restore_status(self, name):
        self.calls.append("restore_status")
        return "readable", 3

    def restore(self, name, *, days, tier):
        self.calls.append("restore")
        return "readable"

    def bytes_by_class(self, name):
        self.calls.append("bytes_by_class")
        return {"STANDARD": 1}

    def request_stats(self):
        self.calls.append("request_stats")
        return {}

    def reset_request_stats(self):
        self.calls.append("reset_request_stats")

    def set_object_lock(self, mode, retention_seconds):
        self.calls.append("set_object_lock")

    def object_lock_policy(self):
        self.calls.append("object_lock_policy")
        return "GOVERNANCE", 1

    def storage_classes(self):
        self.calls.append("storage_classes")
        return "DEEP_ARCHIVE", "STANDARD"

    def set_storage_classes(self, data, hot):
        self.calls.append("set_storage_classes")

    def retained_until(self, name):
        self.calls.append("retained_until")

    def retain_until(self, name, until):
        self.calls.append("retain_until")

    def skip_open_check(self):
        self.calls.append("skip_open_check")


# how to call each operation, and whether it stands for a request the wrapper must count
CALLS = {
    "list_tree": (lambda be, spool: list(be.list_tree("packs/data")), True),
    "list_tree_paths": (lambda be, spool: list(be.list_tree_paths("packs")), True),
    "store_payload": (lambda be, spool: be.store_payload("index/a", BufferPayload(b"abc")), True),
    "spool_directory": (lambda be, spool: be.spool_directory(), False),
    "store_spool": (lambda be, spool: be.store_spool("packs/meta/a", spool), True),
    "open_range": (lambda be, spool: be.open_range("packs/meta/a", 0, 3).read(3), True),
    "discard": (lambda be, spool: be.discard("locks/a"), True),
    "discard_many": (lambda be, spool: be.discard_many(["index/a", "index/b"]), True),
    "store_new": (lambda be, spool: be.store_new("names/a", b"abc"), True),
    "set_object_lock": (lambda be, spool: be.set_object_lock("GOVERNANCE", 1), False),
    "object_lock_policy": (lambda be, spool: be.object_lock_policy(), False),
    "storage_classes": (lambda be, spool: be.storage_classes(), False),
    "set_storage_classes": (lambda be, spool: be.set_storage_classes("DEEP_ARCHIVE", "STANDARD"), False),
    "retained_until": (lambda be, spool: be.retained_until("packs/meta/a"), True),
    "retain_until": (lambda be, spool: be.retain_until("packs/meta/a", datetime.now(UTC)), True),
    "restore_status": (lambda be, spool: be.restore_status("packs/data/a"), True),
    "restore": (lambda be, spool: be.restore("packs/data/a", days=1, tier="bulk"), True),
    "bytes_by_class": (lambda be, spool: be.bytes_by_class("packs/data"), True),
    "skip_open_check": (lambda be, spool: be.skip_open_check(), False),
}
OWN_TABLE = {"request_stats", "reset_request_stats"}  # answered by the wrapper's own counter


def test_every_operation_an_inner_backend_implements_is_forwarded_and_counted(tmp_path):
    assert set(CALLS) | OWN_TABLE == set(OPTIONAL_OPERATIONS), "a new operation needs a row in CALLS"
    inner = Recording(tmp_path)
    wrapper = CountingBackend(inner)
    assert wrapper.streams_ranges
    with SpoolFile(tmp_path, md5=False) as spool:
        spool.write(b"abc")
        for operation, (call, is_request) in CALLS.items():
            before = requests_made(wrapper.request_stats())
            call(wrapper, spool)
            assert inner.calls[-1:] == [operation], f"{operation} was not forwarded"
            if is_request:
                assert requests_made(wrapper.request_stats()) > before, f"{operation} bypassed counting"
    wrapper.reset_request_stats()
    assert requests_made(wrapper.request_stats()) == 0
    assert "request_stats" not in inner.calls and "reset_request_stats" not in inner.calls


def nested_store(tmp_path: Path, backend: BackendBase) -> Store:
    store = Store(backend=backend, config=STORE_CONFIG)
    store.create()
    store.open()
    for pack in ("00aa", "00bb", "01cc", "ff00"):
        store.store(f"packs/data/{pack}", pack.encode())
    store.store("packs/data/01dd", b"gone")
    store.move("packs/data/01dd", delete=True)
    return store


@pytest.mark.parametrize("inner", ["plain", "local"])
def test_defaults_run_over_the_wrapper_are_counted_like_store_calls(tmp_path, inner):
    """A tree listing of the file backend costs what borgstore's recursive ``Store.list`` costs: one LIST
    per directory; a discard is one DELETE; both find the same objects as the Store does."""
    path = str(tmp_path / "repo")
    backend = CountingBackend(PosixFS(path) if inner == "plain" else LocalBackend(path))
    store = nested_store(tmp_path, backend)
    try:
        backend.reset_request_stats()
        listed = [i.name for i in store.list("packs/data")]
        by_store = backend.request_stats()["LIST"]
        backend.reset_request_stats()
        tree = [i.name for i in backend.list_tree("packs/data")]
        assert backend.request_stats()["LIST"] == by_store == 1 + 3  # the namespace and its nesting dirs 00, 01, ff
        assert [n for n in tree if not n.endswith(".del")] == listed == ["00aa", "00bb", "01cc", "ff00"]
        assert "01dd.del" in tree
        assert list(backend.list_tree("index")) == []  # a namespace nothing was written to
        backend.reset_request_stats()
        assert discard(store, "packs/data/00aa")
        assert not discard(store, "packs/data/00aa")
        assert backend.request_stats()["DELETE"] == 2
        discard_many(store, ["packs/data/00bb", "packs/data/01cc", "packs/data/00aa"])  # one DELETE per name
        assert backend.request_stats()["DELETE"] == 2 + 3
        assert [i.name for i in store.list("packs/data")] == ["ff00"]
    finally:
        store.close()


def test_create_only_by_hard_link_on_a_local_directory(tmp_path):
    store = store_from_location(str(tmp_path / "repo"))
    store.create()
    with store:
        assert store_new(store, "names/a-1", b"first")
        assert not store_new(store, "names/a-1", b"second")
        assert store.load("names/a-1") == b"first"
        stats = store.backend.request_stats()
        assert (stats["PUT"], stats["bytes_up"]) == (1, len(b"first"))


def test_create_only_default_of_a_plain_backend(tmp_path):
    store = Store(backend=PosixFS(str(tmp_path / "repo")), config=STORE_CONFIG)
    store.create()
    with store:
        assert store_new(store, "names/a-1", b"first")
        assert store_new(store, "names/a-1", b"first")  # the same bytes: a retry of this write
        assert not store_new(store, "names/a-1", b"second")
        assert store.load("names/a-1") == b"first"


def test_s3_store_new_is_create_only_whatever_the_policy(moto_endpoint, make_s3_url):
    be = open_s3_backend(
        make_s3_url(moto_endpoint),
        {},
        policy=WritePolicy(modes=(("names", WriteMode.OVERWRITE),)),
        settings=from_environment(os.environ),
    )
    be.create()
    be.open()
    try:
        assert be.store_new("names/a-1", b"first")
        assert be.store_new("names/a-1", b"first")
        assert not be.store_new("names/a-1", b"second")
        assert be.load("names/a-1") == b"first"
        assert be.discard("names/a-1") and be.discard("names/a-1")
    finally:
        be.close()


PROBE = re.compile(
    r"""(getattr|hasattr)\([^)]*["'](list_tree|store_payload|store_spool|spool_directory|open_range|discard|"""
    r"""store_new|request_stats|reset_request_stats|inner|counter)["']"""
)


def test_no_caller_probes_a_backend_for_an_operation():
    found = [
        f"{path.relative_to(SRC)}:{number}: {line.strip()}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PROBE.search(line)
    ]
    assert not found
