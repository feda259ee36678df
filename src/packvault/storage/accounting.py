"""Request accounting for any borgstore backend.

The S3 backend counts real HTTP requests itself (botocore hooks see every attempt).  For every other
backend (the ``file:`` default) this wrapper counts backend calls mapped onto the same request kinds, so
the CLI and the benchmark can print one table whatever the location is.  The mapping models what the call
would cost on an object store: ``move`` is a copy plus a delete there, ``list`` one request per call.

The wrapper is a decorator in the restic ``backend/*`` sense: it adds one concern and delegates the rest.
It forwards every method explicitly, borgstore's optional ones (``gather``, ``defrag``, ``hash``, ``quota``)
and Packvault's (``backend.OPTIONAL_OPERATIONS``), and has no catch-all: an operation it does not define
does not exist on it, so a new one cannot bypass counting unnoticed (``tests/storage`` checks the list).

An optional operation the inner backend implements itself (a fast path: a linked spool file, a hard-link
create) is forwarded and counted as the request it stands for.  One the inner backend leaves to
``PackvaultBackend``'s default runs that default here, over this wrapper, so each ``list``/``load``/
``store``/``delete`` it makes is counted as if a caller had made it: a tree listing of the file backend
costs one LIST per directory, as borgstore's ``Store.list`` of the same namespace does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from borgstore.backends._base import BackendBase, ItemInfo, StoreValue, validate_sources, validate_value

from .backend import DELETE_BATCH, OPTIONAL_OPERATIONS, PackvaultBackend, RangeReader
from .payload import Payload
from .spool import SpoolFile

REQUEST_KINDS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY")
VOLUME_KINDS = ("bytes_up", "bytes_down")


def empty_stats() -> dict[str, int]:
    """A zeroed request table with every key the CLI and benchmark expect."""
    return dict.fromkeys(REQUEST_KINDS + VOLUME_KINDS, 0)


class RequestCounter:
    """Thread-safe counters; shared by the wrapper below and by the S3 backend."""

    def __init__(self, extra_keys: tuple[str, ...] = ()):
        self._lock = threading.Lock()
        self._extra = extra_keys
        self._stats = self._zero()

    def _zero(self) -> dict[str, int]:
        stats = empty_stats()
        stats.update(dict.fromkeys(self._extra, 0))
        return stats

    def add(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._stats)

    def reset(self) -> None:
        with self._lock:
            self._stats = self._zero()


def _implements(inner: BackendBase, operation: str) -> bool:
    """Whether ``inner``'s class implements ``operation`` itself rather than keeping the base's default."""
    if not isinstance(inner, PackvaultBackend):
        return False
    return getattr(type(inner), operation) is not getattr(PackvaultBackend, operation)


class CountingBackend(PackvaultBackend):
    """Wrap ``inner`` and count its calls as object-store requests (see module docstring)."""

    def __init__(self, inner: BackendBase):
        self.inner = inner
        self.counter = RequestCounter()
        # fixed per class: which optional operations are forwarded, and which run the default over this wrapper
        self._forwarded = frozenset(op for op in OPTIONAL_OPERATIONS if _implements(inner, op))

    # precreate_dirs is read by Store.create: answer with the inner backend's choice.
    @property  # type: ignore[override]
    def precreate_dirs(self) -> bool:
        return self.inner.precreate_dirs

    @property  # type: ignore[override]
    def streams_ranges(self) -> bool:
        return isinstance(self.inner, PackvaultBackend) and self.inner.streams_ranges

    @property
    def cold_data(self) -> bool:
        return isinstance(self.inner, PackvaultBackend) and self.inner.cold_data

    @property
    def data_storage_class(self) -> str | None:
        return self.inner.data_storage_class if isinstance(self.inner, PackvaultBackend) else None

    @property
    def opened(self) -> bool:
        return self.inner.opened

    def __repr__(self) -> str:
        return f"CountingBackend({self.inner!r})"

    def request_stats(self) -> dict[str, int]:
        return self.counter.snapshot()

    def reset_request_stats(self) -> None:
        self.counter.reset()

    # --- lifecycle: not requests in the accounting sense --------------------------------------------------

    def create(self) -> None:
        self.inner.create()

    def destroy(self) -> None:
        self.inner.destroy()

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def mkdir(self, name: str) -> None:
        self.inner.mkdir(name)

    def rmdir(self, name: str) -> None:
        self.inner.rmdir(name)

    def quota(self) -> dict:
        return self.inner.quota()

    def spool_directory(self) -> Path | None:
        if "spool_directory" in self._forwarded:
            return self.inner.spool_directory()
        return super().spool_directory()

    # --- requests -------------------------------------------------------------------------------------------

    def info(self, name: str) -> ItemInfo:
        self.counter.add("HEAD")
        return self.inner.info(name)

    def load(self, name: str, *, size=None, offset=0) -> bytes:
        self.counter.add("GET")
        data = self.inner.load(name, size=size, offset=offset)
        self.counter.add("bytes_down", len(data))
        return data

    def store(self, name: str, value: StoreValue) -> None:
        self.counter.add("PUT")
        self.inner.store(name, value)
        self.counter.add("bytes_up", len(validate_value(value)))

    def delete(self, name: str) -> None:
        self.counter.add("DELETE")
        self.inner.delete(name)

    def move(self, curr_name: str, new_name: str) -> None:
        self.counter.add("COPY")
        self.counter.add("DELETE")
        self.inner.move(curr_name, new_name)

    def list(self, name: str) -> Iterator[ItemInfo]:
        self.counter.add("LIST")
        return self.inner.list(name)

    def gather(self, sources) -> bytes:
        sources = validate_sources(sources)
        self.counter.add("GET", sum(1 for _, _, size in sources if size))
        data = self.inner.gather(sources)
        self.counter.add("bytes_down", len(data))
        return data

    def defrag(self, sources, *, target=None, algorithm=None, namespace=None, levels=0) -> str:
        # the inner default defrag reads every range and writes one new item: count it that way.
        sources = validate_sources(sources)
        total = sum(size for _, _, size in sources)
        result = self.inner.defrag(sources, target=target, algorithm=algorithm, namespace=namespace, levels=levels)
        self.counter.add("GET", sum(1 for _, _, size in sources if size))
        self.counter.add("bytes_down", total)
        self.counter.add("PUT")
        self.counter.add("bytes_up", total)
        return result

    def hash(self, name: str, algorithm: str = "sha256") -> str:
        self.counter.add("GET")
        return self.inner.hash(name, algorithm=algorithm)

    # --- Packvault's optional operations: forwarded, or the default over this wrapper (module doc) ----------

    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        if "list_tree" not in self._forwarded:
            return super().list_tree(name)
        self.counter.add("LIST")
        return self.inner.list_tree(name)

    def list_tree_paths(self, name: str) -> Iterator[tuple[str, ItemInfo]]:
        if "list_tree_paths" not in self._forwarded:
            return super().list_tree_paths(name)
        self.counter.add("LIST")
        return self.inner.list_tree_paths(name)

    def store_payload(self, name: str, payload: Payload) -> None:
        if "store_payload" not in self._forwarded:
            super().store_payload(name, payload)
            return
        self.counter.add("PUT")
        self.inner.store_payload(name, payload)
        self.counter.add("bytes_up", payload.size)

    def store_spool(self, name: str, spool: SpoolFile) -> None:
        if "store_spool" not in self._forwarded:
            super().store_spool(name, spool)
            return
        self.counter.add("PUT")  # a linked spool file counts like the store it replaces
        self.inner.store_spool(name, spool)
        self.counter.add("bytes_up", spool.size)

    def set_object_lock(self, mode: str, retention_seconds: int) -> None:
        if "set_object_lock" not in self._forwarded:
            super().set_object_lock(mode, retention_seconds)
            return
        self.inner.set_object_lock(mode, retention_seconds)

    def object_lock_policy(self) -> tuple[str | None, int]:
        if "object_lock_policy" not in self._forwarded:
            return super().object_lock_policy()
        return self.inner.object_lock_policy()

    def storage_classes(self) -> tuple[str | None, str | None]:
        if "storage_classes" not in self._forwarded:
            return super().storage_classes()
        return self.inner.storage_classes()

    def set_storage_classes(self, data: str | None, hot: str | None) -> None:
        if "set_storage_classes" not in self._forwarded:
            super().set_storage_classes(data, hot)
            return
        self.inner.set_storage_classes(data, hot)

    def skip_open_check(self) -> None:
        if "skip_open_check" not in self._forwarded:
            super().skip_open_check()
            return
        self.inner.skip_open_check()

    def retained_until(self, name: str) -> datetime | None:
        if "retained_until" not in self._forwarded:
            return super().retained_until(name)
        self.counter.add("HEAD")
        return self.inner.retained_until(name)

    def retain_until(self, name: str, until: datetime) -> None:
        if "retain_until" not in self._forwarded:
            super().retain_until(name, until)
            return
        self.counter.add("PUT")
        self.inner.retain_until(name, until)

    def open_range(self, name: str, offset: int, size: int) -> RangeReader:
        if "open_range" not in self._forwarded:
            return super().open_range(name, offset, size)
        self.counter.add("GET")
        stream = self.inner.open_range(name, offset, size)
        self.counter.add("bytes_down", size)
        return stream

    def discard(self, name: str) -> bool:
        if "discard" not in self._forwarded:
            return super().discard(name)
        self.counter.add("DELETE")
        return self.inner.discard(name)

    def discard_many(self, names: Sequence[str]) -> None:
        if "discard_many" not in self._forwarded:
            super().discard_many(names)  # one counted discard per name
            return
        self.counter.add("DELETE", -(-len(names) // DELETE_BATCH))  # one multi-object delete per batch
        self.inner.discard_many(names)

    def store_new(self, name: str, value: bytes) -> bool:
        if "store_new" not in self._forwarded:
            return super().store_new(name, value)
        created = self.inner.store_new(name, value)
        if created:  # counted like the store it replaces; a name already taken wrote nothing
            self.counter.add("PUT")
            self.counter.add("bytes_up", len(value))
        return created

    def restore_status(self, name: str) -> tuple[str, int]:
        if "restore_status" not in self._forwarded:
            return super().restore_status(name)
        self.counter.add("HEAD")
        return self.inner.restore_status(name)

    def restore(self, name: str, *, days: int, tier: str) -> str:
        if "restore" not in self._forwarded:
            return super().restore(name, days=days, tier=tier)
        self.counter.add("RESTORE")
        return self.inner.restore(name, days=days, tier=tier)

    def bytes_by_class(self, name: str) -> dict[str, int]:
        if "bytes_by_class" not in self._forwarded:
            return super().bytes_by_class(name)
        self.counter.add("LIST")
        return self.inner.bytes_by_class(name)
