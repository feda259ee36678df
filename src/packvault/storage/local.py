"""Local directory repositories: borgstore's ``PosixFS`` with Packvault's fast paths for the optional operations.

- **Packs are spooled in place and linked in** (``spool_directory``, ``store_spool``).  A local backup used
  to fill each 32 MiB pack in a ``bytearray`` and hand it to the store, which wrote it to a temp file and
  renamed it: the pack sat in process memory while it filled and while it was written (up to two packs per
  kind), and every byte was copied twice.  Instead the pack is spooled to an anonymous file (``O_TMPFILE``)
  created inside the repository's ``packs/`` directory, and storing it is ``fsync`` + link + rename
  (``SpoolFile.link_as``): the bytes are written once (past the page cache where the file system
  allows: ``SpoolFile``'s ``direct``), and the process holds no pack.  An anonymous
  file has no name until it is complete, so a crash leaves nothing behind.
- **Create-only by hard link** (``store_new``).  ``PosixFS.store`` renames a temporary file over the name,
  which replaces whatever is there; a hard link fails when the name exists, so two writers racing for one
  name cannot both win.

Both only where ``PosixFS`` checks nothing per write (no permission or quota settings: those must see every
``store``); otherwise, and on a file system without ``O_TMPFILE``, the plain defaults store a copy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

from borgstore.backends._base import validate_name
from borgstore.backends.posixfs import PosixFS

from .backend import PackvaultBackend
from .layout import DATA_PACKS
from .spool import SpoolFile

_PACKS_TOP = DATA_PACKS.split("/", 1)[0]


class LocalBackend(PosixFS, PackvaultBackend):
    """A repository in a local directory (``PosixFS``), with the fast paths of the module doc."""

    def open(self) -> None:
        """Also open a directory that cannot be written (a read-only mount, a directory owned by someone
        else): borgstore's ``open`` removes a leftover quota file even when no quota is configured, and that
        removal fails there.  Without a quota, ``open`` writes nothing else, so reading goes on and each
        write still fails on its own."""
        try:
            super().open()
        except OSError as exc:
            if self.quota_limit is not None or exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            self.opened = True

    def _checks_every_write(self) -> bool:
        return bool(self.permissions) or self.quota_limit is not None

    def spool_directory(self) -> Path | None:
        return None if self._checks_every_write() else self.base_path / _PACKS_TOP

    def store_spool(self, name: str, spool: SpoolFile) -> None:
        """Make the spool file the object ``name`` by a link; a copy where it cannot be linked."""
        if not self._checks_every_write():
            validate_name(name)
            if spool.link_as(self.base_path / name, fsync=self.do_fsync):
                return
        super().store_spool(name, spool)

    def store_new(self, name: str, value: bytes) -> bool:
        """Create ``name`` with a hard link from a temporary file, which fails if the name exists."""
        if self._checks_every_write():
            return super().store_new(name, value)
        validate_name(name)
        path = self.base_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_native_id()}.new")
        try:
            with open(tmp, "wb") as f:
                f.write(value)
                if self.do_fsync:
                    f.flush()
                    os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return True
