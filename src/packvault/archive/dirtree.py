"""The descriptors of a restore target's directories (``DirTree``): how ``extract`` never looks a path up
through a link.  Every directory is opened component by component from the target's descriptor with
``O_NOFOLLOW``, and entries are made relative to their parent's descriptor (see ``extract.py``)."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import threading
from dataclasses import dataclass

from .restoring import Skip

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class DirState:
    rel: bytes
    item: dict
    apply: bool  # set the archived metadata (False: an existing directory the policy leaves as it is)
    names: set[bytes] | None  # with ``delete``: the names the archive has in it



def inside(rel: bytes, directory: bytes) -> bool:
    return not directory or rel == directory or rel.startswith(directory + b"/")


def dir_budget() -> int:
    """How many directory descriptors a round may hold: a quarter of the soft limit on open files (the
    readers' file descriptors and the S3 connections need the rest)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(32, min(4096, soft // 4))


class DirTree:
    """Descriptors of the target's directories, by path relative to it (``b""`` is the target).

    A directory is opened from its parent's descriptor with ``O_NOFOLLOW``, so a symlink in place of any
    component (made by this archive, by an earlier restore or by anyone) is never followed; a missing
    component is created.  Descriptors stay open while the round that resolved them runs, because reader
    threads create files relative to them; between rounds only the chain to the current position is kept.
    """

    def __init__(self, root_fd: int, *, made: set[bytes] | None = None):
        self.fds: dict[bytes, int] = {b"": root_fd}
        # where given: the paths of the directories this tree created because an entry below needed them
        # (a restore in passes treats them as its own later, see ``cold_extract.py``)
        self.made = made
        self._lock = threading.Lock()  # forget() can run in a reader thread (a directory replaced by a file)

    def __len__(self) -> int:
        return len(self.fds)

    def get(self, rel: bytes, *, create: bool = True) -> int:
        fd = self.fds.get(rel)
        if fd is not None:
            return fd
        with self._lock:
            missing = []
            at = rel
            while at not in self.fds:
                missing.append(at)
                at = at.rpartition(b"/")[0]
            fd = self.fds[at]
            for path in reversed(missing):
                fd = self._open(fd, path, create)
                self.fds[path] = fd
            return fd

    def _open(self, parent_fd: int, path: bytes, create: bool) -> int:
        name = path.rpartition(b"/")[2]
        for attempt in (1, 2):
            try:
                return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                if not create or attempt == 2:
                    raise
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise Skip(
                        f"{os.fsdecode(path)} is not a directory in the target (a symlink or another entry is "
                        "there; restore never follows one)"
                    ) from None
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=parent_fd)
                if self.made is not None:
                    self.made.add(path)
        raise AssertionError("unreachable")

    def forget(self, rel: bytes) -> None:
        """``rel`` is being removed: close the descriptors of it and below."""
        with self._lock:
            for path in [p for p in self.fds if p and inside(p, rel)]:
                os.close(self.fds.pop(path))

    def prune(self, keep: bytes) -> None:
        """Close every descriptor but those of ``keep`` and its ancestors."""
        with self._lock:
            for path in [p for p in self.fds if p and not inside(keep, p)]:
                os.close(self.fds.pop(path))

    def close(self) -> None:
        with self._lock:
            for fd in self.fds.values():
                os.close(fd)
            self.fds.clear()


