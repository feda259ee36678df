"""``extract``: restore an archive (or part of it) into a directory, bit-exact, verified, and confined to it.

Every chunk is authenticated and its id (a MAC of the plaintext) recomputed before it is written.  A file
with a chunk that fails is reported and removed, never left behind as a silent wrong restore; the other
files go on.  Chunks that are all zeros become holes, so sparse files stay sparse.  Directory metadata is
applied when restore leaves the directory's subtree (its mtime would change while it is filled).

**Nothing is written outside the target.**  An archive may hold symlinks (restore creates them), and a
target may already hold some; a path lookup that followed one would write, chmod or link wherever it
points.  So no path is ever looked up through a link: every directory is opened component by component
from the target's descriptor with ``O_NOFOLLOW`` (``_DirTree``), entries are created and replaced relative
to their parent's descriptor, and metadata is set through the entry's own descriptor (or, for symlinks,
with ``follow_symlinks=False``).  An item whose parent turns out to be a symlink or a file is skipped
with a warning, whoever made that link, and so is an item whose names are unsafe in themselves
(``items.unsafe_item_reason``: absolute, ``..``, empty components, a hardlink to outside).  A directory is
resolved once per round and its descriptor kept (the descriptors of one round are bounded), so this costs
no syscall per chunk.

**Nothing is destroyed that is not replaced** (``--overwrite``, like restic's ``restore --overwrite``).
Whatever is in the way of an entry is replaced only once the new entry is complete: it is made under a
temporary name in the same directory and renamed over the old one, so a failed or interrupted restore
leaves the old entry, never neither.  A non-empty directory is never removed to make room, unless
``delete`` asks the target to mirror the archive; ``delete`` also removes, inside every restored
directory, the entries the archive does not have.  Modes: ``always`` replaces every existing entry (the
default), ``if-changed`` keeps a file whose size and mtime match (a symlink with the same target, other
entries with the same type and mtime), ``if-newer`` replaces only entries older than the archived one,
``never`` keeps whatever exists.  An existing directory is always merged into; its metadata follows the same
rule.

Restore works in batches of items.  For each batch, in archive order, it creates directories, links and
special files; then it asks the reader for all the batch's chunks at once.  The reader groups them by pack
and reads each pack in a few large ranged reads, and every plaintext is written with ``pwrite`` at its file
offset by the thread that decrypted it.  A regular file is created by the thread that writes its first chunk
and finished (metadata applied, moved into place) by the thread that wrote its last.  Batches bound the
memory the plan needs, so an archive of any size restores in constant memory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import PackvaultError, StorageFull, UsageError
from ..repository.reader import ChunkReader
from . import fsmeta
from . import items as it

_ZEROS = bytes(16 * 1024 * 1024)
# a batch's plan holds one small tuple per chunk: 16k chunks is a few MiB of plan and, with ~1 MiB chunks,
# up to 16 GiB of data to group by pack
BATCH_CHUNKS = 16384
BATCH_ITEMS = 8192

OVERWRITE_ALWAYS, OVERWRITE_IF_CHANGED = "always", "if-changed"
OVERWRITE_IF_NEWER, OVERWRITE_NEVER = "if-newer", "never"
OVERWRITE_MODES = (OVERWRITE_ALWAYS, OVERWRITE_IF_CHANGED, OVERWRITE_IF_NEWER, OVERWRITE_NEVER)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
TEMP_PREFIX = b".packvault-restore-"


@dataclass
class ExtractStats:
    nfiles: int = 0
    ndirs: int = 0
    nother: int = 0
    nskipped: int = 0  # existing entries kept by the overwrite policy (and what lies below a kept one)
    ndeleted: int = 0  # entries removed because the archive does not have them (``delete``)
    ndamaged: int = 0  # files restored with chunks that check --repair replaced by zeros
    bytes_written: int = 0
    bytes_arrived: int = 0  # live: chunk bytes written (or verified) so far, for progress
    errors: list[str] = field(default_factory=list)  # entries that could not be restored
    warnings: list[str] = field(default_factory=list)  # every problem, those above included
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    def as_dict(self) -> dict:
        return {
            "nfiles": self.nfiles,
            "ndirs": self.ndirs,
            "nother": self.nother,
            "skipped": self.nskipped,
            "deleted": self.ndeleted,
            "damaged": self.ndamaged,
            "bytes": self.bytes_written,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "duration": round(self.duration, 3),
        }


Warn = Callable[[str, str], None]  # (path, message): the CLI prints it; the engine only reports it


def strip_path(path: bytes, components: int) -> bytes | None:
    """``path`` without its first ``components`` parts (``b""`` is the target itself), or None when nothing
    is left of it (such items are not restored, like ``tar --strip-components``)."""
    if not components:
        return b"" if path == it.ROOT_PATH else path
    parts = [] if path == it.ROOT_PATH else path.split(b"/")
    if len(parts) <= components:
        return None
    return b"/".join(parts[components:])


def damage_note(item: dict) -> str | None:
    """The warning for a file restored with zeros in place of lost chunks, or None."""
    count = it.damaged_chunks(item)
    if count is None:
        return None
    return f"restored with {count} damaged chunk(s) replaced by zeros; see check"


def shown_path(item: dict) -> str:
    """The item's path for messages, whatever damage or crafting put there."""
    path = item.get(it.PATH)
    return it.path_str(item) if isinstance(path, bytes) else repr(path)


