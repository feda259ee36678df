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
from collections.abc import Iterator
from contextlib import contextmanager

from borgstore.backends.errors import ObjectNotFound  # a leaf module: imports no backend

from ..errors import IntegrityError
from . import localfs

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


def discard(store: Store, name: str, *, deleted: bool = False) -> bool:
    """Delete ``name`` (its soft-deleted form with ``deleted``) when the caller doesn't need to know whether
    it still existed: our own lock object, a pack compact proved unreferenced, an entry or a fragment just
    listed under the exclusive lock.  A backend that can delete without asking first (S3: ``discard``) does
    it in one request instead of a HEAD and a DELETE; True if the object was there or may have been."""
    backend_discard = getattr(store.backend, "discard", None)
    if backend_discard is not None:
        backend_discard(store.find(name, deleted=deleted))
        return True
    try:
        store.delete(name, deleted=deleted)
    except ObjectNotFound:
        return False
    return True


__all__ = ["Store", "discard"]


def store_new(store: Store, name: str, value: bytes) -> bool:
    """Store ``name`` only if nothing is there yet; False if an object with other content was there first.

    Local directories create it with a hard link (``localfs.store_new``); S3 with its create-only write
    (``If-None-Match: *``), which stores nothing and raises when different content is there.  The same bytes
    already there count as created: that is a retry of this very write."""
    local = localfs.store_new(store.backend, store.find(name), value)
    if local is not None:
        return local
    try:
        store.store(name, value)
    except IntegrityError:
        return False
    return True
