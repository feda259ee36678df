"""Sources of a backup: the local file system walker.

A source yields ``Entry`` objects in a deterministic order (sorted, directories before their contents),
so that two backups of an unchanged tree produce the same item stream (and deduplicate it) and so that
restore can finish a directory's metadata as soon as it leaves its subtree.

What a user would not expect to be stored is left out, with a note: a directory the caller names in
``skip_dirs`` (the repository itself and the Packvault cache, when they lie inside the source tree: a
backup must not store itself), and a PATH that lies inside another PATH (walked once, as part of the outer
one).  Sockets cannot be backed up; each one met is a warning.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO

from . import fsmeta
from . import items as it
from .patterns import ExcludeMatcher

Warn = Callable[[str, str], None]

CACHEDIR_TAG = b"CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"  # https://bford.info/cachedir/


@dataclass(frozen=True)
class Selection:
    """What a backup leaves out beyond exclude patterns (``create --exclude-caches`` etc.).

    A directory marked as a cache (``CACHEDIR.TAG`` with its signature) or holding one of the
    ``exclude_if_present`` names keeps its own entry and the marker file, so a restore shows what was left
    out and why; everything else in it is skipped, with a note.  ``exclude_larger_than`` skips regular files
    above that many bytes, with a note."""

    exclude_caches: bool = False
    exclude_if_present: tuple[str, ...] = ()
    exclude_larger_than: int | None = None

    def __bool__(self) -> bool:
        return self.exclude_caches or bool(self.exclude_if_present) or self.exclude_larger_than is not None

    def marker(self, directory: bytes, names: list[bytes]) -> bytes | None:
        """The marker that makes ``directory`` a left-out one (its name), or None."""
        present = set(names)
        for name in self.exclude_if_present:
            if os.fsencode(name) in present:
                return os.fsencode(name)
        if self.exclude_caches and CACHEDIR_TAG in present:
            try:
                with open(os.path.join(directory, CACHEDIR_TAG), "rb") as f:
                    if f.read(len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE:
                        return CACHEDIR_TAG
            except OSError:
                return None
        return None


@dataclass
class Entry:
    item: dict  # item fields except chunks
    source_path: bytes  # where to read it (absolute)
    cache_key: tuple | None = None  # (inode, size, mtime_ns, ctime_ns) for regular files
    opener: Callable[[], BinaryIO] | None = None
    extra: dict = field(default_factory=dict)
    local_file: bool = False  # a regular file at ``source_path`` that another process may open and read
    # Its extended attributes are not read yet: the backup reads them with the file's data, or, for a file the
    # files cache vouches for, only if the cache saw some (``create.ArchiveCreator``).
    xattrs_pending: bool = False
    # The files cache's key of ``source_path`` once a backup has asked the cache about it: computing it (a
    # BLAKE3 of the path) twice per file, to look up and then to remember, was 1-2 % of the main thread.
    files_cache_key: bytes | None = None


def archive_path(abs_path: bytes) -> bytes:
    """The path stored in the archive: the absolute path without its leading slash."""
    return abs_path.lstrip(b"/") or b"."


def _prefix(directory: bytes) -> bytes:
    """``directory`` with one trailing slash: its children's paths are this plus their names."""
    return directory if directory.endswith(b"/") else directory + b"/"


def _components(path: bytes) -> list[bytes]:
    return path.split(b"/")