class PathSelector:
    """The items selected by PATH arguments (archive paths, leading slash optional), and which arguments
    selected nothing (a typo must not look like a successful restore)."""

    def __init__(self, paths: Iterable[str]):
        self._prefixes = [(p, p.strip("/").encode("utf-8", "surrogateescape")) for p in paths]
        self._matched: set[str] = set()

    def __call__(self, item: dict) -> bool:
        if not self._prefixes:
            return True
        path = item[it.PATH]
        hit = False
        for arg, prefix in self._prefixes:
            if not prefix or path == prefix or path.startswith(prefix + b"/"):
                self._matched.add(arg)
                hit = True
        return hit

    def unmatched(self) -> list[str]:
        return [arg for arg, _ in self._prefixes if arg not in self._matched]


class _Skip(Exception):
    """An item that is not restored; the message says why (becomes a warning)."""


class _Kept(Exception):
    """An existing entry that the overwrite policy keeps (not a warning)."""


@dataclass
class _DirState:
    rel: bytes
    item: dict
    apply: bool  # set the archived metadata (False: an existing directory the policy leaves as it is)
    names: set[bytes] | None  # with ``delete``: the names the archive has in it


class Extractor:
    def __init__(
        self,
        reader: ChunkReader,
        target: str,
        *,
        dry_run: bool = False,
        sparse: bool = True,
        numeric_ids: bool = False,
        overwrite: str = OVERWRITE_ALWAYS,
        delete: bool = False,
        strip_components: int = 0,
        progress: Callable[[ExtractStats, str], None] | None = None,
        warn: Warn | None = None,
    ):
        if overwrite not in OVERWRITE_MODES:
            raise UsageError(f"unknown overwrite mode {overwrite!r}", hint=f"use one of {', '.join(OVERWRITE_MODES)}")
        if strip_components < 0:
            raise UsageError("--strip-components must not be negative")
        self.reader = reader
        self.target = os.fsencode(os.path.abspath(target))
        self.dry_run = dry_run
        self.sparse = sparse
        self.numeric_ids = numeric_ids
        self.overwrite = overwrite
        self.delete = delete
        self.strip_components = strip_components
        self.progress = progress
        self._report = warn
        self.stats = ExtractStats()
        self.tree: _DirTree | None = None
        self._dirs: list[_DirState] = []  # directories whose subtree restore is in
        self._left_dirs: list[_DirState] = []  # left, metadata due at the end of the round
        self._lock = threading.Lock()  # per-file chunk counts, totals and reports, updated from reader threads
        self._kept: bytes | None = None  # a directory path the policy kept as a non-directory: skip below it
        self._position = b""  # the directory of the last item planned (its descriptors stay open)

    # --- reports ------------------------------------------------------------------------------------------

    def warn(self, path, message: str) -> None:
        text = path.decode("utf-8", "backslashreplace") if isinstance(path, bytes) else path  # printable
        with self._lock:
            self.stats.warnings.append(f"{text}: {message}")
        if self._report:
            self._report(text, message)

    def _not_restored(self, path: str, message: str) -> None:
        with self._lock:
            self.stats.errors.append(f"{path}: {message}")
        self.warn(path, f"not restored: {message}")

    # --- the run ------------------------------------------------------------------------------------------

    def run(self, items: Iterator[dict]) -> ExtractStats:
        if not self.dry_run:
            self.tree = _DirTree(self._open_target())
        try:
            for batch in _batches(items):
                self._restore_batch(batch)
            self._leave_dirs(None)
            self._apply_left_dirs()
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise StorageFull(f"disk full while restoring into {os.fsdecode(self.target)}") from None
            raise
        finally:
            if self.tree is not None:
                self.tree.close()
        self.stats.duration = time.monotonic() - self.stats.started
        return self.stats

    def _open_target(self) -> int:
        shown = os.fsdecode(self.target)
        hint = "choose a directory you can write to with --target"
        if os.path.lexists(self.target) and not os.path.isdir(self.target):
            raise UsageError(f"cannot restore into {shown}: not a directory", hint=hint)
        try:
            os.makedirs(self.target, exist_ok=True)
            fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise UsageError(f"cannot restore into {shown}: {exc.strerror}", hint=hint) from None
        if not os.access(self.target, os.W_OK | os.X_OK):
            os.close(fd)
            raise UsageError(f"cannot restore into {shown}: not writable", hint=hint)
        return fd

    def _restore_batch(self, batch: list[dict]) -> None:
        budget = _dir_budget()
        requests: list[tuple[tuple[_OutFile, int, int], bytes]] = []
        pending: dict[bytes, _OutFile] = {}
        for item in batch:
            self._plan(item, requests, pending)
            if self.tree is not None and len(self.tree) > budget:
                self._run_round(requests, pending)  # bounds the directory descriptors held open
                requests, pending = [], {}
        self._run_round(requests, pending)

    def _run_round(self, requests: list, pending: dict[bytes, _OutFile]) -> None:
        try:
            if requests:
                self.reader.scatter(requests, self._on_chunk)
        finally:
            for out in pending.values():
                if out.remaining:  # only after an error that stopped the restore
                    out.abort()
        self._apply_left_dirs()
        if self.tree is not None:
            self.tree.prune(self._position)

    def _plan(self, item: dict, requests: list, pending: dict[bytes, _OutFile]) -> None:
        shown = shown_path(item)
        if self.progress:
            self.progress(self.stats, shown)
        reason = it.unsafe_item_reason(item)
        if reason is not None:
            self._not_restored(shown, f"unsafe item in the archive ({reason})")
            return
        rel = strip_path(item[it.PATH], self.strip_components)
        if rel is None:
            return
        if self._kept is not None:
            if _inside(rel, self._kept):
                self.stats.nskipped += 1
                return
            self._kept = None
        self._leave_dirs(rel)
        self._note_name(rel)
        self._position = rel if item[it.TYPE] == it.DIR else rel.rpartition(b"/")[0]
        try:
            if item[it.TYPE] == it.FILE:
                self._plan_file(item, rel, shown, requests, pending)
            elif item[it.TYPE] == it.DIR:
                self._plan_dir(item, rel, shown)
            else:
                self._plan_other(item, rel, shown, pending)
        except _Kept:
            self.stats.nskipped += 1
            if item[it.TYPE] == it.DIR:
                self._kept = rel
        except _Skip as exc:
            self._not_restored(shown, str(exc))
            if item[it.TYPE] == it.DIR:
                self._kept = rel  # its entries have nowhere to go: one warning, not one per entry
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise
            self._not_restored(shown, exc.strerror or str(exc))
            if item[it.TYPE] == it.DIR:
                self._kept = rel

    # --- directories ----------------------------------------------------------------------------------------

    def _note_name(self, rel: bytes) -> None:
        """With ``delete``: remember that the innermost restored directory has this entry."""
        if rel and self._dirs and self._dirs[-1].names is not None:
            parent, _, name = rel.rpartition(b"/")
            if parent == self._dirs[-1].rel:
                self._dirs[-1].names.add(name)

    def _plan_dir(self, item: dict, rel: bytes, shown: str) -> None:
        if self.dry_run:
            self.stats.ndirs += 1
            self._dirs.append(_DirState(rel, item, False, None))
            return
        assert self.tree is not None
        if not rel:  # the root of a backup of "/": the target itself
            apply = self._replaces(item, os.fstat(self.tree.get(rel)), -1, b"")
        else:
            parent, _, name = rel.rpartition(b"/")
            pfd = self.tree.get(parent)
            existing = self._make_dir(pfd, name, item)
            apply = existing is None or self._replaces(item, existing, pfd, name)
        self.tree.get(rel)
        self.stats.ndirs += 1
        self._dirs.append(_DirState(rel, item, apply, set() if self.delete else None))

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
            raise _Kept
        temp = _temp_name()
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
        while self._dirs and (rel is None or not _inside(rel, self._dirs[-1].rel)):
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
            except _Skip as exc:
                self.warn(shown, f"cannot set metadata: {exc}")
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise
                self.warn(shown, f"cannot set metadata: {exc.strerror or exc}")

    def _delete_extra(self, fd: int, state: _DirState) -> None:
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

    # --- entries in place -------------------------------------------------------------------------------------

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
                raise _Kept
        temp = _temp_name()
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

    # --- links and special files ------------------------------------------------------------------------------

    def _plan_other(self, item: dict, rel: bytes, shown: str, pending: dict[bytes, _OutFile]) -> None:
        kind = item[it.TYPE]
        if self.dry_run:
            self.stats.nother += 1
            return
        assert self.tree is not None
        parent, _, name = rel.rpartition(b"/")
        pfd = self.tree.get(parent)
        source: _OutFile | None = None
        if kind == it.HARDLINK:
            source_rel = strip_path(item[it.HARDLINK_TARGET], self.strip_components)
            if source_rel is None:
                raise _Skip("its hardlink target is not restored (--strip-components)")
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
                    raise _Skip("its hardlink target was not restored") from None
                if not stat.S_ISREG(src_st.st_mode):
                    raise _Skip("its hardlink target is not a regular file") from None

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

    # --- regular files ----------------------------------------------------------------------------------------

    def _plan_file(
        self, item: dict, rel: bytes, shown: str, requests: list, pending: dict[bytes, _OutFile]
    ) -> None:
        pfd = None
        parent, _, name = rel.rpartition(b"/")
        if not self.dry_run:
            assert self.tree is not None
            pfd = self.tree.get(parent)
            if self.overwrite != OVERWRITE_ALWAYS:  # decided before any data is read
                try:
                    st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and not self._replaces(item, st, pfd, name):
                    raise _Kept
        self.stats.nfiles += 1
        out = _OutFile(self, pfd, name, rel, item)
        offset = 0
        for chunk_id, size in item.get(it.CHUNKS) or ():
            requests.append(((out, offset, size), chunk_id))
            offset += size
        out.remaining = len(item.get(it.CHUNKS) or ())
        if out.remaining:
            if rel in pending:  # the same path twice in one archive: the last one wins
                pending[rel].superseded = True
            pending[rel] = out
        else:
            self._finish_file(out)

    def _on_chunk(self, target: tuple[_OutFile, int, int], data: bytes | PackvaultError) -> None:
        """Runs in a reader thread, right after the chunk was verified (or failed): writes it, and finishes
        the file when it was the last one (through the descriptor it wrote with), so the planning thread
        never waits on a file."""
        out, offset, size = target
        fd = None
        try:
            if isinstance(data, PackvaultError):
                out.failed = out.failed or str(data)
            elif out.failed is None:
                try:
                    fd = out.write_at(offset, data, self.sparse)
                except OSError as exc:
                    if exc.errno in _DISK_FULL:
                        raise
                    out.failed = exc.strerror or str(exc)
            with self._lock:
                out.remaining -= 1
                if out.failed is None:
                    out.written += size
                self.stats.bytes_arrived += size
                last = out.remaining == 0
            if self.progress:  # from the reader thread: the byte count moves as the data arrives
                self.progress(self.stats, it.path_str(out.item))
            if last:
                self._finish_file(out, fd)
        finally:
            if fd is not None:
                os.close(fd)

    def _finish_file(self, out: _OutFile, fd: int | None = None) -> None:
        shown = shown_path(out.item)
        if out.failed:
            out.abort()
            self._not_restored(shown, out.failed)
            return
        with self._lock:
            self.stats.bytes_written += out.written
        if not out.superseded:
            note = damage_note(out.item)
            if note is not None:
                with self._lock:
                    self.stats.ndamaged += 1
                self.warn(shown, note)
        if self.dry_run or out.superseded:
            return
        own_fd = None
        try:
            own_fd = out.descriptor() if fd is None else None  # empty, or holes only
            fsmeta.apply_metadata(
                shown, out.item, fd=fd if fd is not None else own_fd, numeric_ids=self.numeric_ids, warn=self.warn
            )
            if out.open_name != out.name and not self._put_in_place(out.dir_fd, out.open_name, out.name, out.rel):
                out.created = False  # the temporary file is gone already
                out.abort()
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise
            out.abort()
            self._not_restored(shown, exc.strerror or str(exc))
        finally:
            if own_fd is not None:
                os.close(own_fd)


