"""borgstore's ``Store`` class, imported without the client libraries of backends Packvault never uses.

``borgstore.store`` imports every backend module at import time, and those import boto3, requests and
paramiko when they are installed. Packvault builds its own backends (``PosixFS`` for local paths and
``packvault.storage.s3`` for S3), so for a local backup that is ~150 ms of start-up and ~20 MiB of peak
memory spent on code that never runs: a third of a no-op run's time and memory.

While ``borgstore.store`` is first imported, the three client libraries are marked unimportable, which
borgstore handles by disabling its own rclone, REST, SFTP and S3 backends. The marks are removed right
afterwards, so Packvault's S3 backend still imports boto3 when an ``s3://`` location needs it. A library
that was already imported is left alone.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

from .accounting import CountingBackend
from .backend import PackvaultBackend

_UNUSED_BACKEND_CLIENTS = ("boto3", "requests", "paramiko")


@contextmanager
def _unused_backend_clients_hidden() -> Iterator[None]:
    hidden = [name for name in _UNUSED_BACKEND_CLIENTS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # makes ``import name`` raise ImportError
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                sys.modules.pop(name, None)


if "borgstore.store" in sys.modules:
    from borgstore.store import Store
else:
    with _unused_backend_clients_hidden():
        from borgstore.store import Store


def backend_of(store: Store) -> PackvaultBackend:
    """The store's backend with Packvault's optional operations (``backend.PackvaultBackend``).

    A store built by ``url.store_from_location`` has such a backend.  A store over a plain borgstore backend
    (a tool or a test that builds ``Store(backend=PosixFS(...))``) gets the operations' plain defaults, run
    over its backend through the counting wrapper."""
    backend = store.backend
    return backend if isinstance(backend, PackvaultBackend) else CountingBackend(backend)


def discard(store: Store, name: str, *, deleted: bool = False) -> bool:
    """Delete ``name`` (its soft-deleted form with ``deleted``) when the caller doesn't need to know whether
    it still existed: our own lock object, a pack compact proved unreferenced, an entry or a fragment just
    listed under the exclusive lock.  True if the object was there or may have been
    (``PackvaultBackend.discard``: S3 deletes without asking first, one request instead of two)."""
    return backend_of(store).discard(store.find(name, deleted=deleted))


def discard_many(store: Store, names: Iterable[str], *, deleted: bool = False) -> None:
    """``discard`` of every one of ``names`` (their soft-deleted forms with ``deleted``), in as few requests as
    the backend can (``PackvaultBackend.discard_many``: S3 deletes 1000 keys per request)."""
    backend_of(store).discard_many([store.find(name, deleted=deleted) for name in names])


def store_new(store: Store, name: str, value: bytes) -> bool:
    """Store ``name`` only if nothing is there yet; False if something was there first
    (``PackvaultBackend.store_new``: a hard link on a local directory, ``If-None-Match: *`` on S3)."""
    return backend_of(store).store_new(store.find(name), value)


def load_beside(store: Store, name: str, *, offset: int = 0, size: int | None = None) -> bytes:
    """``store.load(name)`` that runs beside other reads: borgstore's ``Store`` holds one lock through every
    call, so its loads from several threads go one after another (a commit's lock and epoch proofs took two
    round trips to a distant bucket instead of one).  Only the name's nesting is asked under that lock; the
    backend reads on its own.  Missing: ``ObjectNotFound``, as ``Store.load``."""
    return store.backend.load(store.find(name), offset=offset, size=size)


LOAD_AHEAD = 8


def load_in_order(store: Store, names: Iterable[str], *, ahead: int = LOAD_AHEAD) -> Iterator[tuple[str, Future]]:
    """(name, finished future of its ``load_beside``) for each name, in order, with up to ``ahead`` loads in
    flight.  Why: the small objects a command reads one after another (index fragments, archive entries, the
    config and its copy) each cost a round trip, and to a distant bucket a repository of a thousand
    fragments took a thousand of them.  The future's ``result()`` is the bytes, or raises what ``Store.load``
    would (``ObjectNotFound``), where the caller reads it; memory stays at ``ahead`` objects."""
    pending = iter(names)
    pool = ThreadPoolExecutor(ahead, thread_name_prefix="pv-load")
    queue: deque[tuple[str, Future]] = deque()
    try:
        for name in pending:
            queue.append((name, pool.submit(load_beside, store, name)))
            if len(queue) >= ahead:
                break
        while queue:
            name, future = queue.popleft()
            for following in pending:
                queue.append((following, pool.submit(load_beside, store, following)))
                break
            future.exception()  # waits; its result() raises where the caller reads it
            yield name, future
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def store_beside(store: Store, name: str, value: bytes | memoryview) -> None:
    """``store.store(name, value)`` that lets other requests run meanwhile (see ``load_beside``): a commit's
    index fragment and archive entry go out while its lock and epoch proofs are asked, and with the store's
    lock held through the PUT those waited for it, a round trip more to a distant bucket."""
    store.backend.store(store.find(name), value)


def exists_beside(store: Store, name: str) -> bool:
    """Whether ``name`` exists, asked beside other requests (see ``load_beside``)."""
    return bool(store.backend.info(store.find(name)).exists)


__all__ = [
    "Store",
    "backend_of",
    "discard",
    "discard_many",
    "exists_beside",
    "load_beside",
    "load_in_order",
    "store_beside",
    "store_new",
]
