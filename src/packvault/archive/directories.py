"""Directories in a restore: made (or kept, by the overwrite policy) when restore enters them, their
metadata applied when it leaves their subtree (its mtime would change while the subtree is filled), and,
with ``--delete``, what the archive does not have in them removed.

A part of ``Extractor`` (``extract.py``), whose target tree, options and statistics it uses.
"""

from __future__ import annotations

import contextlib
import os
import stat

from . import fsmeta
from .dirtree import DirState, DirTree, inside
from .outfile import temp_name
from .restoring import DISK_FULL, ExtractStats, Kept, Skip


class DirectoryRestore:
    tree: DirTree | None
    dry_run: bool
    delete: bool
    numeric_ids: bool
    stats: ExtractStats
    _dirs: list[DirState]
    _left_dirs: list[DirState]
    made_dirs: set[bytes] | None

    def _note_name(self, rel: bytes) -> None:
        """With ``delete``: remember that the innermost restored directory has this entry."""
        if rel and self._dirs and self._dirs[-1].names is not None:
            parent, _, name = rel.rpartition(b"/")
            if parent == self._dirs[-1].rel:
                self._dirs[-1].names.add(name)

    def _plan_dir(self, item: dict, rel: bytes, shown: str) -> None:
        if self.dry_run:
            self.stats.ndirs += 1
            self._dirs.append(DirState(rel, item, False, None))
            return
        assert self.tree is not None
        if not rel:  # the root of a backup of "/": the target itself
            apply = self._replaces(item, os.fstat(self.tree.get(rel)), -1, b"")
        else:
            parent, _, name = rel.rpartition(b"/")
            pfd = self.tree.get(parent)
            existing = self._make_dir(pfd, name, item)
            made = self.made_dirs is not None and rel in self.made_dirs  # by an earlier pass of this restore
            apply = existing is None or made or self._replaces(item, existing, pfd, name)
        self.tree.get(rel)
        self.stats.ndirs += 1
        self._dirs.append(DirState(rel, item, apply, set() if self.delete else None))

    def _make_dir(self, pfd: int, name: bytes, item: dict) -> os.stat_result | None:
        """Create the directory ``name``; returns the stat of a directory that was already there, else None.
        Anything else in its place is replaced (policy permitting) by a new directory, made first."""
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)  # the archived mode is applied when restore leaves it
            return None
        except FileExistsError:
            pass
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            return st
        if not self._replaces(item, st, pfd, name):
            raise Kept
        temp = temp_name()
        os.mkdir(temp, 0o700, dir_fd=pfd)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=pfd)
            os.rename(temp, name, src_dir_fd=pfd, dst_dir_fd=pfd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.rmdir(temp, dir_fd=pfd)
            raise
        return None

    def _leave_dirs(self, rel: bytes | None) -> None:
        """Note the directories that ``rel`` is not inside of (all of them for None): their subtrees are
        complete once the round's files are written, and then their metadata is applied (innermost first)."""
        while self._dirs and (rel is None or not inside(rel, self._dirs[-1].rel)):
            self._left_dirs.append(self._dirs.pop())

    def _apply_left_dirs(self) -> None:
        left, self._left_dirs = self._left_dirs, []
        if self.tree is None:
            return
        for state in left:
            shown = os.fsdecode(state.rel) or "."
            try:
                fd = self.tree.get(state.rel, create=False)
                if state.names is not None:
                    self._delete_extra(fd, state)
                if state.apply:
                    fsmeta.apply_metadata(shown, state.item, fd=fd, numeric_ids=self.numeric_ids, warn=self.warn)
            except Skip as exc:
                self.warn(shown, f"cannot set metadata: {exc}")
            except OSError as exc:
                if exc.errno in DISK_FULL:
                    raise
                self.warn(shown, f"cannot set metadata: {exc.strerror or exc}")
