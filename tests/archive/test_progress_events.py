"""The counters the engine reports while it runs (the CLI draws them): live, not filled in at the end."""

from __future__ import annotations

import random

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.create import ArchiveCreator
from packvault.archive.extract import Extractor
from packvault.archive.filereaders import READER_MAX_FILE
from packvault.archive.patterns import ExcludeMatcher
from packvault.archive.walker import FilesystemSource
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from packvault.repository.writer import MAX_CHUNKS_IN_FLIGHT
from tests.support.settings import env_settings

KiB = 1024
MiB = 1024 * KiB
PASSPHRASE = "progress-events"


@pytest.fixture
def repo(pv_env, tmp_path):
    r = Repository(str(tmp_path / "repo"), settings=env_settings())
    r.create(PASSPHRASE, pack_size=256 * KiB)
    r.close()
    r = Repository(str(tmp_path / "repo"), settings=env_settings())
    r.open(lambda: PASSPHRASE)
    yield r
    r.close()


def _source(root, files: int, size: int):
    root.mkdir()
    rnd = random.Random(5)
    for i in range(files):
        (root / f"f{i:02d}").write_bytes(rnd.randbytes(size))
    return root


def test_create_reports_new_bytes_while_it_walks(repo, tmp_path, capsys):
    src = _source(tmp_path / "src", files=6, size=2 * MiB)
    # one file of many chunks (~1 MiB each), too large for a reader process: streamed here, chunk by chunk,
    # and more of them than the writer lets be in flight
    big_size = READER_MAX_FILE + 36 * MiB
    (src / "big").write_bytes(random.Random(6).randbytes(big_size))
    events: list[tuple[str, int, int, int]] = []

    def progress(stats, path: str) -> None:
        events.append((path, stats.nfiles, stats.bytes_read, stats.deduplicated_size))

    warnings: list[tuple[str, str]] = []
    creator = ArchiveCreator(repo, "a", progress=progress, on_warning=lambda p, m: warnings.append((p, m)))
    source = FilesystemSource(
        [str(src), str(tmp_path / "missing")], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn
    )
    creator.run(source, paths=[str(src)], cmdline=[])

    walk = events  # every event is reported during the walk; the final numbers come from the stats
    assert walk and walk[-1][0].endswith("src/f05")
    assert [e[3] for e in walk] == sorted(e[3] for e in walk)  # never goes back
    # a large file reports its bytes as they are read, chunk by chunk
    big = [e for e in walk if e[0].endswith("src/big")]
    assert len({e[2] for e in big}) == len(big) > MAX_CHUNKS_IN_FLIGHT + 1
    # New bytes are counted as chunks are stored, not at the end: however slow the sealing threads, a put
    # past the writer's bound waits for the oldest chunk to join its pack, so from then on the count moves.
    # (How soon before that is up to the threads: not asserted.)
    assert all(e[3] > 0 for e in big[MAX_CHUNKS_IN_FLIGHT:])
    assert walk[-1][2] == 12 * MiB + big_size
    # the engine prints nothing: warnings go to the callback (and the stats)
    assert warnings == [(str(tmp_path / "missing"), "cannot read: No such file or directory")]
    assert capsys.readouterr().err == ""


def test_extract_counts_bytes_as_they_arrive(repo, tmp_path):
    src = _source(tmp_path / "src", files=2, size=6 * MiB)
    creator = ArchiveCreator(repo, "a")
    source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
    entry = creator.run(source, paths=[str(src)], cmdline=[])
    seen: list[tuple[int, int]] = []
    with ChunkReader(repo) as reader:
        meta = load_archive(reader, entry)
        extractor = Extractor(
            reader, str(tmp_path / "out"), progress=lambda stats, path: seen.append((stats.bytes_arrived, stats.nfiles))
        )
        extractor.run(iter_archive_items(reader, meta))
    arrived = [b for b, _ in seen]
    assert arrived[-1] == 12 * MiB
    # several distinct counts within the two files: the count moves with the data, not once per file
    assert len(set(arrived)) >= 4


def test_check_reports_bytes_of_a_known_total(repo, tmp_path):
    from packvault.maintenance.check import CheckOptions, check

    src = _source(tmp_path / "src", files=4, size=1 * MiB)
    creator = ArchiveCreator(repo, "a")
    source = FilesystemSource([str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=creator.warn)
    creator.run(source, paths=[str(src)], cmdline=[])
    counted: list[tuple[int, int]] = []

    def progress(text: str, **counts) -> None:
        if "total" in counts:
            counted.append((counts["completed"], counts["total"]))

    report = check(repo, CheckOptions(), progress)
    assert report.problems == []
    pack_bytes = sum(info.size for kind in (0, 1) for info in repo.list_packs(kind))
    assert len(counted) >= 4 and {total for _, total in counted} == {pack_bytes}
    assert [done for done, _ in counted] == sorted(done for done, _ in counted)
    assert counted[-1][0] == pack_bytes
