"""Memory and time of ``compact`` over an index of about a million chunks.

Packs of a million real chunks would be hundreds of GiB, so the chunks are synthetic: index fragments
describe N chunks in fake packs, and one real archive references half of them.  That exercises every phase
whose cost grows with the number of chunks (loading the index, clearing and setting the USED flags while
streaming the archive, the per-pack live-bytes pass, writing the new index fragments) and none whose cost
grows with bytes.  Peak RSS of ``compact`` is compared with a ``list`` of the same repository (same imports,
same KDF), and the difference is divided by the number of chunks.

    .venv/bin/python bench/compact_million.py [--chunks 1000000] [--workdir bench/work/compact]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from packvault.repository.index import KIND_DATA, encode_fragment  # noqa: E402
from packvault.repository.objects import TYPE_ARCHIVE  # noqa: E402
from packvault.repository.repository import ArchiveEntry, Repository  # noqa: E402
from packvault.repository.writer import RepositoryWriter  # noqa: E402
from packvault.settings import Settings  # noqa: E402

CHUNKS_PER_PACK = 4000
CHUNK_SIZE = 8192


def build(location: str, chunks: int, env: dict[str, str]) -> None:
    import msgpack

    from packvault.archive.items import ItemStreamWriter

    settings = Settings.from_environ(env)
    Repository(location, settings=settings).create(env["PACKVAULT_PASSPHRASE"])
    repo = Repository(location, settings=settings)
    repo.open(lambda: env["PACKVAULT_PASSPHRASE"], lock=None)
    writer = RepositoryWriter(repo)
    stream = ItemStreamWriter(repo.chunker(), repo.chunk_id, writer.put_chunk)
    batch, item_chunks = [], []
    for n in range(chunks):
        chunk_id = os.urandom(32)
        pack = f"{n // CHUNKS_PER_PACK:064x}"
        batch.append((chunk_id, pack, KIND_DATA, (n % CHUNKS_PER_PACK) * CHUNK_SIZE, CHUNK_SIZE))
        if n % 2 == 0:  # the archive references every other chunk
            item_chunks.append([chunk_id, CHUNK_SIZE])
            if len(item_chunks) == 100:
                stream.add({"p": f"f{n}".encode(), "t": "f", "m": 0o100644, "s": 100 * CHUNK_SIZE, "c": item_chunks})
                item_chunks = []
        if len(batch) == 65536:
            repo.write_fragment(encode_fragment(batch))
            batch = []
    if batch:
        repo.write_fragment(encode_fragment(batch))
    ids = stream.finish()
    meta = msgpack.packb({"version": 1, "name": "synthetic", "time": "2026-01-01T00:00:00+00:00",
                          "end": "2026-01-01T00:00:00+00:00", "host": "bench", "user": "bench", "items": ids,
                          "nitems": stream.count, "stats": {}})
    archive_id = repo.chunk_id(meta)
    writer.put_chunk(archive_id, meta, TYPE_ARCHIVE)
    writer.flush()
    writer.close()
    repo.put_archive_entry(ArchiveEntry(archive_id, "synthetic", "2026-01-01T00:00:00+00:00",
                                        "2026-01-01T00:00:00+00:00", "bench", "bench"))
    repo.close()


def measure(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "packvault.cli.main", *args], env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"packvault {' '.join(args)} failed")
    return time.monotonic() - started, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=1_000_000)
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "work" / "compact"))
    opts = parser.parse_args()
    work = Path(opts.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "PACKVAULT_PASSPHRASE": "bench", "PACKVAULT_CACHE_DIR": str(work / "cache"),
           "PACKVAULT_CONFIG_DIR": str(work / "config"), "PYTHONPATH": str(ROOT / "src")}
    os.environ.update(env)
    location = str(work / "repo")
    t0 = time.monotonic()
    build(location, opts.chunks, env)
    print(f"built a repository with {opts.chunks} indexed chunks in {time.monotonic() - t0:.1f} s")
    shutil.rmtree(work / "cache", ignore_errors=True)
    list_time, list_rss = measure(["list", location], env)  # baseline: imports, KDF, no index
    index_time, index_rss = measure(["info", location], env)  # loads (builds) the index
    compact_time, compact_rss = measure(["compact", location, "--min-age", "0"], env)
    per_chunk = (compact_rss - list_rss) / opts.chunks
    print(f"{'command':<10} {'wall s':>8} {'peak RSS MiB':>13}")
    for name, wall, rss in (("list", list_time, list_rss), ("info", index_time, index_rss),
                            ("compact", compact_time, compact_rss)):
        print(f"{name:<10} {wall:>8.2f} {rss / 2**20:>13.1f}")
    print(f"compact memory above baseline: {per_chunk:.1f} bytes per chunk (target < 100)")


if __name__ == "__main__":
    main()
