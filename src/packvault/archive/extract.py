"""``extract``: restore an archive (or part of it) into a directory, bit-exact, verified, and confined to it.

Every chunk is authenticated and its id (a MAC of the plaintext) recomputed before it is written.  A file
with a chunk that fails is reported and removed, never left behind as a silent wrong restore; the other
files go on.  Chunks that are all zeros become holes, so sparse files stay sparse.  Directory metadata is
applied when restore leaves the directory's subtree (its mtime would change while it is filled).

**Nothing is written outside the target.**  An archive may hold symlinks (restore creates them), and a
target may already hold some; a path lookup that followed one would write, chmod or link wherever it
points.  So no path is ever looked up through a link: every directory is opened component by component
from the target's descriptor with ``O_NOFOLLOW`` (``dirtree.py``), entries are created and replaced relative
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

The parts: ``restoring.py`` (statistics, selection, what restores to a bucket share), ``dirtree.py`` (the
directory descriptors), ``directories.py`` (directories entered and left), ``overwrite.py`` (the overwrite
policy), ``outfile.py`` (a regular file being written), ``links.py`` (links and special files),
``restorers.py`` (the restore processes for small files); this module plans and runs the batches.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from ..errors import PackvaultError, StorageFull, UsageError
from ..processes import usable_processes
from ..repository.reader import ChunkReader
from . import fsmeta
from . import items as it
from .directories import DirectoryRestore
from .dirtree import DirState, DirTree, dir_budget, inside
from .links import LinkRestore
from .outfile import OutFile
from .overwrite import (
    OVERWRITE_ALWAYS,
    OVERWRITE_IF_CHANGED,
    OVERWRITE_IF_NEWER,
    OVERWRITE_MODES,
    OVERWRITE_NEVER,
    OverwritePolicy,
)
from .restorers import ProcessHandoff, RestorePool, to_worker
from .restoring import DISK_FULL, ExtractStats, Kept, PathSelector, Skip, Warn, damage_note, shown_path, strip_path

# a batch's plan holds one small tuple per chunk: 16k chunks is a few MiB of plan and, with ~1 MiB chunks,
# up to 16 GiB of data to group by pack
BATCH_CHUNKS = 16384
BATCH_ITEMS = 8192
# From a remote repository a round costs a round trip before its first data arrives, with nothing else to
# read meanwhile: rounds twice as large there (bench/README.md, fifteenth round: 9 % at 50 ms per request).
# Locally they measured no faster, and a round's plan costs ~1 KiB per item.
REMOTE_ROUND_SCALE = 2


class Extractor(DirectoryRestore, OverwritePolicy, LinkRestore, ProcessHandoff):
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
        processes: int | None = None,
    ):
        """``processes``: restore processes for small files (``restorers.py``); None: one per usable CPU."""
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
        self.tree: DirTree | None = None
        self._dirs: list[DirState] = []  # directories whose subtree restore is in
        self._left_dirs: list[DirState] = []  # left, metadata due at the end of the round
        self._lock = threading.Lock()  # per-file chunk counts, totals and reports, updated from reader threads
        self._kept: bytes | None = None  # a directory path the policy kept as a non-directory: skip below it
        self._position = b""  # the directory of the last item planned (its descriptors stay open)
        # a restore in passes (``cold_extract.py``): the files an earlier pass wrote, the directories it made
        self.done: Callable[[dict], bool] | None = None
        self.made_dirs: set[bytes] | None = None
        self._processes = 0 if dry_run else usable_processes(processes)
        self._pool: RestorePool | None = None

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
        self._kept = None
        if not self.dry_run:
            self.tree = DirTree(self._open_target(), made=self.made_dirs)
            if self._processes:
                self._pool = RestorePool(
                    self.reader.repo.sealing_kit(), self._processes, self.target, self.tree.fds[b""],
                    numeric_ids=self.numeric_ids, sparse=self.sparse,
                )
        try:
            scale = REMOTE_ROUND_SCALE if self.reader.repo.is_remote else 1
            for batch in _batches(items, BATCH_ITEMS * scale, BATCH_CHUNKS * scale):
                self._restore_batch(batch)
            self._leave_dirs(None)
            self._apply_left_dirs()
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise StorageFull(f"disk full while restoring into {os.fsdecode(self.target)}") from None
            raise
        finally:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
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
        budget = dir_budget()
        requests: list[tuple[tuple[OutFile, int, int], bytes]] = []
        pending: dict[bytes, OutFile] = {}
        for item in batch:
            self._plan(item, requests, pending)
            if self.tree is not None and len(self.tree) > budget:
                self._run_round(requests, pending)  # bounds the directory descriptors held open
                requests, pending = [], {}
        self._run_round(requests, pending)

    def _run_round(self, requests: list, pending: dict[bytes, OutFile]) -> None:
        try:
            if requests:
                pool = self._pool_for(requests)
                if pool is None:
                    self.reader.scatter(requests, self._on_chunk)
                else:
                    try:
                        self.reader.scatter(requests, self._on_chunk, sealed=to_worker)
                    finally:
                        left = self._take_results(pool)
                    if left:  # something was in their way: the overwrite policy decides here
                        self.reader.scatter(left, self._on_chunk)
        finally:
            for out in pending.values():
                if out.remaining:  # only after an error that stopped the restore
                    out.abort()
        self._apply_left_dirs()
        if self.tree is not None:
            self.tree.prune(self._position)

    def _plan(self, item: dict, requests: list, pending: dict[bytes, OutFile]) -> None:
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
            if inside(rel, self._kept):
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
        except Kept:
            self.stats.nskipped += 1
            if item[it.TYPE] == it.DIR:
                self._kept = rel
        except Skip as exc:
            self._not_restored(shown, str(exc))
            if item[it.TYPE] == it.DIR:
                self._kept = rel  # its entries have nowhere to go: one warning, not one per entry
        except OSError as exc:
            if exc.errno in DISK_FULL:
                raise
            self._not_restored(shown, exc.strerror or str(exc))
            if item[it.TYPE] == it.DIR:
                self._kept = rel

    # --- regular files ----------------------------------------------------------------------------------------

    def _plan_file(
        self, item: dict, rel: bytes, shown: str, requests: list, pending: dict[bytes, OutFile]
    ) -> None:
        if self.done is not None and self.done(item):
            return
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
                    raise Kept
        self.stats.nfiles += 1
        out = OutFile(self, pfd, name, rel, item)
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

    def _on_chunk(self, target: tuple[OutFile, int, int], data: bytes | PackvaultError) -> None:
        """Runs in a reader thread, right after the chunk was verified (or failed): writes it, and finishes
        the file when it was the last one (through the descriptor it wrote with), so the planning thread
        never waits on a file.  A plain file's chunk arrives sealed and goes to the restore processes."""
        out, offset, size = target
        if out.to_worker and not isinstance(data, PackvaultError):
            self._to_process(out, data)
            return
        out.to_worker = False
        fd = None
        try:
            if isinstance(data, PackvaultError):
                out.failed = out.failed or str(data)
            elif out.failed is None:
                try:
                    fd = out.write_at(offset, data, self.sparse)
                except OSError as exc:
                    if exc.errno in DISK_FULL:
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

    def _finish_file(self, out: OutFile, fd: int | None = None) -> None:
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
            if exc.errno in DISK_FULL:
                raise
            out.abort()
            self._not_restored(shown, exc.strerror or str(exc))
        finally:
            if own_fd is not None:
                os.close(own_fd)


