"""Links and special files of a restore (``LinkRestore``, part of ``extract.Extractor``): hardlinks,
symlinks, fifos and devices, made relative to their parent's descriptor and never followed (``extract.py``)."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from . import fsmeta
from . import items as it
from .outfile import OutFile
from .restoring import ExtractStats, Skip, strip_path

if TYPE_CHECKING:
    from .dirtree import DirTree


class LinkRestore:
    """Planned in archive order, before the round's data is read: a hardlink to a file still pending in the
    round makes that file exist first (its data arrives later, and the link goes with it if it fails)."""

    tree: DirTree | None
    dry_run: bool
    strip_components: int
    numeric_ids: bool
    stats: ExtractStats

    def _plan_other(self, item: dict, rel: bytes, shown: str, pending: dict[bytes, OutFile]) -> None:
        kind = item[it.TYPE]
        if self.dry_run:
            self.stats.nother += 1
            return
        assert self.tree is not None
        parent, _, name = rel.rpartition(b"/")
        pfd = self.tree.get(parent)
        source: OutFile | None = None
        if kind == it.HARDLINK:
            source_rel = strip_path(item[it.HARDLINK_TARGET], self.strip_components)
            if source_rel is None:
                raise Skip("its hardlink target is not restored (--strip-components)")
            source = pending.get(source_rel)
            if source is not None and not source.superseded:
                source.create_now()  # a reader thread creates it on its first chunk: not yet, so now
                src_fd, src_name = source.dir_fd, source.open_name
            else:
                source = None
                src_parent, _, src_name = source_rel.rpartition(b"/")
                try:
                    src_fd = self.tree.get(src_parent, create=False)
                    src_st = os.stat(src_name, dir_fd=src_fd, follow_symlinks=False)
                except FileNotFoundError:
                    raise Skip("its hardlink target was not restored") from None
                if not stat.S_ISREG(src_st.st_mode):
                    raise Skip("its hardlink target is not a regular file") from None

            def make(at: bytes) -> None:
                os.link(src_name, at, src_dir_fd=src_fd, dst_dir_fd=pfd, follow_symlinks=False)

        elif kind == it.SYMLINK:

            def make(at: bytes) -> None:
                os.symlink(item[it.SYMLINK_TARGET], at, dir_fd=pfd)

        elif kind == it.FIFO:

            def make(at: bytes) -> None:
                os.mkfifo(at, stat.S_IMODE(item[it.MODE]), dir_fd=pfd)

        else:

            def make(at: bytes) -> None:
                os.mknod(at, item[it.MODE], item.get(it.RDEV, 0), dir_fd=pfd)

        if not self._place(pfd, name, rel, item, make):
            return
        self.stats.nother += 1
        if source is not None:  # its data is still coming: if the target fails, the link goes too
            source.links.append((pfd, name))
            return
        if kind != it.HARDLINK:  # a hardlink shares the inode (and metadata) of its target
            fsmeta.apply_metadata_at(pfd, name, item, numeric_ids=self.numeric_ids, warn=self.warn)
