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

__all__ = ["Store"]
