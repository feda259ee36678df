"""Peak memory of ``packvault mount`` over an archive of many items (default 100,000).

The archive is synthetic but written by the project's own writer (``ArchiveCreator`` over hand-made
entries): DIRS directories of FILES_PER_DIR small files, each with its own one-chunk content, so every item
carries a chunk list as a real one does.  Three runs, each a fresh process measured with ``wait4``:

- ``list REPO``: the baseline (imports, key, index);
- ``mount`` and ``ls`` of the mount's root: the mount without any tree (no item stream read);
- ``mount`` and ``ls -lR`` of the whole archive (builds the tree and stats every item), then every 100th
  file read: the tree's cost.

The difference between the last two, divided by the number of items, is what the mount holds per item.

    .venv/bin/python bench/mount_rss.py [--items 100000] [--workdir bench/work/mount]

Needs /dev/fuse and libfuse 3 (the fuse3 package).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES_PER_DIR = 1000


def build(location: str, items: int) -> None:
    """Runs in its own process (``--build``), so the measuring process stays small (see measure_child.py)."""
    import io

    sys.path.insert(0, str(ROOT / "src"))
    from packvault.archive.create import ArchiveCreator
    from packvault.archive.walker import Entry
    from packvault.repository.repository import Repository

    passphrase = os.environ["PACKVAULT_PASSPHRASE"]
    Repository(location).create(passphrase)
    repo = Repository(location)
    repo.open(lambda: passphrase, lock="shared")
    mtime = 1_700_000_000_000_000_000

    def entries():
        dirs = -(-items // FILES_PER_DIR)
        for d in range(dirs):
            yield Entry({"p": f"data/dir{d:04d}".encode(), "t": "d", "m": 0o40755, "u": 0, "g": 0, "mt": mtime}, b"")
            for f in range(min(FILES_PER_DIR, items - d * FILES_PER_DIR)):
                content = f"file {d}/{f}\n".encode()
                fields = {"p": f"data/dir{d:04d}/file{f:04d}".encode(), "t": "f", "m": 0o100644, "u": 0, "g": 0,
                          "mt": mtime, "s": len(content)}
                yield Entry(fields, b"", opener=lambda content=content: io.BytesIO(content))

    with repo:
        ArchiveCreator(repo, "many", use_files_cache=False).run(entries(), paths=["bench"], cmdline=["bench"])


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "packvault.cli.main", *args]


def measure_list(location: str, env: dict[str, str]) -> int:
    proc = subprocess.Popen(_command("list", location), env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("packvault list failed")
    return usage.ru_maxrss * 1024


def measure_mount(location: str, mountpoint: Path, env: dict[str, str], *, walk: bool) -> tuple[int, float]:
    """Peak RSS of a foreground mount that served ``ls`` (or ``ls -lR`` and reads), and the time of those."""
    proc = subprocess.Popen(_command("mount", location, str(mountpoint), "--foreground"), env=env)
    deadline = time.monotonic() + 120
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the mount did not come up")
        time.sleep(0.05)
    started = time.monotonic()
    try:
        if walk:
            subprocess.run(["ls", "-lR", str(mountpoint)], check=True, stdout=subprocess.DEVNULL)
            base = mountpoint / "many" / "data"
            for n, directory in enumerate(sorted(os.listdir(base))):
                names = sorted(os.listdir(base / directory))
                for name in names[n % 100 :: 100]:
                    (base / directory / name).read_bytes()
        else:
            subprocess.run(["ls", "-l", str(mountpoint)], check=True, stdout=subprocess.DEVNULL)
        elapsed = time.monotonic() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the mount ended with {os.waitstatus_to_exitcode(status)}")
    return usage.ru_maxrss * 1024, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="number of files (plus one directory per 1000)")
    parser.add_argument("--workdir", default=str(ROOT / "bench" / "work" / "mount"))
    parser.add_argument("--build", metavar="LOCATION", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.build:
        build(opts.build, opts.items)
        return
    work = Path(opts.workdir)
    shutil.rmtree(work, ignore_errors=True)
    (work / "mnt").mkdir(parents=True)
    env = {**os.environ, "PACKVAULT_PASSPHRASE": "bench", "PACKVAULT_CACHE_DIR": str(work / "cache"),
           "PACKVAULT_CONFIG_DIR": str(work / "config"), "PYTHONPATH": str(ROOT / "src")}
    location = str(work / "repo")
    t0 = time.monotonic()
    subprocess.run([sys.executable, __file__, "--build", location, "--items", str(opts.items)], env=env, check=True)
    items = opts.items + -(-opts.items // FILES_PER_DIR)
    print(f"wrote an archive of {items} items in {time.monotonic() - t0:.1f} s")
    baseline = measure_list(location, env)
    root_rss, _ = measure_mount(location, work / "mnt", env, walk=False)
    walk_rss, walk_time = measure_mount(location, work / "mnt", env, walk=True)
    print(f"{'run':<40} {'peak RSS MiB':>13}")
    print(f"{'list REPO':<40} {baseline / 2**20:>13.1f}")
    print(f"{'mount, ls of the root (no tree)':<40} {root_rss / 2**20:>13.1f}")
    print(f"{'mount, ls -lR + every 100th file read':<40} {walk_rss / 2**20:>13.1f}   ({walk_time:.1f} s)")
    print(f"the tree: {(walk_rss - root_rss) / items:.0f} bytes per item above the mount without a tree")


if __name__ == "__main__":
    main()
