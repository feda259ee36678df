"""Derive the repository's key-encryption key before the S3 client is loaded, while Packvault's own
command modules are.

Why: a run's peak memory is what sizes the machine or the function it runs in.  Argon2id needs 32 MiB for
a fraction of a second, and the S3 client, once imported and built, holds about 30 MiB for the whole run.
Opening a repository derives the key after both are loaded, so the two would add up; deriving first, while
the process holds little more than the interpreter and ``cryptography``, lets the 32 MiB be freed before
the big modules arrive (measurements: bench/README.md).

Argon2id releases the GIL, so the derivation runs in a thread while the command modules (``commands``,
the repository layer, compression: ~7 MiB, about as long to import as the derivation takes) are imported
beside it; those are needed by every command, local or remote, and the S3 client is only loaded once the
derivation is over (``derive_early_during``).

The KDF parameters (salt and costs, which are not secret: they sit in clear in the repository's key blob)
are remembered in the cache directory after a repository was opened, under a digest of its location.
Only a passphrase from ``PACKVAULT_PASSPHRASE`` is used here: a pass command or a prompt must run once,
where the command expects it.  The derived key travels in the ``Passphrase`` object the run hands to
``Repository.open``; a wrong guess costs nothing but time: the key is only reused when the key blob's
parameters are exactly those used here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..crypto.kdf import Passphrase
from .location import repository_part
from .run import Run

_ENV = "PACKVAULT_PASSPHRASE"
KDF_HINTS = "kdf-params"  # in the cache directory, by location
T = TypeVar("T")


def _hint_path(location: str, run: Run | None = None) -> Path:
    return (run or Run.from_environ()).settings.location_hints(KDF_HINTS, location)


def repository_location(location_arg: str | None) -> str | None:
    """The repository part of a ``REPO::ARCHIVE`` argument (or PACKVAULT_REPO), as the commands resolve it."""
    return repository_part(location_arg) or None


def derive_early(location: str | None, run: Run, *, derive: bool = True) -> None:
    """Take the passphrase of PACKVAULT_PASSPHRASE into ``run`` and, with ``derive``, derive its key for
    ``location`` now if the parameters were remembered; otherwise the key is derived on open."""
    text = os.environ.get(_ENV)
    if text is None:
        return
    run.early = Passphrase(text)
    if not location or not derive:
        return
    try:
        import msgpack

        raw = _hint_path(location, run).read_bytes()
        d = msgpack.unpackb(raw)
        from ..crypto.kdf import KdfParams

        params = KdfParams.from_dict(d)
    except (OSError, ValueError, KeyError, TypeError, msgpack.UnpackException):
        return  # no hint, or an unreadable one: the key is derived when the repository is opened
    run.early.prederive(params)


def derive_early_during(location: str | None, run: Run, work: Callable[[], T], *, derive: bool = True) -> T:
    """``derive_early``, with ``work`` (importing the command modules) done in this thread meanwhile; returns
    what ``work`` returned once both are over, so nothing after it meets the 32 MiB of the derivation."""
    failure: list[BaseException] = []

    def derivation() -> None:
        try:
            derive_early(location, run, derive=derive)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            failure.append(exc)

    thread = threading.Thread(target=derivation, name="pv-kdf", daemon=True)
    thread.start()
    try:
        result = work()
    finally:
        thread.join()
    if failure:
        raise failure[0]
    return result


def remember(location: str | None, run: Run) -> None:
    """After a command, remember the KDF parameters it used, if it used exactly one set."""
    if not location or run.early is None:
        return
    params = run.used_params()
    if len(params) != 1:
        return  # nothing opened, or a passphrase change: no single key to predict
    import msgpack

    path = _hint_path(location, run)
    data = msgpack.packb(params[0].to_dict())
    with contextlib.suppress(OSError):  # a read-only cache only costs the early derivation
        if path.exists() and path.read_bytes() == data:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
