"""Files read, cut and sealed by reader processes (``archive/filereaders.py``): the archive must be the
one the backup's own process would have made, and every way a read can go wrong must end as it does there."""

from __future__ import annotations

import dataclasses
import os
import random

import pytest

from packvault.archive import filereaders, readerpool, readerprocess
from packvault.archive import items as it
from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.create import ArchiveCreator
from packvault.archive.patterns import ExcludeMatcher
from packvault.archive.walker import Entry, FilesystemSource
from packvault.errors import UsageError
from packvault.processes import usable_processes
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from packvault.repository.writer import RepositoryWriter
from packvault.settings import Settings
from tests.support.settings import env_settings

KiB = 1024
MiB = 1024 * KiB
PASSPHRASE = "parallel-reads"


@pytest.fixture(autouse=True)
def batches_wait_for_readers(monkeypatch):
    """Every batch goes to a reader, however long the processes take to start: these tests are about what
    the readers do (``test_batches_read_here_while_the_readers_start`` is about the other way)."""
    monkeypatch.setattr(filereaders, "READ_WHILE_STARTING", False)


def _open(path, processes: int) -> Repository:
    repo = Repository(str(path), settings=dataclasses.replace(env_settings(), read_processes=processes))
    repo.open(lambda: PASSPHRASE)
    return repo


@pytest.fixture
def repo_path(pv_env, tmp_path):
    path = tmp_path / "repo"
    r = Repository(str(path), settings=env_settings())
    r.create(PASSPHRASE, pack_size=1 * MiB)
    r.close()
    return path