class FilesystemSource:
    def __init__(
        self,
        paths: list[str],
        *,
        excludes: ExcludeMatcher,
        one_file_system: bool,
        warn: Warn,
        note: Warn | None = None,
        skip_dirs: Mapping[str, str] | None = None,
        selection: Selection | None = None,
    ):
        """``note``: told about what is left out on purpose (``warn``: about what could not be read).
        ``skip_dirs``: directory path -> why it is not backed up (matched by device and inode).
        ``selection``: caches, marked directories and large files to leave out."""
        self.selection = selection or Selection()
        # sorted by components, the order of the walk itself: an outer PATH comes before the PATHs inside it
        self.roots = sorted((os.fsencode(os.path.normpath(os.path.abspath(p))) for p in paths), key=_components)
        self.excludes = excludes
        self.one_file_system = one_file_system
        self.warn = warn
        self.note = note or (lambda path, message: None)
        self.skip_dirs = dict(skip_dirs or {})
        self._skip: dict[tuple[int, int], str] = {}
        self._pending_roots: set[bytes] = set()  # roots not walked yet; one met inside another is walked there
        self._hardlinks: dict[tuple[int, int], bytes] = {}

    def __iter__(self) -> Iterator[Entry]:
        self._skip = {}
        for path, why in self.skip_dirs.items():
            try:
                st = os.stat(path)
            except OSError:
                continue  # not there (yet): nothing of it can be in the walk either
            self._skip[(st.st_dev, st.st_ino)] = why
        self._pending_roots = set(self.roots)
        for root in self.roots:
            if root not in self._pending_roots:
                self.note(os.fsdecode(root), "given twice, or inside another PATH given: stored once")
                continue
            self._pending_roots.discard(root)
            try:
                st = os.lstat(root)
            except OSError as exc:
                self.warn(os.fsdecode(root), f"cannot read: {exc.strerror}")
                continue
            yield from self._walk(root, st, st.st_dev)

    def _walk(self, root: bytes, root_st: os.stat_result, root_dev: int) -> Iterator[Entry]:
        """Entries under ``root`` depth first, each directory before its sorted contents.

        A stack of the open directories' name iterators rather than recursive generators: every entry
        yielded through ``yield from`` passes each enclosing generator, a cost that grows with the depth and
        was a tenth of an unchanged re-run of a home directory."""
        entry = self._visit(root, root_st)
        if entry is None:
            return
        yield entry
        names = self._names(root, entry)
        if names is None:
            return
        stack = [(_prefix(root), iter(names))]
        lstat, is_dir = os.lstat, stat.S_ISDIR
        while stack:
            prefix, remaining = stack[-1]
            for name in remaining:
                child = prefix + name
                try:
                    child_st = lstat(child)
                except FileNotFoundError:
                    self.warn(os.fsdecode(child), "vanished during backup")
                    continue
                except OSError as exc:
                    self.warn(os.fsdecode(child), f"cannot stat: {exc.strerror}")
                    continue
                if self.one_file_system and is_dir(child_st.st_mode) and child_st.st_dev != root_dev:
                    # the mount point itself is recorded (empty), its contents are not; unless it is a PATH
                    # of its own, walked in full as that
                    if child in self._pending_roots:
                        continue
                    entry = self._entry(child, child_st)
                    if entry is not None:
                        yield entry
                    continue
                entry = self._visit(child, child_st)
                if entry is None:
                    continue
                yield entry
                names = self._names(child, entry)
                if names:
                    stack.append((child + b"/", iter(names)))
                    break  # into the directory; this one's iterator goes on where it stopped once it is done
            else:
                stack.pop()

    def _visit(self, path: bytes, st: os.stat_result) -> Entry | None:
        """The entry of ``path``, or None when it is left out (excluded, a skipped directory, unreadable)."""
        if self.excludes and self.excludes.excluded(path):
            return None
        self._pending_roots.discard(path)
        if self._skip and stat.S_ISDIR(st.st_mode):
            why = self._skip.get((st.st_dev, st.st_ino))
            if why is not None:
                self.note(os.fsdecode(path), f"not backed up: {why}")
                return None
        return self._entry(path, st)

    def _names(self, path: bytes, entry: Entry) -> list[bytes] | None:
        """The sorted names to walk in the directory ``entry`` (None: not a directory, or not listable)."""
        if entry.item[it.TYPE] != it.DIR:
            return None
        try:
            names = sorted(fsmeta.list_directory(path))  # names only: no DirEntry per child, ~2x faster than scandir
        except OSError as exc:
            self.warn(os.fsdecode(path), f"cannot list directory: {exc.strerror}")
            return None
        if self.selection:
            marker = self.selection.marker(path, names)
            if marker is not None:
                what = "a cache directory" if marker == CACHEDIR_TAG else f"marked by {os.fsdecode(marker)}"
                self.note(os.fsdecode(path), f"contents not backed up: {what} (only the marker is stored)")
                names = [marker]
        return names

    def _entry(self, path: bytes, st: os.stat_result) -> Entry | None:
        kind = fsmeta.item_type(st.st_mode)
        if kind is None:
            what = "a socket" if stat.S_ISSOCK(st.st_mode) else f"an unsupported file type ({st.st_mode:o})"
            self.warn(os.fsdecode(path), f"not backed up: {what}")
            return None
        item = fsmeta.stat_fields(st, {it.PATH: archive_path(path), it.TYPE: kind})
        if kind != it.FILE:
            _add_xattrs(item, path)
        if kind == it.SYMLINK:
            # readlink moves the link's atime (no O_NOATIME for it), so the next backup would see a changed
            # item, and every chunk of the item stream around it would be stored again; restore gives a link
            # its mtime as atime
            del item[it.ATIME]
            try:
                item[it.SYMLINK_TARGET] = os.readlink(path)
            except OSError as exc:
                self.warn(os.fsdecode(path), f"cannot read link: {exc.strerror}")
                return None
            return Entry(item, path)
        if kind in (it.CHARDEV, it.BLOCKDEV):
            item[it.RDEV] = st.st_rdev
            return Entry(item, path)
        if kind != it.FILE:
            return Entry(item, path)
        limit = self.selection.exclude_larger_than
        if limit is not None and st.st_size > limit:
            self.note(os.fsdecode(path), f"not backed up: larger than --exclude-larger-than ({st.st_size} bytes)")
            return None
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self._hardlinks.get(key)
            if first is not None:
                item[it.TYPE] = it.HARDLINK
                item[it.HARDLINK_TARGET] = first
                _add_xattrs(item, path)
                return Entry(item, path)
            self._hardlinks[key] = item[it.PATH]
        item[it.SIZE] = st.st_size
        return Entry(
            item,
            path,
            cache_key=(st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns),
            opener=lambda: fsmeta.open_source_file(path),  # the caller closes it
            local_file=True,
            xattrs_pending=True,
        )


def _add_xattrs(item: dict, path: bytes) -> None:
    xattrs = fsmeta.read_xattrs(path)
    if xattrs:
        item[it.XATTRS] = xattrs
