#!/usr/bin/env python3
"""Generate a seeded, reproducible backup benchmark dataset ("day 1") and its follow-up ("day 2").

Why a generator rather than a real directory: a benchmark is only comparable across runs, machines and
tools when every byte of its input is known.  The same ``--seed`` and ``--size`` always produce the
same names, contents, symlinks, hardlinks and modification times, so numbers from different days can be
put side by side.

The mix is chosen to exercise what matters to a deduplicating backup tool:

* thousands of small files (1-64 KiB): per-file overhead, metadata streams, the files cache;
* medium files (1-16 MiB) and a few large ones (100-300 MiB at full size): chunking and packing throughput;
* about half the bytes compressible (log- and text-like), half incompressible (random): the compression
  heuristic must neither waste CPU on random data nor miss the easy wins;
* nested directories, relative symlinks (a few dangling) and hardlinks: metadata fidelity on restore.

Day 2 is written as a *fresh tree* (never hardlinks into day 1, so a tool that rewrites files in place can
not corrupt the reference copy): about 5 % of the files are modified (large files in place in the middle,
log-like files appended, small files rewritten), about 3 % are deleted and about 2 % are new.

Speed matters (the benchmark regenerates data on new machines): random bytes come from
``random.Random.randbytes`` (seedable, ~200 MB/s) and text from slices of a word block built once, so 1 GiB
takes seconds, not minutes.  Only the standard library is used.

Usage::

    python bench/gen_dataset.py --seed 42 --size 1GiB --out bench/data/day1
    python bench/gen_dataset.py --seed 42 --day2 bench/data/day1 --out bench/data/day2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from packvault import units
from packvault.errors import UsageError

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

#: Name of the small JSON file written at the root of every generated tree.  It identifies the dataset
#: and lets the benchmark find the dataset root inside a restored tree, wherever the tool put it.
MARKER_NAME = "BENCH-DATASET.json"

#: All modification times are fixed offsets from this epoch, so that trees are reproducible bit for bit
#: *including* the metadata that files caches look at.
BASE_MTIME = 1_700_000_000
DAY2_MTIME = BASE_MTIME + 400 * 86400

#: Write in pieces of this size: bounded memory even for the 300 MiB files.
PIECE = 4 * MiB

def parse_size(text: str) -> int:
    """Bytes from ``1GiB``, ``100MiB``, ``512M``, ``1048576``: Packvault's own size grammar (binary
    multiples throughout), so a data set is sized exactly as ``--pack-size`` would read the same text."""
    try:
        return units.parse_size(text)
    except UsageError as exc:
        raise ValueError(str(exc)) from None


def fmt_size(n: float) -> str:
    """Human-readable binary size, used in progress lines and by run.py's table."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# --- content sources ---------------------------------------------------------------------------------------


class TextSource:
    """Log- and prose-like bytes that compress roughly 3-4x with zstd, produced at disk speed.

    A block of a few MiB of pseudo-random log lines is built once per dataset; file contents are then made of
    short slices (0.5-4 KiB) taken at random offsets of that block.  Slicing keeps the per-byte cost in C,
    and because every file is a fresh random sequence of slices there is no artificial cross-file
    duplication at the chunk sizes backup tools use (hundreds of KiB and more): dedup in the benchmark comes
    only from the unchanged day-1 files, as in real life.
    """

    BLOCK_SIZE = 4 * MiB

    def __init__(self, rng: random.Random) -> None:
        letters = "etaoinshrdlucmfwypvbgkjqxz"
        weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1]
        vocab = sorted(
            {"".join(rng.choices(letters, weights, k=rng.randint(2, 11))) for _ in range(6000)}
        )
        levels = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]
        services = [f"{w}-{rng.randint(1, 40)}" for w in rng.sample(vocab, 24)]
        lines: list[str] = []
        total = 0
        t = BASE_MTIME
        while total < self.BLOCK_SIZE:
            t += rng.randint(0, 3)
            words = " ".join(rng.choices(vocab, k=rng.randint(4, 22)))
            if rng.random() < 0.7:
                line = (
                    f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t))}.{rng.randint(0, 999):03d}Z "
                    f"{rng.choice(levels)} [{rng.choice(services)}] pid={rng.randint(100, 65000)} {words}\n"
                )
            else:
                line = words.capitalize() + ".\n"
            lines.append(line)
            total += len(line)
        self.block = "".join(lines).encode()

    def generate(self, rng: random.Random, size: int) -> Iterator[bytes]:
        """Yield ``size`` bytes of text in pieces of at most ``PIECE`` bytes."""
        block = self.block
        limit = len(block) - 4 * KiB
        remaining = size
        while remaining > 0:
            want = min(PIECE, remaining)
            parts: list[bytes] = []
            got = 0
            while got < want:
                n = min(rng.randint(512, 4 * KiB), want - got)
                off = rng.randrange(limit)
                parts.append(block[off : off + n])
                got += n
            remaining -= want
            yield b"".join(parts)


