"""The overwrite policy of ``extract`` (``--overwrite``, ``--delete``): what may replace an entry that is
already in the target, and how (a complete new entry under a temporary name, renamed over the old one).

A part of ``Extractor`` (``extract.py``), whose target tree, options and statistics it uses.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Callable

from . import fsmeta
from . import items as it
from .dirtree import DirState, DirTree
from .outfile import temp_name
from .restoring import ExtractStats, Kept

OVERWRITE_ALWAYS, OVERWRITE_IF_CHANGED = "always", "if-changed"
OVERWRITE_IF_NEWER, OVERWRITE_NEVER = "if-newer", "never"
OVERWRITE_MODES = (OVERWRITE_ALWAYS, OVERWRITE_IF_CHANGED, OVERWRITE_IF_NEWER, OVERWRITE_NEVER)


class OverwritePolicy:
    tree: DirTree | None
    overwrite: str
    delete: bool
    stats: ExtractStats

    def _delete_extra(self, fd: int, state: DirState) -> None:
        """Remove what the directory holds beyond the archive's entries (``delete``), without following links."""
        assert self.tree is not None and state.names is not None
        with os.scandir(fd) as entries:
            extra = [os.fsencode(e.name) for e in entries if os.fsencode(e.name) not in state.names]
        for name in extra:
            rel = state.rel + b"/" + name if state.rel else name
            try:
                if stat.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode):
                    self.tree.forget(rel)
                    shutil.rmtree(name, dir_fd=fd)
                else:
                    os.unlink(name, dir_fd=fd)
            except OSError as exc:
                self.warn(os.fsdecode(rel), f"cannot delete (not in the archive): {exc.strerror or exc}")
                continue
            with self._lock:
                self.stats.ndeleted += 1

    def _replaces(self, item: dict, st: os.stat_result, pfd: int, name: bytes) -> bool:
        """Whether the overwrite policy lets the archived ``item`` replace (or, for a directory, update) the
        entry ``st`` that is already at its place."""
        mode = self.overwrite
        if mode == OVERWRITE_ALWAYS:
            return True
        if mode == OVERWRITE_NEVER:
            return False
        if mode == OVERWRITE_IF_NEWER:
            return item[it.MTIME] > st.st_mtime_ns
        kind = it.FILE if item[it.TYPE] == it.HARDLINK else item[it.TYPE]
        if fsmeta.item_type(st.st_mode) != kind:
            return True
        if kind == it.FILE:
            return (st.st_size, st.st_mtime_ns) != (item.get(it.SIZE, 0), item[it.MTIME])
        if kind == it.SYMLINK:
            return os.readlink(name, dir_fd=pfd) != item[it.SYMLINK_TARGET]
        return (st.st_mtime_ns, stat.S_IMODE(st.st_mode)) != (item[it.MTIME], stat.S_IMODE(item[it.MODE]))

    def _place(self, pfd: int, name: bytes, rel: bytes, item: dict, make: Callable[[bytes], None]) -> bool:
        """Create an entry with ``make(name)``; whatever is in its place is replaced only by a complete new
        entry (made under a temporary name, then renamed over it).  False when the old entry stays."""
        try:
            make(name)
            return True
        except FileExistsError:
            pass
        if self.overwrite != OVERWRITE_ALWAYS:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            if not self._replaces(item, st, pfd, name):
                raise Kept
        temp = temp_name()
        make(temp)
        return self._put_in_place(pfd, temp, name, rel)

    def _put_in_place(self, pfd: int, temp: bytes, name: bytes, rel: bytes) -> bool:
        """Rename the finished ``temp`` over ``name``.  A directory in the way is removed only when it is
        empty, or with ``delete``; otherwise ``temp`` goes and the directory stays (False, with a warning)."""
        try:
            try:
                os.rename(temp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
                return True
            except IsADirectoryError:
                pass
            try:
                os.rmdir(name, dir_fd=pfd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                if not self.delete:
                    os.unlink(temp, dir_fd=pfd)
                    self._not_restored(
                        os.fsdecode(rel), "a non-empty directory is in its place (kept; --delete replaces it)"
                    )
                    return False
                assert self.tree is not None
                self.tree.forget(rel)
                shutil.rmtree(name, dir_fd=pfd)
                with self._lock:
                    self.stats.ndeleted += 1
            os.rename(temp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
            return True
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=pfd)
            raise

