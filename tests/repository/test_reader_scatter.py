"""``ChunkReader.scatter``: every request reaches the sink exactly once (data or error), a failing sink stops
the reading and surfaces, and no sink call happens after ``scatter`` returned or raised."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time

import pytest

from packvault.errors import ObjectMissing, PackvaultError
from packvault.repository.objects import TYPE_DATA
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from packvault.repository.writer import RepositoryWriter
from tests.support.settings import env_settings

KiB = 1024
PASSPHRASE = "scatter"


@pytest.fixture(params=["file", "s3"])
def filled_repo(request, pv_env, tmp_path):
    """A repository (local: whole-range reads; S3: streamed runs) with 300 random chunks spread over many
    small packs; yields (repo, {id: data})."""
    if request.param == "file":
        location = f"file://{tmp_path / 'repo'}"
    else:
        location = request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))
    repo = Repository(location, settings=env_settings())
    repo.create(PASSPHRASE, pack_size=256 * KiB)
    rnd = random.Random(7)
    chunks = {}
    writer = RepositoryWriter(repo)
    try:
        for _ in range(300):
            data = rnd.randbytes(rnd.randint(1, 40 * KiB))
            chunk_id = repo.chunk_id(data)
            writer.put_chunk(chunk_id, data, TYPE_DATA)
            chunks[chunk_id] = data
        writer.flush()
    finally:
        writer.close()
    yield repo, chunks
    repo.close()


def test_every_request_reaches_the_sink_once(filled_repo):
    repo, chunks = filled_repo
    ids = list(chunks)
    random.Random(1).shuffle(ids)
    missing = b"\x01" * 32
    requests = [(n, chunk_id) for n, chunk_id in enumerate(ids)]
    requests += [(len(ids), missing), (len(ids) + 1, ids[0])]  # a chunk not in the index, and a repeat
    seen: dict[int, bytes | PackvaultError] = {}
    lock = threading.Lock()

    def sink(target: int, data) -> None:
        with lock:
            assert target not in seen
            seen[target] = data

    # a small window forces many rounds of submit-as-workers-free-up
    with ChunkReader(repo, scatter_window=64 * KiB) as reader:
        reader.scatter(requests, sink)
    assert len(seen) == len(requests)
    for target, chunk_id in requests:
        if chunk_id == missing:
            assert isinstance(seen[target], ObjectMissing)
        else:
            assert seen[target] == chunks[chunk_id]


def _record_stop(monkeypatch) -> list[threading.Event]:
    """The stop event of each ``scatter`` call, as its workers get it: a sink can tell whether it was set."""
    fetch = ChunkReader._fetch_into
    stops: list[threading.Event] = []

    def recording(self, run, sink, stop, sealed):
        stops.append(stop)
        return fetch(self, run, sink, stop, sealed)

    monkeypatch.setattr(ChunkReader, "_fetch_into", recording)
    return stops


def _after_stop_per_worker(calls: list[tuple[int, bool]]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for thread, stopped in calls:
        counts[thread] = counts.get(thread, 0) + stopped
    return counts


def test_a_failing_sink_stops_the_reading_and_nothing_runs_after(filled_repo, monkeypatch):
    repo, chunks = filled_repo
    stops = _record_stop(monkeypatch)
    calls: list[tuple[int, bool]] = []  # (worker thread, stop set when its sink call began)
    lock = threading.Lock()

    def sink(target: int, data) -> None:
        stopped = stops[-1].is_set()
        time.sleep(0.005)  # a slow disk: the other workers are mid-run when one fails
        with lock:
            calls.append((threading.get_ident(), stopped))
            if len(calls) == 20:
                raise OSError(28, "No space left on device")

    with ChunkReader(repo, scatter_window=1024 * KiB) as reader:
        assert reader.streaming == repo.is_remote
        with pytest.raises(OSError, match="No space"):
            reader.scatter(list(enumerate(chunks)), sink)
        count_at_return = len(calls)
        time.sleep(0.2)
        assert len(calls) == count_at_return  # no worker still writing after the caller was told
    # it stopped: once told, each of the other workers finishes at most the object it was writing
    assert all(after <= 1 for after in _after_stop_per_worker(calls).values()), calls


def test_a_failing_sink_stops_the_other_workers_even_when_the_caller_is_slow_to_learn_of_it(
    filled_repo, monkeypatch
):
    """On a loaded machine the caller's thread may run long after a sink failed: the failing worker itself
    stops the others (a full disk must not go on being written by three threads meanwhile)."""
    from packvault.repository import reader as reader_module

    repo, chunks = filled_repo
    stops = _record_stop(monkeypatch)
    failed = threading.Event()
    stopped_while_the_caller_slept: list[bool] = []
    waits = reader_module.wait

    def slow_to_wake(futures, *args, **kwargs):
        result = waits(futures, *args, **kwargs)
        if failed.is_set() and not stopped_while_the_caller_slept:
            # the caller's thread is held here: only the failing worker can set the stop meanwhile
            stopped_while_the_caller_slept.append(stops[-1].wait(timeout=30))
        return result

    monkeypatch.setattr(reader_module, "wait", slow_to_wake)
    calls: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def sink(target: int, data) -> None:
        stopped = stops[-1].is_set()
        time.sleep(0.002)
        with lock:
            calls.append((threading.get_ident(), stopped))
            if len(calls) == 20:
                failed.set()
                raise OSError(28, "No space left on device")

    with ChunkReader(repo, scatter_window=1024 * KiB) as reader, pytest.raises(OSError, match="No space"):
        reader.scatter(list(enumerate(chunks)), sink)
    assert stopped_while_the_caller_slept == [True]
    assert all(after <= 1 for after in _after_stop_per_worker(calls).values()), calls


def test_the_read_path_allocator_tuning_applies_on_linux():
    """glibc accepts the settings (they are ignored elsewhere); run in a child so this process is untouched."""
    code = "from packvault.allocator import tune_for_chunk_reads as t; print(t())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    expected = sys.platform.startswith("linux") and "glibc" in " ".join(__import__("platform").libc_ver())
    assert out == str(bool(expected))


def test_spread_takes_runs_in_turn_from_distant_segments():
    from packvault.repository.reader import _spread

    assert _spread(list(range(8)), 2) == [0, 4, 1, 5, 2, 6, 3, 7]
    assert _spread(list(range(10)), 4) == [0, 3, 6, 9, 1, 4, 7, 2, 5, 8]
    assert _spread([1, 2], 4) == [1, 2] and _spread(list(range(5)), 1) == list(range(5))
    for n in range(40):  # a permutation: every run is read once
        assert sorted(_spread(list(range(n)), 4)) == list(range(n))


def test_few_streamed_runs_are_cut_so_that_every_worker_reads():
    """A round whose chunks lie in fewer packs than there are workers: the runs are cut at object
    boundaries into pieces of at least the minimum, in order, covering every object once."""
    from packvault.repository.reader import _Run, _split_runs

    MiB = 1024 * 1024
    sizes = [700 * 1024] * 30  # ~20.5 MiB of objects back to back
    starts = [i * 700 * 1024 for i in range(30)]
    ids = [bytes([i]) * 32 for i in range(30)]
    run = _Run(0, "p1", 100, starts[-1] + sizes[-1], ids, sizes, list(range(30)), starts)
    pieces = _split_runs([run], 4, 4 * MiB)
    assert 4 <= len(pieces) <= 5
    assert [tag for piece in pieces for tag in piece.tags] == list(range(30))
    for piece in pieces[:-1]:
        assert piece.size >= 4 * MiB
    for piece in pieces:  # each piece's offsets address the same bytes of the pack
        for tag, start in zip(piece.tags, piece.starts, strict=True):
            assert piece.offset + start == run.offset + starts[tag]
    small = _Run(0, "p2", 0, 3 * MiB, [b"a" * 32, b"b" * 32], [1 * MiB, 2 * MiB], ["x", "y"], [0, MiB])
    assert len(_split_runs([small], 4, 4 * MiB)) == 1  # never below the minimum