def random_pieces(rng: random.Random, size: int) -> Iterator[bytes]:
    """Yield ``size`` incompressible, seed-determined bytes in pieces (``os.urandom`` is not seedable)."""
    remaining = size
    while remaining > 0:
        n = min(PIECE, remaining)
        yield rng.randbytes(n)
        remaining -= n


def mixed_pieces(rng: random.Random, text: TextSource, size: int) -> Iterator[bytes]:
    """Alternate runs of text and random bytes (like archives, databases or binaries with string tables)."""
    remaining = size
    while remaining > 0:
        n = min(rng.randint(64 * KiB, 2 * MiB), remaining)
        yield from (random_pieces(rng, n) if rng.random() < 0.5 else text.generate(rng, n))
        remaining -= n


def content(kind: str, rng: random.Random, text: TextSource, size: int) -> Iterator[bytes]:
    """Dispatch on the content kind recorded in the plan."""
    if kind == "text":
        return text.generate(rng, size)
    if kind == "random":
        return random_pieces(rng, size)
    return mixed_pieces(rng, text, size)


def write_file(path: Path, pieces: Iterator[bytes], mtime: int) -> int:
    """Write ``pieces`` to a new file and pin its mtime; returns the number of bytes written."""
    n = 0
    with open(path, "wb") as f:
        for piece in pieces:
            f.write(piece)
            n += len(piece)
    os.utime(path, (mtime, mtime))
    return n


# --- day 1 -------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What day 1 will contain; built entirely from the RNG before anything is written."""

    dirs: list[str] = field(default_factory=list)
    files: list[tuple[str, str, int]] = field(default_factory=list)  # (relpath, kind, size)


def _names(rng: random.Random) -> list[str]:
    syll = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "si", "de", "pa", "xo", "bi", "zu", "fe", "go", "hy"]
    return sorted({"".join(rng.choices(syll, k=rng.randint(2, 4))) for _ in range(400)})