def chunk_ids(items: Iterable[dict]) -> Iterator[bytes]:
    """The ids of the file contents of ``items``, in order (what an extract of them will read)."""
    for item in items:
        for chunk_id, _ in item.get(it.CHUNKS) or ():
            yield chunk_id


def _batches(items: Iterator[dict], max_items: int, max_chunks: int) -> Iterator[list[dict]]:
    """Consecutive items with at most ``max_chunks`` chunks and ``max_items`` items between them (one file
    with more chunks is a batch of its own)."""
    batch: list[dict] = []
    nchunks = 0
    for item in items:
        n = len(item.get(it.CHUNKS) or ())
        if batch and (nchunks + n > max_chunks or len(batch) >= max_items):
            yield batch
            batch, nchunks = [], 0
        batch.append(item)
        nchunks += n
    if batch:
        yield batch


# what s3restore.py (and the CLI) take from here
__all__ = [
    "OVERWRITE_ALWAYS",
    "OVERWRITE_IF_CHANGED",
    "OVERWRITE_IF_NEWER",
    "OVERWRITE_MODES",
    "OVERWRITE_NEVER",
    "ExtractStats",
    "Extractor",
    "PackvaultError",
    "PathSelector",
    "Warn",
    "damage_note",
    "shown_path",
    "strip_path",
]
