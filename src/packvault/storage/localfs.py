"""Local directory repositories: where a pack's spool file is created, and how it becomes the pack.

A local backup used to fill each 32 MiB pack in a ``bytearray`` and hand it to the store, which wrote it to
a temp file and renamed it: the pack sat in process memory while it filled and while it was written (up to
two packs per kind), and every byte was copied twice.  Instead the pack is spooled to an anonymous file
(``O_TMPFILE``) created inside the repository's ``packs/`` directory, and storing it is ``fsync`` + link +
rename (``SpoolFile.link_as``): the bytes go to the page cache once, and the process holds no pack.  An
anonymous file has no name until it is complete, so a crash leaves nothing behind.

Only for borgstore's ``PosixFS`` without permission or quota settings (those check every ``store``);
anything else, and a file system without ``O_TMPFILE``, falls back to storing a copy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

from borgstore.backends._base import validate_name
from borgstore.backends.posixfs import PosixFS

from .layout import DATA_PACKS
from .spool import SpoolFile

_PACKS_TOP = DATA_PACKS.split("/", 1)[0]


class LocalDirectory(PosixFS):
    """borgstore's ``PosixFS`` that also opens a directory it cannot write (a read-only mount, a directory
    owned by someone else): its ``open`` removes a leftover quota file even when no quota is configured,
    and that removal fails there.  Without a quota, ``open`` writes nothing else, so reading goes on and
    each write still fails on its own."""

    def open(self) -> None:
        try:
            super().open()
        except OSError as exc:
            if self.quota_limit is not None or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            self.opened = True


def _plain_posixfs(backend) -> PosixFS | None:
    inner = getattr(backend, "inner", backend)  # through the request-counting wrapper
    if isinstance(inner, PosixFS) and not inner.permissions and inner.quota_limit is None:
        return inner
    return None


def spool_directory(backend) -> Path | None:
    """Where to create pack spool files so that they can be linked in: None if this backend can't."""
    fs = _plain_posixfs(backend)
    return None if fs is None else fs.base_path / _PACKS_TOP


def link_spool(backend, name: str, spool: SpoolFile) -> bool:
    """Make the spool file the object ``name``; False if it can't be linked (then store a copy)."""
    fs = _plain_posixfs(backend)
    if fs is None:
        return False
    validate_name(name)
    if not spool.link_as(fs.base_path / name, fsync=fs.do_fsync):
        return False
    counter = getattr(backend, "counter", None)
    if counter is not None:  # counted like the store it replaces
        counter.add("PUT")
        counter.add("bytes_up", spool.size)
    return True


def store_new(backend, name: str, value: bytes) -> bool | None:
    """Create the object ``name`` only if nothing is there: True if created, False if something was, None
    if this backend is not a plain local directory (the caller uses the backend's own create-only write).

    borgstore's ``store`` renames a temporary file over the name, which replaces whatever is there; a hard
    link fails when the name exists, so two writers racing for one name cannot both win."""
    fs = _plain_posixfs(backend)
    if fs is None:
        return None
    validate_name(name)
    path = fs.base_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.new")
    try:
        with open(tmp, "wb") as f:
            f.write(value)
            if fs.do_fsync:
                f.flush()
                os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    counter = getattr(backend, "counter", None)
    if counter is not None:
        counter.add("PUT")
        counter.add("bytes_up", len(value))
    return True