def make_plan(rng: random.Random, size: int) -> Plan:
    """Split the byte budget: ~15 % small files, ~40 % medium, ~45 % large.

    Large files are 100-300 MiB when the budget allows; for small datasets (``--quick``) a single large
    file takes the whole large share, so the mix stays the same at any size.
    """
    names = _names(rng)
    plan = Plan()
    small_budget = int(size * 0.15)
    medium_budget = int(size * 0.40)
    large_budget = size - small_budget - medium_budget

    specs: list[tuple[str, int]] = []  # (kind, size); extension chosen below
    got = 0
    while got < small_budget:
        n = rng.randint(1 * KiB, 64 * KiB)
        specs.append(("text" if rng.random() < 0.6 else "random", n))
        got += n
    got = 0
    while got < medium_budget:
        n = min(rng.randint(1 * MiB, 16 * MiB), max(medium_budget - got, 1 * MiB))
        specs.append((rng.choice(["text", "random", "mixed"]), n))
        got += n
    got = 0
    while got < large_budget:
        left = large_budget - got
        n = min(rng.randint(100 * MiB, 300 * MiB), left)
        if left - n < 100 * MiB and left <= 400 * MiB:
            n = left  # no undersized tail file: the last large file takes the rest
        specs.append((rng.choice(["text", "random", "mixed"]), n))
        got += n

    # A directory tree whose size grows with the file count: each new directory hangs under a random earlier
    # one, which gives a mix of shallow and deep (up to ~6 levels) paths.
    ndirs = max(8, len(specs) // 25)
    plan.dirs = [""]
    depth = {"": 0}
    while len(plan.dirs) < ndirs + 1:
        parent = rng.choice(plan.dirs)
        if depth[parent] >= 6:
            continue
        d = f"{parent}/{rng.choice(names)}" if parent else rng.choice(names)
        if d in depth:
            continue
        depth[d] = depth[parent] + 1
        plan.dirs.append(d)

    ext = {"text": [".log", ".txt", ".csv", ".md"], "random": [".bin", ".jpg", ".gz", ".dat"], "mixed": [".db", ".img"]}
    used: set[str] = set()
    for i, (kind, n) in enumerate(specs):
        d = rng.choice(plan.dirs)
        name = f"{rng.choice(names)}-{i:05d}{rng.choice(ext[kind])}"
        rel = f"{d}/{name}" if d else name
        assert rel not in used
        used.add(rel)
        plan.files.append((rel, kind, n))
    return plan


HOME_LARGE = (  # (name, kind, size): the few large files of a home directory
    ("Documents/backup/app-db.sql", "text", 48 * MiB),
    ("vm/disk.img", "sparse", 160 * MiB),
    ("var/log/syslog", "text", 12 * MiB),
    ("var/log/syslog.1", "text", 9 * MiB),
    ("var/log/app.log", "text", 6 * MiB),
)
SPARSE_DATA_FRACTION = 0.1  # of a sparse image's apparent size: written regions; the rest are holes


def make_home_plan(rng: random.Random, nfiles: int) -> Plan:
    """A tree shaped like a home directory: ``nfiles`` files in all, mostly small.

    ~60 % source files (0.1-6 KiB, text) in project trees several levels deep, ~33 % mail messages
    (1.5-12 KiB, text) in Maildir folders, ~5 % configuration and notes, a photo for every ~350 files
    (1-5 MiB, incompressible), plus ``HOME_LARGE``: a database dump, a sparse VM image and logs.  The
    per-file path (walk, stat, open, read, cut, hash) dominates such a tree, not the bytes.
    """
    names = _names(rng)
    plan = Plan()
    plan.dirs = [""]
    used_dirs: set[str] = {""}

    def directory(path: str) -> str:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in used_dirs:
                used_dirs.add(d)
                plan.dirs.append(d)
        return path

    nphotos = max(3, nfiles // 350)
    nsmall = max(0, nfiles - nphotos - len(HOME_LARGE))
    nsource, nmail = int(nsmall * 0.62), int(nsmall * 0.33)
    nconf = nsmall - nsource - nmail
    # source: ~40 files per directory, projects of nested packages
    src_dirs = []
    for p in range(max(2, nsource // 2000)):
        project = f"src/{rng.choice(names)}-{p}"
        for _ in range(max(1, nsource // 40 // max(2, nsource // 2000))):
            depth = rng.randint(1, 5)
            src_dirs.append(directory("/".join([project, *rng.choices(names, k=depth)])))
    src_ext = [".py", ".c", ".h", ".js", ".rs", ".go", ".md", ".json"]
    for i in range(nsource):
        size = min(int(rng.lognormvariate(7.4, 0.9)), 6 * KiB) + 100
        plan.files.append((f"{rng.choice(src_dirs)}/{rng.choice(names)}-{i:06d}{rng.choice(src_ext)}", "text", size))
    folders = [directory(f"Maildir/{f}/cur") for f in ("inbox", "sent", "lists", "archive", "work", "family")]
    for i in range(nmail):
        size = min(int(rng.lognormvariate(8.2, 0.6)), 12 * KiB) + 1500
        plan.files.append((f"{rng.choice(folders)}/{BASE_MTIME + i}.M{i:06d}P1.host:2,S", "text", size))
    conf_dirs = [directory(d) for d in (".config/app", ".config/editor", ".local/share/notes", "Documents/notes")]
    for i in range(nconf):
        rel = f"{rng.choice(conf_dirs)}/{rng.choice(names)}-{i:05d}.conf"
        plan.files.append((rel, "text", rng.randint(80, 4 * KiB)))
    photo_dir = directory("Pictures/2026")
    for i in range(nphotos):
        plan.files.append((f"{photo_dir}/IMG_{i:05d}.jpg", "random", rng.randint(1 * MiB, 5 * MiB)))
    for rel, kind, size in HOME_LARGE:
        directory(str(Path(rel).parent))
        plan.files.append((rel, kind, size))
    return plan


def write_sparse(path: Path, rng: random.Random, text: TextSource, size: int, mtime: int) -> int:
    """A VM-image-like file of ``size`` apparent bytes: scattered written regions, holes between them."""
    with open(path, "wb") as f:
        f.truncate(size)
        written = 0
        while written < size * SPARSE_DATA_FRACTION:
            n = rng.randint(64 * KiB, 1 * MiB)
            f.seek(rng.randrange(0, size - n))
            for piece in content("mixed", rng, text, n):
                f.write(piece)
            written += n
    os.utime(path, (mtime, mtime))
    return size


def write_marker(out: Path, info: dict) -> None:
    """Write the dataset marker file (see ``MARKER_NAME``) with a fixed mtime."""
    path = out / MARKER_NAME
    path.write_text(json.dumps(info, sort_keys=True, indent=1) + "\n")
    os.utime(path, (BASE_MTIME, BASE_MTIME))


def prepare_out(out: Path, force: bool) -> None:
    """Refuse to write into a non-empty directory unless ``--force`` (then wipe it first)."""
    if out.exists() and any(out.iterdir()):
        if not force:
            raise SystemExit(f"{out} exists and is not empty (use --force to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def pin_dir_mtimes(out: Path, mtime: int) -> None:
    """Give every directory the same mtime (bottom-up, after all writes) so trees compare equal."""
    for dirpath, _dirs, _files in os.walk(out, topdown=False):
        os.utime(dirpath, (mtime, mtime))


def gen_day1(seed: int, size: int, out: Path, verbose: bool = True, *, home_files: int | None = None) -> dict:
    """Write day 1 under ``out``; returns summary counts.  ``home_files``: a home-directory-shaped tree
    of that many files (``make_home_plan``) instead of the byte-budget mix (``size`` is then ignored)."""
    rng = random.Random(f"packvault-bench-day1-{seed}")
    text = TextSource(random.Random(f"packvault-bench-text-{seed}"))
    plan = make_home_plan(rng, home_files) if home_files else make_plan(rng, size)
    for d in plan.dirs[1:]:
        (out / d).mkdir(parents=True, exist_ok=True)

    total = 0
    t0 = time.monotonic()
    for i, (rel, kind, n) in enumerate(plan.files):
        # One RNG per file, derived from the seed and the index: a file's bytes do not depend on how many
        # random numbers earlier files consumed, which keeps day 2's regenerated pieces independent too.
        frng = random.Random(f"{seed}-f-{i}")
        mtime = BASE_MTIME + rng.randrange(365 * 86400)
        if kind == "sparse":
            total += write_sparse(out / rel, frng, text, n, mtime)
        else:
            total += write_file(out / rel, content(kind, frng, text, n), mtime)
        if verbose and i % 5000 == 0:
            print(f"  {i}/{len(plan.files)} files, {fmt_size(total)}", file=sys.stderr)

    # Hardlinks: a second name for ~1 % of the small files, in another directory.
    small = [rel for rel, _k, n in plan.files if n <= 64 * KiB]
    nlinks = 0
    for rel in rng.sample(small, max(1, len(small) // 100)) if small else []:
        d = rng.choice(plan.dirs)
        link = f"{d}/hl-{Path(rel).name}" if d else f"hl-{Path(rel).name}"
        if not (out / link).exists():
            os.link(out / rel, out / link)
            nlinks += 1

    # Symlinks: relative links to files (most) and a few dangling ones.
    nsyms = 0
    for j in range(max(3, len(plan.files) // 80)):
        d = rng.choice(plan.dirs)
        link = out / d / f"sym-{j:04d}"
        if rng.random() < 0.9:
            target = out / rng.choice(plan.files)[0]
            rel_target = os.path.relpath(target, link.parent)
        else:
            rel_target = f"../missing-{j}"
        os.symlink(rel_target, link)
        os.utime(link, (BASE_MTIME, BASE_MTIME), follow_symlinks=False)
        nsyms += 1

    info = {"day": 1, "seed": seed, "size": size, "files": len(plan.files), "hardlinks": nlinks, "symlinks": nsyms}
    if home_files:
        info.update(shape="home", size=None)
    write_marker(out, info)
    pin_dir_mtimes(out, BASE_MTIME)
    if verbose:
        print(f"day1: {len(plan.files)} files, {fmt_size(total)}, {len(plan.dirs)} dirs, {nlinks} hardlinks, "
              f"{nsyms} symlinks in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    info["bytes"] = total
    return info


# --- day 2 -------------------------------------------------------------------------------------------------


def copy_fresh(src: Path, dst: Path) -> None:
    """Copy file bytes with plain reads and writes (no reflink, no hardlink) and keep the mtime.

    ``shutil.copyfile`` may use ``copy_file_range``, which shares extents on some file systems; the brief
    for day 2 is an independent tree, so bytes are copied explicitly.
    """
    block = 64 * KiB
    zeros = bytes(block)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        while piece := fi.read(PIECE):
            view = memoryview(piece)
            for start in range(0, len(piece), block):
                part = view[start : start + block]
                if part == zeros[: len(part)]:
                    fo.seek(len(part), os.SEEK_CUR)  # keep a sparse image's holes
                else:
                    fo.write(part)
        fo.truncate()
    st = src.stat()
    os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns))


def modify_in_place(path: Path, rng: random.Random, text: TextSource, kind: str) -> None:
    """Overwrite a few regions in the middle of a file (databases, VM images): size stays the same."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for _ in range(rng.randint(1, 4)):
            n = min(rng.randint(4 * KiB, 256 * KiB), size)
            off = rng.randrange(size // 4, max(size // 4 + 1, size * 3 // 4 - n))
            f.seek(off)
            f.write(b"".join(content(kind, rng, text, n)))


def gen_day2(seed: int, day1: Path, out: Path, verbose: bool = True) -> dict:
    """Write day 2 under ``out`` from the day-1 tree ``day1``; returns summary counts."""
    marker = json.loads((day1 / MARKER_NAME).read_text())
    rng = random.Random(f"packvault-bench-day2-{seed}")
    text = TextSource(random.Random(f"packvault-bench-text-{seed}"))
    t0 = time.monotonic()

    entries: list[tuple[str, os.stat_result]] = []
    for dirpath, dirs, files in os.walk(day1):
        dirs.sort()
        for name in sorted(files):
            p = Path(dirpath) / name
            entries.append((p.relative_to(day1).as_posix(), p.lstat()))
    entries.sort()

    counts = {"copied": 0, "modified_in_place": 0, "appended": 0, "rewritten": 0, "deleted": 0, "new": 0}
    first_name: dict[tuple[int, int], str] = {}
    for dirpath, dirs, _files in os.walk(day1):
        dirs.sort()
        rel = Path(dirpath).relative_to(day1)
        (out / rel).mkdir(parents=True, exist_ok=True)

    regular = [(rel, st) for rel, st in entries if stat.S_ISREG(st.st_mode) and rel != MARKER_NAME]
    # The largest file always changes in place (the database / VM image case), whatever the dice say.
    largest = max(regular, key=lambda e: (e[1].st_size, e[0]))[0] if regular else None
    for rel, st in entries:
        src, dst = day1 / rel, out / rel
        if rel == MARKER_NAME:
            continue
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(src), dst)
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        key = (st.st_dev, st.st_ino)
        if key in first_name:
            if (out / first_name[key]).exists():
                os.link(out / first_name[key], dst)
            continue
        first_name[key] = rel
        roll = rng.random()
        if rel == largest or (st.st_size >= 64 * MiB and rng.random() < 0.5):
            roll = 0.05  # big files change more often than small ones (databases, images, mailboxes)
        if roll < 0.03 and st.st_nlink == 1:
            counts["deleted"] += 1
            continue
        copy_fresh(src, dst)
        if roll < 0.08:
            mtime = DAY2_MTIME + rng.randrange(86400)
            kind = "random" if rel.endswith((".bin", ".jpg", ".gz", ".dat")) else "text"
            if rel.endswith((".db", ".img")):
                kind = "mixed"
            if rel == largest or st.st_size >= 64 * MiB or (st.st_size >= 1 * MiB and rng.random() < 0.6):
                modify_in_place(dst, rng, text, kind)
                counts["modified_in_place"] += 1
            elif kind == "text" or rng.random() < 0.5:
                with open(dst, "ab") as f:
                    for piece in content(kind, rng, text, rng.randint(1 * KiB, max(2 * KiB, st.st_size // 10))):
                        f.write(piece)
                counts["appended"] += 1
            else:
                write_file(dst, content(kind, rng, text, st.st_size), mtime)
                counts["rewritten"] += 1
            os.utime(dst, (mtime, mtime))
        else:
            counts["copied"] += 1

    # New files (~2 % of the count), mostly small, in existing directories and one new directory.
    dirs = sorted({str(Path(rel).parent) for rel, _ in regular})
    newdir = out / "new-on-day2"
    newdir.mkdir(exist_ok=True)
    dirs.append("new-on-day2")
    for j in range(max(2, len(regular) // 50)):
        big = rng.random() < 0.05
        n = rng.randint(1 * MiB, 8 * MiB) if big else rng.randint(1 * KiB, 64 * KiB)
        kind = rng.choice(["text", "text", "random"])
        d = rng.choice(dirs)
        path = out / d / f"day2-{j:05d}.{'log' if kind == 'text' else 'bin'}"
        write_file(path, content(kind, random.Random(f"{seed}-new-{j}"), text, n), DAY2_MTIME + rng.randrange(86400))
        counts["new"] += 1

    info = {"day": 2, "seed": seed, "size": marker.get("size"), **counts}
    write_marker(out, info)
    pin_dir_mtimes(out, BASE_MTIME)
    if verbose:
        print(f"day2: {counts} in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return info


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--size", default="1GiB", help="approximate total size of day 1 (e.g. 100MiB, 1GiB)")
    ap.add_argument("--home-files", type=int, metavar="N",
                    help="a home-directory-shaped tree of N files, mostly small (instead of --size)")
    ap.add_argument("--out", required=True, type=Path, help="output directory (created; must be empty)")
    ap.add_argument("--day2", type=Path, metavar="DAY1_DIR", help="write the day-2 variant of this day-1 tree")
    ap.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)
    prepare_out(args.out, args.force)
    if args.day2:
        gen_day2(args.seed, args.day2, args.out, verbose=not args.quiet)
    else:
        gen_day1(args.seed, parse_size(args.size), args.out, verbose=not args.quiet, home_files=args.home_files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
