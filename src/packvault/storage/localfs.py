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

import errno
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