def _tree(root):
    """Small files of every size up to a few chunks' worth, empty ones, a large file, links."""
    rnd = random.Random(21)
    for d in range(6):
        sub = root / f"d{d}" / "inner"
        sub.mkdir(parents=True)
        for i in range(60):
            size = rnd.choice([0, 1, 100, rnd.randrange(1, 24 * KiB)])
            data = rnd.randbytes(size) if i % 2 else (b"line of text %d\n" % i) * (size // 16)
            (sub / f"f{i:03d}.txt").write_bytes(data)
    (root / "two-chunks.bin").write_bytes(rnd.randbytes(3 * MiB))  # small enough for a reader, several chunks
    # as large as a reader takes, read whole and cut in memory by a reader: the cut points must be the
    # stream chunker's, or the archive would differ from the one made without readers
    (root / "several-chunks.bin").write_bytes(rnd.randbytes(filereaders.READER_MAX_FILE))
    # too large to hold whole: streamed through the backup's process
    (root / "streamed.bin").write_bytes(rnd.randbytes(filereaders.READER_MAX_FILE + 1))
    (root / "d0" / "same-as-f001").write_bytes((root / "d0" / "inner" / "f001.txt").read_bytes())
    os.link(root / "d1" / "inner" / "f003.txt", root / "d2" / "hardlink")
    os.symlink("d0/inner/f000.txt", root / "symlink")
    return root


def _backup(repo: Repository, name: str, source, paths, **kwargs):
    warnings: list[tuple[str, str]] = []
    creator = ArchiveCreator(repo, name, on_warning=lambda p, m: warnings.append((p, m)), **kwargs)
    if not hasattr(source, "__iter__") or isinstance(source, str | os.PathLike):
        source = FilesystemSource([str(source)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
    creator.run(source, paths=[str(p) for p in paths], cmdline=[])
    return creator.stats, warnings


def _items(repo: Repository, name: str) -> list[dict]:
    entry = next(e for e in repo.archive_entries() if e.name == name)
    with ChunkReader(repo) as reader:
        items = list(iter_archive_items(reader, load_archive(reader, entry)))
    for item in items:
        item.pop(it.ATIME, None)  # reading a file may move its atime between the two backups
    return items


def _backup_as_without_readers(repo_path, src, name: str):
    """Back ``src`` up with two readers as ``name``, then without readers: the archives must be the same
    (items, order, sizes and chunk ids).  Returns the first backup's stats and warnings."""
    repo = _open(repo_path, 2)
    stats, warnings = _backup(repo, name, src, [src], use_files_cache=False)
    repo.close()
    repo = _open(repo_path, 0)
    _backup(repo, "here", src, [src], use_files_cache=False)
    assert _items(repo, name) == _items(repo, "here")
    repo.close()
    return stats, warnings


def test_reader_processes_make_the_archive_the_backup_process_makes(repo_path, tmp_path):
    src = _tree(tmp_path / "src")
    repo = _open(repo_path, 2)
    stats, warnings = _backup(repo, "parallel", src, [src], use_files_cache=False)
    repo.close()
    assert warnings == []
    assert stats.files_read_by_readers > 300  # the small files went to the readers...
    assert stats.files_read_by_readers < stats.files_read  # ...the streamed one did not

    repo = _open(repo_path, 0)
    stats_here, _ = _backup(repo, "here", src, [src], use_files_cache=False)
    assert stats_here.files_read_by_readers == 0
    assert stats_here.files_read == stats.files_read
    assert _items(repo, "parallel") == _items(repo, "here")  # same items, order, sizes and chunk ids
    assert stats_here.chunks_new <= 2  # only its own item stream and metadata are new
    repo.close()


def test_reader_processes_restore_bit_exact_content(repo_path, tmp_path):
    src = _tree(tmp_path / "src")
    repo = _open(repo_path, 2)
    _backup(repo, "a", src, [src])
    with ChunkReader(repo) as reader:
        for item in _items(repo, "a"):
            if item[it.TYPE] != it.FILE:
                continue
            data = b"".join(reader.read_chunk(cid) for cid, _ in item.get(it.CHUNKS, []))
            with open(b"/" + item[it.PATH], "rb") as f:
                assert data == f.read(), item[it.PATH]
    repo.close()


@pytest.mark.parametrize("way", ["arena", "spilled", "pipe"])
def test_sealed_objects_cross_over_in_shared_memory_or_the_pipe_alike(repo_path, tmp_path, monkeypatch, way):
    """The readers write their sealed objects into the shared arena and only counts come back through the
    pipe (``sharedarena.py``); a batch that outgrows its region, or a pool without an arena, sends them
    through the pipe.  Every way makes the same archive, restores the same bytes and leaves no region
    reserved."""
    from packvault import sharedarena

    arenas: list[sharedarena.SharedArena] = []
    crossed: list[str] = []

    class RecordedArena(sharedarena.SharedArena):
        def __init__(self, size):
            if way == "pipe":
                raise OSError("no memfd_create here")
            super().__init__(size)
            arenas.append(self)

    copy_out = readerpool._copy_out

    def recording_copy_out(task, arena, start, reads):
        crossed.append("arena" if isinstance(task.result()[0], int) else "pipe")
        copy_out(task, arena, start, reads)

    monkeypatch.setattr(readerpool, "SharedArena", RecordedArena)
    monkeypatch.setattr(readerpool, "_copy_out", recording_copy_out)
    if way == "spilled":
        monkeypatch.setattr(readerpool, "_room_for", lambda batch: 64)  # no batch fits its region
    src = _tree(tmp_path / "src")
    repo = _open(repo_path, 2)
    stats, warnings = _backup(repo, "parallel", src, [src], use_files_cache=False)
    assert warnings == []
    assert stats.files_read_by_readers > 300
    if way == "pipe":
        assert arenas == [] and crossed == []
    else:
        assert len(arenas) == 1
        assert crossed and set(crossed) == {"arena" if way == "arena" else "pipe"}
        assert arenas[0].reserve(arenas[0].size) is None  # closed with the pool...
        assert not arenas[0]._regions  # ...with every region given back
    repo.close()

    repo = _open(repo_path, 0)
    _backup(repo, "here", src, [src], use_files_cache=False)
    assert _items(repo, "parallel") == _items(repo, "here")
    with ChunkReader(repo) as reader:
        for item in _items(repo, "parallel"):
            if item[it.TYPE] == it.FILE:
                data = b"".join(reader.read_chunk(cid) for cid, _ in item.get(it.CHUNKS, []))
                with open(b"/" + item[it.PATH], "rb") as f:
                    assert data == f.read(), item[it.PATH]
    repo.close()


class _Meddling:
    """A walk that changes files after listing them and before any reader gets to them."""

    def __init__(self, source, actions):
        self.source = source
        self.actions = actions  # path suffix -> callable(path)

    def __iter__(self):
        for entry in self.source:
            yield entry
            for suffix, action in self.actions.items():
                if entry.source_path.endswith(suffix):
                    action(entry.source_path)


def test_files_that_vanish_grow_or_change_before_their_read(repo_path, tmp_path):
    src = _tree(tmp_path / "src")
    repo = _open(repo_path, 2)

    def grow(path):
        with open(path, "ab") as f:
            f.write(b"x" * 5000)

    def rewrite(path):
        st = os.stat(path)
        with open(path, "r+b") as f:
            f.write(b"changed!")
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    creator_warnings: list[tuple[str, str]] = []
    creator = ArchiveCreator(repo, "a", on_warning=lambda p, m: creator_warnings.append((p, m)))
    walk = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
    meddling = _Meddling(
        walk, {b"d1/inner/f010.txt": os.unlink, b"d2/inner/f011.txt": grow, b"d3/inner/f013.txt": rewrite}
    )
    creator.run(meddling, paths=[str(src)], cmdline=[])
    assert creator.stats.files_read_by_readers > 300
    messages = {os.path.relpath("/" + p, src): m for p, m in creator_warnings}
    assert messages == {
        "d1/inner/f010.txt": "vanished during backup",
        "d2/inner/f011.txt": "changed while being backed up (stored as read)",
        "d3/inner/f013.txt": "changed while being backed up (stored as read)",
    }
    items = {os.path.relpath(b"/" + i[it.PATH], os.fsencode(src)): i for i in _items(repo, "a")}
    assert b"d1/inner/f010.txt" not in items
    grown = items[b"d2/inner/f011.txt"]
    assert grown[it.SIZE] == os.path.getsize(src / "d2/inner/f011.txt")  # stored as read, all of it
    assert sum(size for _, size in grown[it.CHUNKS]) == grown[it.SIZE]
    repo.close()


def test_a_pool_that_cannot_start_reads_in_the_backup_process(repo_path, tmp_path, monkeypatch):
    def no_processes(self, batch):
        raise OSError(38, "Function not implemented")  # as multiprocessing says without /dev/shm

    monkeypatch.setattr(filereaders.ReaderPool, "submit", no_processes)
    src = _tree(tmp_path / "src")
    repo = _open(repo_path, 2)
    stats, warnings = _backup(repo, "a", src, [src])
    assert warnings == []
    assert stats.files_read_by_readers == 0
    assert stats.files_read == sum(1 for i in _items(repo, "a") if i[it.TYPE] == it.FILE)
    repo.close()


def test_the_main_thread_gets_the_gil_back_sooner_while_readers_run(repo_path, tmp_path):
    """With reader processes the backup's main thread is what everything waits for: while the pool runs, a
    thread that holds the GIL gives it up after ``MAIN_THREAD_SWITCH_INTERVAL``, not Python's 5 ms; the
    process's own interval is back once the backup is over."""
    import sys

    src = _tree(tmp_path / "src")
    before = sys.getswitchinterval()
    assert before > readerpool.MAIN_THREAD_SWITCH_INTERVAL  # Python's default, 5 ms
    seen: list[float] = []

    def walk(creator):
        source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
        for entry in source:
            seen.append(sys.getswitchinterval())
            yield entry

    repo = _open(repo_path, 2)
    creator = ArchiveCreator(repo, "a", on_warning=lambda p, m: None)
    creator.run(walk(creator), paths=[str(src)], cmdline=[])
    repo.close()
    assert creator.stats.files_read_by_readers > 300
    assert seen[0] == before  # no pool yet: the first batch is not full
    assert seen[-1] == readerpool.MAIN_THREAD_SWITCH_INTERVAL
    assert sys.getswitchinterval() == before


def test_read_processes_setting_is_checked():
    assert Settings.from_environ({"PACKVAULT_READ_PROCESSES": "0"}).read_processes == 0
    assert Settings.from_environ({}).read_processes is None
    with pytest.raises(UsageError, match="PACKVAULT_READ_PROCESSES"):
        Settings.from_environ({"PACKVAULT_READ_PROCESSES": "-1"})
    assert usable_processes(3) == 3


def test_changed_files_among_many_unchanged_ones_keep_their_own_chunks(repo_path, tmp_path):
    """A day-2 backup: a few changed small files spread among hundreds of unchanged ones fill the queue
    before their batch is full, so the backup process reads some of them itself; a reader pool started
    later by a full batch must not be handed the rest of that batch (its results would start at the batch's
    first file and pair each file with another file's chunks)."""
    src = tmp_path / "src"
    rnd = random.Random(3)
    sparse, dense = src / "b-sparse", src / "c-dense"
    sparse.mkdir(parents=True)
    dense.mkdir()
    for i in range(700):
        (sparse / f"{i:04d}").write_bytes(rnd.randbytes(rnd.randrange(100, 3000)))
    for i in range(200):
        (dense / f"{i:04d}").write_bytes(rnd.randbytes(rnd.randrange(100, 3000)))
    repo = _open(repo_path, 2)
    _backup(repo, "day1", src, [src])
    changed = [sparse / f"{i:04d}" for i in range(0, 700, 20)] + sorted(dense.iterdir())
    for path in changed:
        path.write_bytes(rnd.randbytes(rnd.randrange(3001, 6000)))
    stats, warnings = _backup(repo, "day2", src, [src])
    assert warnings == []  # no file "changed while being backed up": each got its own read
    assert stats.files_read == len(changed)
    assert stats.files_read_by_readers > 0  # the pool did start
    with ChunkReader(repo) as reader:
        for item in _items(repo, "day2"):
            if item[it.TYPE] == it.FILE:
                data = b"".join(reader.read_chunk(cid) for cid, _ in item[it.CHUNKS])
                with open(b"/" + item[it.PATH], "rb") as f:
                    assert data == f.read(), item[it.PATH]
    repo.close()


def test_files_queued_for_readers_are_bounded_in_bytes(repo_path, tmp_path):
    """A run of files of several MiB (photos) must not pile up their reads in memory: the queue counts as
    full once the files handed to readers and not yet in the item stream exceed ``QUEUED_BYTES``."""
    src = tmp_path / "photos"
    src.mkdir()
    size = filereaders.READER_MAX_FILE
    count = filereaders.QUEUED_BYTES // size + 2
    rnd = random.Random(5)
    entries = []
    for number in range(count):
        path = src / f"IMG_{number}.jpg"
        path.write_bytes(rnd.randbytes(size))
        entries.append(
            Entry(item={it.PATH: bytes(path)[1:], it.TYPE: it.FILE, it.SIZE: size}, source_path=bytes(path),
                  cache_key=None, opener=lambda p=path: open(p, "rb"), local_file=True)  # noqa: SIM115
        )
    repo = _open(repo_path, 2)
    queue = filereaders.ReadQueue(repo.sealing_kit(), 2)
    try:
        fullness = []
        for entry in entries:
            assert queue.takes(entry)
            assert queue.add_for_reader(entry)
            fullness.append(queue.full)
        assert fullness[0] is False and fullness[-1] is True  # bytes, not the entry count, made it full
        assert len(entries) < 4 * filereaders.BATCH_FILES
        done = list(queue.ready(wait=True))  # waits until the queue is no longer full, in order
        assert not queue.full and done
        assert [q.entry for q in done] == entries[: len(done)]
        rest = list(queue.ready(wait=False, last=True))
        reads = [q.read for q in done + rest]
        assert [sum(size for _, size in read.chunks) for read in reads] == [size] * count
    finally:
        queue.close()
        repo.close()


def test_a_file_too_large_to_hold_whole_is_not_for_readers():
    big = filereaders.READER_MAX_FILE + 1
    entry = Entry(item={it.PATH: b"x", it.TYPE: it.FILE, it.SIZE: big}, source_path=b"/x", local_file=True)
    assert not filereaders.ReadQueue.takes(entry)
    entry.item[it.SIZE] = filereaders.READER_MAX_FILE
    assert filereaders.ReadQueue.takes(entry)
    entry.local_file = False  # not a file another process can open (an S3 object, a stream)
    assert not filereaders.ReadQueue.takes(entry)


@pytest.mark.parametrize("warm_after", [None, 150], ids=["never-up", "up-after-a-while"])
def test_batches_read_here_while_the_readers_start(repo_path, tmp_path, monkeypatch, warm_after):
    """Until a reader process is up the backup's process reads the batches whose turn comes, and hands the
    later ones over once one is: the archive is the one made without readers, file for file, whichever
    process read which batch."""
    monkeypatch.setattr(filereaders, "READ_WHILE_STARTING", True)
    asked = {"times": 0}

    def warm(self) -> bool:
        asked["times"] += 1
        return warm_after is not None and asked["times"] > warm_after

    monkeypatch.setattr(filereaders.ReaderPool, "warm", property(warm))
    monkeypatch.setattr(filereaders, "BATCH_FILES", 4)  # many batches, the queue fills: heads are read here
    src = _tree(tmp_path / "src")
    repo = _open(repo_path, 1)
    stats, warnings = _backup(repo, "mixed", src, [src], use_files_cache=False)
    repo.close()
    assert warnings == []
    if warm_after is None:
        assert stats.files_read_by_readers == 0
    else:
        assert 50 < stats.files_read_by_readers < stats.files_read - 50  # some batches here, later ones there

    repo = _open(repo_path, 0)
    _backup(repo, "here", src, [src], use_files_cache=False)
    assert _items(repo, "mixed") == _items(repo, "here")
    repo.close()


def test_a_part_batch_goes_to_a_reader_before_the_entries_behind_it_fill_the_queue(repo_path, tmp_path):
    """Day 2: a changed file among many unchanged ones starts a batch that fills slowly while unchanged
    entries queue behind it.  The batch must go to a reader process while the backup goes on walking: held
    back until the queue is full, the backup's process would then wait for the whole of its read."""
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(8)

    def file_entry(name: str) -> Entry:
        path = src / name
        path.write_bytes(rnd.randbytes(rnd.randrange(100, 3000)))
        item = {it.PATH: bytes(path)[1:], it.TYPE: it.FILE, it.SIZE: path.stat().st_size}
        return Entry(item=item, source_path=bytes(path), cache_key=None,
                     opener=lambda p=path: open(p, "rb"), local_file=True)  # noqa: SIM115

    repo = _open(repo_path, 1)
    queue = filereaders.ReadQueue(repo.sealing_kit(), 1)
    try:
        for number in range(filereaders.BATCH_FILES):  # a full batch: the reader pool starts
            assert queue.add_for_reader(file_entry(f"first-{number}"))
        changed = file_entry("changed")
        assert queue.add_for_reader(changed)
        part_batch = queue._queue[-1].batch
        added = 0
        while not queue.full and part_batch.future is None:
            queue.add(Entry(item={it.PATH: b"unchanged/%d" % added, it.TYPE: it.DIR}, source_path=b""))
            added += 1
        assert part_batch.future is not None, f"the part batch was held back while {added} entries queued"
        assert not queue.full
        done = list(queue.ready(wait=False, last=True))
        read = next(q.read for q in done if q.entry is changed)
        assert sum(size for _, size in read.chunks) == changed.item[it.SIZE]
    finally:
        queue.close()
        repo.close()


def test_reader_processes_keep_their_freed_file_buffers(repo_path):
    """Each reader process tunes glibc's allocator as restore does (``allocator.tune_for_chunk_reads``): it
    allocates a buffer per file, and with the defaults every one over 128 KiB is fresh zeroed pages."""
    from tests.support import importcount

    repo = _open(repo_path, 1)
    try:
        tuned = importcount.asked_in_a_worker(
            readerprocess.start_reader, (repo.sealing_kit(),), importcount.reader_allocator_tuned
        )
    finally:
        repo.close()
    assert tuned is importcount.glibc_here()
    assert readerprocess.allocator_tuned is False  # the backup's own process is left as it was


def test_a_large_file_is_read_once_the_readers_have_the_files_behind_it(repo_path, tmp_path, monkeypatch):
    """A file too large for the readers is read by the backup's process; read as soon as it is listed, it kept
    the walk from handing the small files behind it to the readers, which sat idle meanwhile."""
    from packvault.archive.create import ArchiveCreator

    src = tmp_path / "src"
    src.mkdir()
    (src / "a-large.bin").write_bytes(os.urandom(filereaders.READER_MAX_FILE + 1))  # first in walk order
    for i in range(300):
        (src / f"b-small-{i:03d}").write_bytes(b"small %d\n" % i)
    submitted: list[int] = []
    submit = filereaders.ReaderPool.submit

    def counting_submit(self, batch):
        submitted.append(len(batch))
        return submit(self, batch)

    read_after: dict[bytes, int] = {}
    file_chunks = ArchiveCreator._file_chunks

    def noting_file_chunks(self, entry, *args, **kwargs):
        read_after[os.path.basename(entry.source_path)] = len(submitted)
        return file_chunks(self, entry, *args, **kwargs)

    monkeypatch.setattr(filereaders.ReaderPool, "submit", counting_submit)
    monkeypatch.setattr(ArchiveCreator, "_file_chunks", noting_file_chunks)
    stats, warnings = _backup_as_without_readers(repo_path, src, "large-first")  # archive order unchanged
    assert warnings == []
    assert stats.files_read_by_readers == 300
    assert read_after[b"a-large.bin"] >= 1, read_after  # batches of the files behind it went first


def test_a_large_file_behind_unfinished_batches_is_read_while_the_readers_work(repo_path, tmp_path, monkeypatch):
    """At the end of the walk the queue holds the readers' last batches and, behind them, large files (logs,
    a disk image): the backup's process reads those while the readers are still on the batches, instead of
    waiting for them first; each file's item still goes into the archive in its place."""
    import threading
    from concurrent.futures import Future

    from packvault.archive.create import ArchiveCreator

    src = tmp_path / "src"
    src.mkdir()
    for i in range(300):
        (src / f"a-small-{i:03d}").write_bytes(b"small %d\n" % i)
    (src / "z-large.bin").write_bytes(os.urandom(filereaders.READER_MAX_FILE + 1))  # last in walk order
    large_read = threading.Event()
    events: list[str] = []
    submit = filereaders.ReaderPool.submit

    def held_submit(self, batch):
        """The reader's result is handed over only once the large file was read (or after 60 s)."""
        held: Future = Future()

        def hand_over(done: Future) -> None:
            large_read.wait(60)
            held.set_result(done.result())

        future = submit(self, batch)
        future.add_done_callback(lambda done: threading.Thread(target=hand_over, args=(done,)).start())
        return held

    take = filereaders._Batch.take

    def noting_take(self):
        if self.taken == 0:
            events.append("batch")
        return take(self)

    file_chunks = ArchiveCreator._file_chunks

    def noting_file_chunks(self, entry, *args, **kwargs):
        chunks = file_chunks(self, entry, *args, **kwargs)
        if entry.source_path.endswith(b"z-large.bin"):
            events.append("large")
            large_read.set()
        return chunks

    monkeypatch.setattr(filereaders.ReaderPool, "submit", held_submit)
    monkeypatch.setattr(filereaders._Batch, "take", noting_take)
    monkeypatch.setattr(ArchiveCreator, "_file_chunks", noting_file_chunks)
    stats, warnings = _backup_as_without_readers(repo_path, src, "ahead")  # archive order unchanged
    assert warnings == []
    assert stats.files_read_by_readers == 300
    assert events[0] == "large", events  # read before the first batch's results were taken


SPARSE_LAYOUT = [(0, MiB), (20 * MiB, MiB), (21 * MiB + 64 * KiB, 512 * KiB), (40 * MiB, 300_000), (63 * MiB, MiB)]


def _sparse(path, size: int = 64 * MiB) -> bytes:
    rnd = random.Random(9)
    content = bytearray(size)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in SPARSE_LAYOUT:
            data = rnd.randbytes(length // 2) * 2  # half of each region repeats: it compresses
            f.seek(offset)
            f.write(data)
            content[offset : offset + len(data)] = data
    st = os.stat(path)
    if st.st_blocks * 512 > size // 2:
        pytest.skip("this file system does not keep holes")
    return bytes(content)


def _recording_jobs(monkeypatch) -> list[tuple]:
    jobs: list[tuple] = []
    submit = filereaders.ReaderPool.submit

    def recording_submit(self, batch):
        jobs.extend(batch)
        return submit(self, batch)

    monkeypatch.setattr(filereaders.ReaderPool, "submit", recording_submit)
    return jobs


def test_the_data_regions_of_a_sparse_file_are_read_by_the_readers(repo_path, tmp_path, monkeypatch):
    """A disk image's data regions are cut one by one anyway: the readers read them side by side while the
    walk goes on, and the archive is the one the backup's process makes reading the file itself."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"a-small-{i:03d}").write_bytes(b"small %d\n" % i)
    content = _sparse(src / "disk.img")
    jobs = _recording_jobs(monkeypatch)
    stats, warnings = _backup_as_without_readers(repo_path, src, "readers")  # same chunks, in the same items
    assert warnings == []
    regions = [job for job in jobs if len(job) == 3]
    assert [job[2] // MiB for job in regions] == [0, 20, 40, 63]  # (path, size, offset): one job per region
    assert all(job[0].endswith(b"disk.img") for job in regions)
    repo = _open(repo_path, 0)
    with ChunkReader(repo) as reader:
        item = next(i for i in _items(repo, "readers") if i[it.PATH].endswith(b"disk.img"))
        assert b"".join(reader.read_chunk(cid) for cid, _ in item[it.CHUNKS]) == content
    repo.close()


def test_a_sparse_file_that_shrinks_after_the_walk_is_read_again_by_the_backup(repo_path, tmp_path, monkeypatch):
    """A region that is no longer all there when a reader gets to it: the backup's process reads the file
    itself, stores what it finds and warns that it changed, as for any file that changes during a backup."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"a-small-{i:03d}").write_bytes(b"small %d\n" % i)
    image = src / "disk.img"
    _sparse(image)
    sparse_regions = filereaders.ReadQueue._sparse_regions

    def then_shrink(self, entry):
        regions = sparse_regions(self, entry)
        with open(image, "r+b") as f:
            f.truncate(40 * MiB + 100)  # in the middle of the region at 40 MiB
        return regions

    monkeypatch.setattr(filereaders.ReadQueue, "_sparse_regions", then_shrink)
    repo = _open(repo_path, 2)
    stats, warnings = _backup(repo, "shrunk", src, [src], use_files_cache=False)
    assert [path.endswith("disk.img") and "changed" in message for path, message in warnings] == [True]
    item = next(i for i in _items(repo, "shrunk") if i[it.PATH].endswith(b"disk.img"))
    with ChunkReader(repo) as reader:
        assert b"".join(reader.read_chunk(cid) for cid, _ in item[it.CHUNKS]) == image.read_bytes()
    assert item[it.SIZE] == 40 * MiB + 100
    repo.close()


def test_a_sparse_file_with_more_data_than_the_queue_holds_streams_through_the_backup(repo_path, tmp_path, monkeypatch):
    """The regions' sealed objects wait in memory until the file's turn: a disk image with more data than
    ``QUEUED_BYTES`` is read by the backup's process as before, never held whole."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"a-small-{i:03d}").write_bytes(b"small %d\n" % i)
    _sparse(src / "disk.img")  # 3.9 MiB of data
    monkeypatch.setattr(filereaders, "QUEUED_BYTES", 2 * MiB)
    jobs = _recording_jobs(monkeypatch)
    stats, warnings = _backup_as_without_readers(repo_path, src, "streamed")
    assert warnings == [] and stats.files_read_by_readers == 200
    assert [job for job in jobs if len(job) == 3] == []


def test_the_readers_exit_once_the_last_batch_is_taken_while_the_backup_goes_on(repo_path, tmp_path, monkeypatch):
    """After the walk's last entry is out of the queue the reader processes are let go: they exit while the
    backup writes the end of its item stream and commits, not after it, and closing the pool later still
    works."""
    import time

    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"small-{i:03d}").write_bytes(b"small %d\n" % i)
    workers: list = []
    let_go = readerpool.ReaderPool.let_go

    def noting_let_go(self):
        workers.extend(self._pool._processes.values())
        let_go(self)

    commit_archive = RepositoryWriter.commit_archive
    exited_by_commit: list[bool] = []

    def noting_commit(self, entry):
        deadline = time.monotonic() + 60
        while any(process.is_alive() for process in workers) and time.monotonic() < deadline:
            time.sleep(0.01)
        exited_by_commit.append(bool(workers) and not any(process.is_alive() for process in workers))
        commit_archive(self, entry)

    monkeypatch.setattr(readerpool.ReaderPool, "let_go", noting_let_go)
    monkeypatch.setattr(RepositoryWriter, "commit_archive", noting_commit)
    repo = _open(repo_path, 2)
    stats, warnings = _backup(repo, "a", src, [src], use_files_cache=False)
    repo.close()
    assert warnings == [] and stats.files_read_by_readers == 200
    assert exited_by_commit == [True]  # gone before the commit, with the pool not closed yet