def _inside(rel: bytes, directory: bytes) -> bool:
    return not directory or rel == directory or rel.startswith(directory + b"/")


def _temp_name() -> bytes:
    return TEMP_PREFIX + os.urandom(8).hex().encode()


def _dir_budget() -> int:
    """How many directory descriptors a round may hold: a quarter of the soft limit on open files (the
    readers' file descriptors and the S3 connections need the rest)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(32, min(4096, soft // 4))


def _batches(items: Iterator[dict]) -> Iterator[list[dict]]:
    """Consecutive items with at most BATCH_CHUNKS chunks and BATCH_ITEMS items between them (one file
    with more chunks is a batch of its own)."""
    batch: list[dict] = []
    nchunks = 0
    for item in items:
        n = len(item.get(it.CHUNKS) or ())
        if batch and (nchunks + n > BATCH_CHUNKS or len(batch) >= BATCH_ITEMS):
            yield batch
            batch, nchunks = [], 0
        batch.append(item)
        nchunks += n
    if batch:
        yield batch


class _DirTree:
    """Descriptors of the target's directories, by path relative to it (``b""`` is the target).

    A directory is opened from its parent's descriptor with ``O_NOFOLLOW``, so a symlink in place of any
    component (made by this archive, by an earlier restore or by anyone) is never followed; a missing
    component is created.  Descriptors stay open while the round that resolved them runs, because reader
    threads create files relative to them; between rounds only the chain to the current position is kept.
    """

    def __init__(self, root_fd: int):
        self.fds: dict[bytes, int] = {b"": root_fd}
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

    @staticmethod
    def _open(parent_fd: int, path: bytes, create: bool) -> int:
        name = path.rpartition(b"/")[2]
        for attempt in (1, 2):
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                if not create or attempt == 2:
                    raise
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise _Skip(
                        f"{os.fsdecode(path)} is not a directory in the target (a symlink or another entry is "
                        "there; restore never follows one)"
                    ) from None
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o777, dir_fd=parent_fd)
        raise AssertionError("unreachable")

    def forget(self, rel: bytes) -> None:
        """``rel`` is being removed: close the descriptors of it and below."""
        with self._lock:
            for path in [p for p in self.fds if p and _inside(p, rel)]:
                os.close(self.fds.pop(path))

    def prune(self, keep: bytes) -> None:
        """Close every descriptor but those of ``keep`` and its ancestors."""
        with self._lock:
            for path in [p for p in self.fds if p and not _inside(keep, p)]:
                os.close(self.fds.pop(path))

    def close(self) -> None:
        with self._lock:
            for fd in self.fds.values():
                os.close(fd)
            self.fds.clear()


class _OutFile:
    """A regular file being restored, written with ``pwrite`` from reader threads.

    The file is created by whichever reader thread writes its first chunk (at its final size, so chunks can
    land in any order and all-zero chunks stay holes), not by the planning thread.  Creating 5,000 files
    took ~1.1 s on this benchmark's ext4, and the planning thread did it before the first byte was read;
    in the readers it overlaps the downloads, as restic does it.  Where something already exists, the file
    is written under a temporary name and renamed over it when complete (``Extractor._put_in_place``).
    """

    def __init__(self, extractor: Extractor, dir_fd: int | None, name: bytes, rel: bytes, item: dict):
        self.extractor = extractor
        self.dir_fd = dir_fd  # None in a dry run
        self.name = name
        self.open_name = name  # where it is being written: ``name``, or a temporary name beside it
        self.rel = rel
        self.item = item
        self.failed: str | None = None
        self.written = 0
        self.remaining = 0
        self.links: list[tuple[int, bytes]] = []  # hardlinks made to this file before its data arrived
        self.superseded = False  # a later entry of the archive has the same path
        self.created = False
        self._create_lock = threading.Lock()

    @property
    def _inactive(self) -> bool:
        return self.dir_fd is None or self.superseded

    def _create(self) -> int:
        flags = _FILE_FLAGS | os.O_CREAT | os.O_EXCL
        try:  # the usual case, a path where nothing is yet: one call, and nothing can be followed
            fd = os.open(self.name, flags, 0o600, dir_fd=self.dir_fd)
        except FileExistsError:  # restoring over something: it stays until this file is complete
            self.open_name = _temp_name()
            fd = os.open(self.open_name, flags, 0o600, dir_fd=self.dir_fd)
        try:
            if self.item.get(it.SIZE):
                os.ftruncate(fd, self.item[it.SIZE])
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self) -> int:
        """A descriptor for writing; the first one creates the file."""
        if not self.created:
            with self._create_lock:
                if not self.created:
                    fd = self._create()
                    self.created = True
                    return fd
        return os.open(self.open_name, _FILE_FLAGS, dir_fd=self.dir_fd)

    def create_now(self) -> None:
        """Create the file before its data arrives (a hardlink to it is about to be made)."""
        if not self._inactive:
            os.close(self._open())

    def descriptor(self) -> int | None:
        """At the end of a file that got no write (empty, or holes only): a descriptor to finish it through
        (the file is created if no hardlink needed it earlier); None in a dry run or for a superseded entry."""
        if self._inactive:
            return None
        return self._open()

    def write_at(self, offset: int, data: bytes, sparse: bool) -> int | None:
        """Write one chunk; returns the open descriptor (the caller closes it), or None if nothing was
        written (a dry run, a superseded entry, or an all-zero chunk left as a hole)."""
        if self._inactive:
            return None
        n = len(data)
        if sparse and n <= len(_ZEROS) and memoryview(data) == memoryview(_ZEROS)[:n]:
            return None  # the file is created at full size: this stays a hole
        # opened per chunk rather than held: a batch may have thousands of files in progress
        fd = self._open()
        try:
            view = memoryview(data)
            while view:
                done = os.pwrite(fd, view, offset)
                view = view[done:]
                offset += done
        except BaseException:
            os.close(fd)
            raise
        return fd

    def abort(self) -> None:
        """Remove what this restore made: the file (only if it was created: whatever was at its path before
        stays) and the hardlinks made to it."""
        if self.dir_fd is None:
            return
        for dir_fd, name in (*self.links, *(((self.dir_fd, self.open_name),) if self.created else ())):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        self.links = []
        self.created = False


__all__ = [
    "OVERWRITE_MODES",
    "ExtractStats",
    "Extractor",
    "PackvaultError",
    "PathSelector",
    "damage_note",
    "strip_path",
]
