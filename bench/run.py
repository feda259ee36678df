#!/usr/bin/env python3
"""Side-by-side benchmark: Packvault vs restic (and borg, if installed) on the same data, in the same run.

Why one harness runs every tool: numbers taken on different days, machines or datasets are not
comparable.  Here every tool gets the same seeded dataset (``bench/gen_dataset.py``), the same fresh copy
of it at the same path, the same S3 server behind the same request-counting proxy
(``bench/countingproxy.py``), and the same measurement code.  Runs interleave the tools, so slow drift of
the machine (other work on a shared box) hits all of them alike; medians over ``--runs`` damp the rest.

Steps per tool, target and run (each in a fresh repository and a fresh cache directory):

====================  ====================================================================================
init                  create the repository
backup-1              first backup of day 1 (everything is new)
backup-1-again        unchanged re-run of day 1 (files cache / parent snapshot; should be cheap)
backup-2              day 2: the source tree is updated in place to day 2 (rsync-like: only changed files
                      are rewritten, so unchanged files keep their inode and mtime) and backed up
restore               restore the latest archive into a fresh directory, on a file system made for it
                      (``--restore-fs``, ``bench/restorefs.py``); verified bit-exact (untimed)
check                 full check, reading all data (restic ``check --read-data``, Packvault
                      ``check --verify-data``, borg ``check --verify-data``)
prune+compact         keep the last archive, reclaim space (restic ``forget --keep-last 1 --prune``,
                      Packvault ``prune --keep-last 1 --compact --min-age 0 --max-unused 5``, the
                      same space policy as restic's default ``--max-unused 5%``; borg ``prune`` +
                      ``compact``)
====================  ====================================================================================

Measured per step: wall time, CPU time (user+sys) and peak RSS of the tool's process (``os.wait4``, so the
harness, the proxy and the S3 server are not included), repository size after the step (local: sum of
file sizes; S3: sum of object sizes), and S3 requests by type as seen by the proxy.  Packvault's own
request counters (from its ``--json`` output) are recorded next to the proxy's.

Usage::

    python bench/run.py --quick                       # ~100 MiB, 1 run: a smoke test of the whole chain
    python bench/run.py                               # 1 GiB, 3 runs, local + S3 (moto), all tools
    python bench/run.py --targets s3 --tools packvault,restic --s3-endpoint http://127.0.0.1:4566
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import stat
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import gen_dataset  # noqa: E402 - the bench directory is not a package
import restorefs  # noqa: E402
from countingproxy import MAIN_KINDS, CountingProxy, delta  # noqa: E402

from packvault.units import parse_size  # noqa: E402

STEPS = ("init", "backup-1", "backup-1-again", "backup-2", "restore", "check", "prune+compact")
REQ_KINDS = ("PUT", "GET", "HEAD", "LIST", "DELETE", "POST", "COPY")
PASSWORD = "packvault-bench-not-secret"
GiB = gen_dataset.GiB


# --- running and measuring one command -----------------------------------------------------------------------


@dataclass
class CmdResult:
    """One child process: exit code, resource use and captured output."""

    argv: list[str]
    rc: int
    wall: float
    user: float
    sys: float
    maxrss: int  # bytes
    stdout: str
    stderr: str


def run_measured(argv: list[str], env: dict[str, str], cwd: Path, logdir: Path, tag: str) -> CmdResult:
    """Run ``argv`` through ``measure_child.py``, which measures it alone (see there: why not ``wait4`` here).

    Output goes to files rather than pipes, so that nothing in this process has to read while the child
    runs; the files double as a log of every command for post-mortems.
    """
    logdir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logdir / f"{tag}.out", logdir / f"{tag}.err"
    usage_path = logdir / f"{tag}.usage.json"
    usage_path.unlink(missing_ok=True)
    launcher = [sys.executable, "-I", "-S", str(BENCH_DIR / "measure_child.py"), str(usage_path), "--"]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        rc = subprocess.call([*launcher, *argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=cwd)
    try:
        usage = json.loads(usage_path.read_text())
    except (OSError, ValueError):
        usage = {"rc": rc if rc else 127, "wall": 0.0, "user": 0.0, "sys": 0.0, "maxrss": 0}
    return CmdResult(
        argv=argv,
        rc=usage["rc"],
        wall=usage["wall"],
        user=usage["user"],
        sys=usage["sys"],
        maxrss=usage["maxrss"],
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )


def last_json_object(text: str) -> dict | None:
    """The last JSON object in a command's stdout (whole text, or the last line that parses)."""
    text = text.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
        return obj if isinstance(obj, dict) else None
    except json.JSONDecodeError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def add_requests(total: dict, more: dict | None) -> dict:
    """Sum two request-counter dicts (numbers only)."""
    for k, v in (more or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            total[k] = total.get(k, 0) + v
    return total


# --- targets: where a repository lives ---------------------------------------------------------------------------


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (the tiny race with another process is acceptable here)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_moto_server(explicit: str | None) -> str:
    """The ``moto_server`` next to this Python (the project venv), or on PATH."""
    if explicit:
        return explicit
    candidate = Path(sys.executable).parent / "moto_server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("moto_server")
    if not found:
        raise SystemExit("moto_server not found: install moto[server] or pass --s3-endpoint")
    return found


# moto keeps a body up to this size in RAM and writes a larger one into a temporary file in one call
# (its default is 5 MiB, below every pack size); see ``MotoServer``.
MOTO_KEY_BUFFER_ENV = "MOTO_S3_DEFAULT_KEY_BUFFER_SIZE"
MOTO_KEY_BUFFER_IN_RAM = 1 << 40


class MotoServer:
    """A moto S3 server on a free port, started fresh per session so every tool starts from an empty,
    equally warm server (moto does not return memory on reset).

    It keeps every object in RAM unless ``disk_spool``: moto's own spooling of large bodies into
    temporary files made the server, not the tools, the variable in S3 runs.  On a VM whose balloon
    reports free memory to the host, a single multi-megabyte buffered write gets 2 MiB page-cache folios
    whose every page faults into the host, so moto burnt about two CPU-seconds per 320 MB of packs on the two
    cores the tools run on, at random from run to run (bench/README.md, seventeenth round).  A real
    bucket costs the client no CPU for storing bytes."""

    def __init__(self, exe: str, logdir: Path, *, disk_spool: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        logdir.mkdir(parents=True, exist_ok=True)
        self._log = open(logdir / "moto.log", "wb")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=moto_environment(disk_spool),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/data.json", timeout=2):
                    break
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto server did not start (see {logdir / 'moto.log'})") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


def moto_environment(disk_spool: bool) -> dict[str, str]:
    """The environment of the benchmark's moto server: objects in RAM unless ``disk_spool``."""
    env = dict(os.environ)
    if disk_spool:
        env.pop(MOTO_KEY_BUFFER_ENV, None)
    else:
        env[MOTO_KEY_BUFFER_ENV] = str(MOTO_KEY_BUFFER_IN_RAM)
    return env


def s3_client(endpoint: str):  # noqa: ANN201 - boto3 client type is dynamic
    """A boto3 client talking straight to the server (never through the proxy: our own calls must not
    be counted)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
        aws_secret_access_key="bench-secret", config=Config(s3={"addressing_style": "path"}),
    )


def s3_usage(client, bucket: str, prefix: str = "") -> tuple[int, int]:  # noqa: ANN001
    """(bytes, objects) under a bucket prefix."""
    size = count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            size += obj["Size"]
            count += 1
    return size, count


def s3_empty_bucket(client, bucket: str) -> None:  # noqa: ANN001
    """Delete every object and the bucket (used with an external server, where buckets persist)."""
    with contextlib.suppress(Exception):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
        client.delete_bucket(Bucket=bucket)


def tree_usage(path: Path) -> tuple[int, int]:
    """(bytes, files) of a local directory: apparent sizes, each inode once, so it compares with S3 sums."""
    size = count = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            size += st.st_size
            count += 1
    return size, count


@dataclass
class Session:
    """Everything one tool needs for one target in one run."""

    tool: str
    target: str  # "local" | "s3"
    run: int
    dir: Path  # session work dir
    src: Path  # the source tree the tool backs up (a fresh copy of day 1, later synced to day 2)
    env: dict[str, str]
    repo_dir: Path | None = None  # local target
    s3_endpoint: str | None = None  # proxy URL the tool talks to
    s3_bucket: str | None = None
    s3_direct: object = None  # boto3 client straight to the server, for sizes
    proxy: CountingProxy | None = None
    pin: list[str] = field(default_factory=list)  # ["taskset", "-c", CPUS] when the run is pinned
    restore_fs: str = "workdir"  # "ext4": each restore writes into a fresh file system (``restorefs.py``)
    restore_fs_bytes: int = 0  # that file system's size

    @property
    def logdir(self) -> Path:
        return self.dir / "logs"

    def repo_size(self) -> tuple[int, int]:
        if self.repo_dir is not None:
            return tree_usage(self.repo_dir) if self.repo_dir.exists() else (0, 0)
        return s3_usage(self.s3_direct, self.s3_bucket)


# --- tools ----------------------------------------------------------------------------------------------------


@dataclass
class StepPlan:
    """The commands of one step and where the tool keeps its request counters in the output."""

    cmds: list[list[str]]
    cwd: Path | None = None
    own_requests: bool = False  # parse "requests" from each command's JSON stdout


class Tool:
    """Adapter interface: how one backup tool spells each benchmark step."""

    name = "?"
    supports_s3 = True
    version: str | None = None

    def available(self) -> str | None:
        """Version string, or None when the tool cannot run here."""
        raise NotImplementedError

    def setup_env(self, s: Session) -> None:
        """Add the tool's environment (passphrase, cache dirs) to ``s.env``."""

    def plan(self, step: str, s: Session, restore_dir: Path) -> StepPlan:
        raise NotImplementedError


def _version(argv: list[str]) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if out.returncode == 0 and text else None


class Restic(Tool):
    """restic with repository format 2 and ``--compression auto`` (zstd, its default): comparable to
    Packvault's default ``auto,zstd,3``."""

    name = "restic"

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def available(self) -> str | None:
        return _version([self.exe, "version"])

    def repo(self, s: Session) -> str:
        return str(s.repo_dir) if s.repo_dir is not None else f"s3:{s.s3_endpoint}/{s.s3_bucket}"

    def setup_env(self, s: Session) -> None:
        s.env["RESTIC_PASSWORD"] = PASSWORD
        s.env["RESTIC_CACHE_DIR"] = str(s.dir / "cache")

    def plan(self, step: str, s: Session, restore_dir: Path) -> StepPlan:
        base = [self.exe, "-r", self.repo(s), "--cache-dir", str(s.dir / "cache")]
        if step == "init":
            return StepPlan([[*base, "init", "--repository-version", "2"]])
        if step.startswith("backup"):
            return StepPlan([[*base, "backup", "-q", "--json", "--compression", "auto", str(s.src)]])
        if step == "restore":
            return StepPlan([[*base, "restore", "latest", "--target", str(restore_dir)]])
        if step == "check":
            return StepPlan([[*base, "check", "--read-data"]])
        if step == "prune+compact":
            return StepPlan([[*base, "forget", "--keep-last", "1", "--prune"]])
        raise ValueError(step)


class Packvault(Tool):
    """Packvault through its CLI contract (``--json`` on every command, request counters included)."""

    name = "packvault"

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.counter = 0

    def available(self) -> str | None:
        return _version([self.exe, "--version"])

    def repo(self, s: Session) -> str:
        if s.repo_dir is not None:
            return str(s.repo_dir)
        return f"s3://{s.s3_bucket}/repo?endpoint={s.s3_endpoint}&path_style=1"

    def setup_env(self, s: Session) -> None:
        s.env["PACKVAULT_PASSPHRASE"] = PASSWORD
        s.env["PACKVAULT_CACHE_DIR"] = str(s.dir / "cache")
        s.env["PACKVAULT_CONFIG_DIR"] = str(s.dir / "config")

    def plan(self, step: str, s: Session, restore_dir: Path) -> StepPlan:
        r = self.repo(s)
        pv = self.exe
        # Archive names share the prefix "bench-" so that prune's default grouping puts them in one group.
        if step == "init":
            return StepPlan([[pv, "init", r, "--encryption", "repokey", "--json"]], own_requests=True)
        if step.startswith("backup"):
            n = {"backup-1": 1, "backup-1-again": 2, "backup-2": 3}[step]
            return StepPlan([[pv, "create", f"{r}::bench-{n}", str(s.src), "--json"]], own_requests=True)
        if step == "restore":
            return StepPlan([[pv, "extract", f"{r}::bench-3", "--target", str(restore_dir), "--json"]],
                            own_requests=True)
        if step == "check":
            return StepPlan([[pv, "check", r, "--verify-data", "--json"]], own_requests=True)
        if step == "prune+compact":
            # --min-age 0: in a benchmark every pack is minutes old; the safety margin would keep them all.
            # One command, like restic's forget --prune: one opening, one exclusive lock; --max-unused 5 is
            # restic's default space policy (dead bytes left in partly used packs).
            command = [pv, "prune", r, "--keep-last", "1", "--compact", "--min-age", "0", "--max-unused", "5", "--json"]
            return StepPlan([command], own_requests=True)
        raise ValueError(step)


class Borg(Tool):
    """BorgBackup 1.x, local repositories only (it has no S3 backend), ``--compression auto,zstd,3``."""

    name = "borg"
    supports_s3 = False

    def __init__(self, exe: str) -> None:
        self.exe = exe

    def available(self) -> str | None:
        return _version([self.exe, "--version"])

    def setup_env(self, s: Session) -> None:
        s.env["BORG_PASSPHRASE"] = PASSWORD
        s.env["BORG_BASE_DIR"] = str(s.dir / "borgbase")
        s.env["BORG_RELOCATED_REPO_ACCESS_IS_OK"] = "yes"
        s.env["BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK"] = "yes"

    def plan(self, step: str, s: Session, restore_dir: Path) -> StepPlan:
        r, b = str(s.repo_dir), self.exe
        if step == "init":
            return StepPlan([[b, "init", "--encryption", "repokey-blake2", r]])
        if step.startswith("backup"):
            n = {"backup-1": 1, "backup-1-again": 2, "backup-2": 3}[step]
            return StepPlan([[b, "create", "--json", "--compression", "auto,zstd,3", f"{r}::bench-{n}", "."]],
                            cwd=s.src)
        if step == "restore":
            restore_dir.mkdir(parents=True, exist_ok=True)
            return StepPlan([[b, "extract", f"{r}::bench-3"]], cwd=restore_dir)
        if step == "check":
            return StepPlan([[b, "check", "--verify-data", r]])
        if step == "prune+compact":
            return StepPlan([[b, "prune", "--keep-last", "1", r], [b, "compact", r]])
        raise ValueError(step)


# --- source trees and restore verification -----------------------------------------------------------------------


MIN_FREE_TO_SET_ASIDE = 16 << 30  # below this much free disk space, finished trees are deleted at once


def set_aside(tree: Path, trash: Path) -> None:
    """Move a finished tree into ``trash`` (in the work directory), which is deleted at the end of the run.

    Why not delete it now: deleting ~5,000 files makes the next few minutes of file creation slower for
    whichever tool runs next.  On ext4 without a journal (as on this VM) the inode allocator skips inodes
    freed in the last 60-300 s and reads the inode table to find that out; a restore right after the
    previous session's cleanup spent up to 3 s more in the kernel (``recently_deleted`` in perf).
    """
    if shutil.disk_usage(tree).free < MIN_FREE_TO_SET_ASIDE:  # running out of disk would fail the next step
        shutil.rmtree(tree)
        return
    trash.mkdir(exist_ok=True)
    tree.rename(trash / f"{time.monotonic_ns()}-{tree.name}")


def copy_tree(src: Path, dst: Path) -> None:
    """Fresh, independent copy with mtimes, symlinks and hardlinks (``cp -a``; not timed)."""
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True)


def sync_tree(ref: Path, dst: Path) -> dict[str, int]:
    """Make ``dst`` equal to ``ref`` the way a user's day of work would: in place, touching only changes.

    A file counts as changed when size or mtime differ (as rsync decides); changed files are rewritten
    in place (same inode, so hardlinks follow), missing ones created, extra ones removed.  Unchanged files
    keep inode, mtime and ctime, which is what files caches rely on: copying day 2 afresh would make every
    file look new and turn the day-2 backup into a full re-read.
    """
    counts = {"changed": 0, "created": 0, "removed": 0}
    ref_entries: dict[str, os.stat_result] = {}
    for dirpath, dirs, files in os.walk(ref):
        for name in dirs + files:
            p = Path(dirpath) / name
            ref_entries[p.relative_to(ref).as_posix()] = p.lstat()
    dst_entries: dict[str, os.stat_result] = {}
    for dirpath, dirs, files in os.walk(dst):
        for name in dirs + files:
            p = Path(dirpath) / name
            dst_entries[p.relative_to(dst).as_posix()] = p.lstat()

    for rel in sorted(set(dst_entries) - set(ref_entries), reverse=True):
        p = dst / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        counts["removed"] += 1

    ref_inodes: dict[tuple[int, int], str] = {}
    for rel in sorted(ref_entries):
        st = ref_entries[rel]
        src_p, dst_p = ref / rel, dst / rel
        have = dst_entries.get(rel)
        if stat.S_ISDIR(st.st_mode):
            if have is None:
                dst_p.mkdir()
                counts["created"] += 1
            continue
        if stat.S_ISLNK(st.st_mode):
            if have is None or not stat.S_ISLNK(have.st_mode) or os.readlink(dst_p) != os.readlink(src_p):
                if have is not None:
                    dst_p.unlink()
                os.symlink(os.readlink(src_p), dst_p)
                os.utime(dst_p, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
                counts["created" if have is None else "changed"] += 1
            continue
        key = (st.st_dev, st.st_ino)
        if key in ref_inodes:  # a second name of a file handled already: link, unless it already is one
            first = dst / ref_inodes[key]
            if have is None or not os.path.samefile(first, dst_p):
                if have is not None:
                    dst_p.unlink()
                os.link(first, dst_p)
                counts["created"] += 1
            continue
        ref_inodes[key] = rel
        if have is not None and have.st_size == st.st_size and have.st_mtime_ns == st.st_mtime_ns:
            continue
        with open(src_p, "rb") as fi, open(dst_p, "r+b" if have is not None else "wb") as fo:
            while piece := fi.read(gen_dataset.PIECE):
                fo.write(piece)
            fo.truncate()
        os.utime(dst_p, ns=(st.st_atime_ns, st.st_mtime_ns))
        counts["changed" if have is not None else "created"] += 1
    return counts


def find_dataset_root(top: Path) -> Path | None:
    """Where a tool put the restored tree: the directory holding the dataset marker (restic restores the
    full absolute path under the target, Packvault and borg relative paths)."""
    if (top / gen_dataset.MARKER_NAME).exists():
        return top
    for dirpath, dirs, files in os.walk(top):
        dirs.sort()
        if gen_dataset.MARKER_NAME in files:
            return Path(dirpath)
    return None


def _same_content(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def compare_trees(expected: Path, restored: Path) -> dict:
    """Bit-exact comparison of contents and structure; metadata differences are counted separately.

    ``ok`` depends only on what a restore must get right without question: the same set of names, the same
    types, identical file bytes and symlink targets.  File mtimes, modes and hardlink sharing are reported
    as ``meta_mismatches`` (informational: tools differ in what they restore by default).
    """
    def entries(root: Path) -> dict[str, os.stat_result]:
        out: dict[str, os.stat_result] = {}
        for dirpath, dirs, files in os.walk(root):
            for name in dirs + files:
                p = Path(dirpath) / name
                out[p.relative_to(root).as_posix()] = p.lstat()
        return out

    exp, got = entries(expected), entries(restored)
    missing = sorted(set(exp) - set(got))
    extra = sorted(set(got) - set(exp))
    content_diff: list[str] = []
    meta: list[str] = []
    exp_groups: dict[tuple[int, int], list[str]] = {}
    compared = 0
    for rel in sorted(set(exp) & set(got)):
        e, g = exp[rel], got[rel]
        if stat.S_IFMT(e.st_mode) != stat.S_IFMT(g.st_mode):
            content_diff.append(f"{rel}: type")
            continue
        if stat.S_ISLNK(e.st_mode):
            if os.readlink(expected / rel) != os.readlink(restored / rel):
                content_diff.append(f"{rel}: symlink target")
            continue
        if stat.S_ISREG(e.st_mode):
            compared += e.st_size
            if e.st_size != g.st_size or not _same_content(expected / rel, restored / rel):
                content_diff.append(f"{rel}: content")
                continue
            if e.st_nlink > 1:
                exp_groups.setdefault((e.st_dev, e.st_ino), []).append(rel)
            if int(e.st_mtime) != int(g.st_mtime):
                meta.append(f"{rel}: mtime")
            if stat.S_IMODE(e.st_mode) != stat.S_IMODE(g.st_mode):
                meta.append(f"{rel}: mode")
    for names in exp_groups.values():
        inodes = {(got[n].st_dev, got[n].st_ino) for n in names}
        if len(inodes) != 1:
            meta.append(f"{names[0]}: hardlink not preserved")
    problems = [f"missing {m}" for m in missing] + [f"extra {x}" for x in extra] + content_diff
    return {
        "ok": not problems,
        "bytes_compared": compared,
        "problems": problems[:20],
        "n_problems": len(problems),
        "meta_mismatches": len(meta),
        "meta_examples": meta[:5],
    }


# --- one session -------------------------------------------------------------------------------------------------


@dataclass
class StepResult:
    """Measurements of one step of one session."""

    step: str
    tool: str
    target: str
    run: int
    status: str  # "ok" | "warning" | "failed" | "skipped"
    error: str = ""
    wall: float = 0.0
    cpu: float = 0.0
    user: float = 0.0
    sys: float = 0.0
    maxrss: int = 0
    repo_size: int = 0
    repo_objects: int = 0
    proxy: dict = field(default_factory=dict)  # S3 requests seen at the proxy (S3 target only)
    own: dict = field(default_factory=dict)  # the tool's own counters (Packvault)
    extra: dict = field(default_factory=dict)  # tool output worth keeping (backup stats, verification)


def _warn_rc(tool: str, rc: int) -> bool:
    """Exit codes that mean "finished, with warnings" rather than failure."""
    return (tool in ("packvault", "borg") and rc == 1) or (tool == "restic" and rc == 3)


def run_session(tool: Tool, s: Session, day1: Path, day2: Path, log: Callable[[str], None]) -> list[StepResult]:
    """All steps for one tool, target and run.  A failing command is recorded, never raised."""
    results: list[StepResult] = []
    copy_tree(day1, s.src)
    tool.setup_env(s)
    for step in STEPS:
        failed_init = bool(results) and results[0].status == "failed"
        r = StepResult(step=step, tool=tool.name, target=s.target, run=s.run, status="ok")
        results.append(r)
        if failed_init:
            r.status, r.error = "skipped", "init failed"
            continue
        if step == "backup-2":
            r.extra["sync"] = sync_tree(day2, s.src)
        restore_dir = s.dir / "restore"
        with _restore_target(s, step, restore_dir):
            _measure_step(tool, s, step, r, restore_dir)
        log(f"  {s.target:5} {tool.name:9} run {s.run} {step:15} {r.status:7} wall {r.wall:7.2f}s "
            f"cpu {r.cpu:7.2f}s rss {gen_dataset.fmt_size(r.maxrss):>10} repo {gen_dataset.fmt_size(r.repo_size):>10}"
            + (f"  {r.error}" if r.error else ""))
    return results


@contextlib.contextmanager
def _restore_target(s: Session, step: str, restore_dir: Path) -> Iterator[None]:
    """For the restore step: an empty ``restore_dir`` (on a fresh file system of its own with
    ``--restore-fs ext4``), set aside or removed once the step is measured and verified."""
    if step != "restore":
        yield
        return
    if restore_dir.exists():
        set_aside(restore_dir, s.dir.parent / ".trash")
    if s.restore_fs != "ext4":
        try:
            yield
        finally:
            if restore_dir.exists():
                set_aside(restore_dir, s.dir.parent / ".trash")
        return
    fresh_fs = restorefs.FreshExt4(s.dir / "restore-fs.img", s.restore_fs_bytes)
    fresh_fs.mount(restore_dir)
    try:
        yield
    finally:
        fresh_fs.unmount()
        restore_dir.rmdir()


def _measure_step(tool: Tool, s: Session, step: str, r: StepResult, restore_dir: Path) -> None:
    """Run the step's commands into ``r``; a restore is verified against the source (untimed)."""
    plan = tool.plan(step, s, restore_dir)
    before = s.proxy.snapshot() if s.proxy else None
    for i, argv in enumerate(plan.cmds):
        # write back what earlier steps (the source copy, the day-2 sync, a removed restore tree, another
        # tool's session) left dirty, so that writeback is not billed to this command's wall time
        os.sync()
        res = run_measured([*s.pin, *argv], s.env, plan.cwd or s.dir, s.logdir, f"{step}-{i}")
        r.wall += res.wall
        r.user += res.user
        r.sys += res.sys
        r.maxrss = max(r.maxrss, res.maxrss)
        out = last_json_object(res.stdout)
        if plan.own_requests and out:
            # The contract puts "requests" at the top level; accept it under "stats" too (check does that).
            reqs = out.get("requests") or (out.get("stats") or {}).get("requests")
            if isinstance(reqs, dict):
                add_requests(r.own, reqs)
        if out and step.startswith("backup"):
            r.extra.setdefault("output", []).append(
                {k: out[k] for k in ("stats", "archive", "data_added", "files_new", "files_changed",
                                     "files_unmodified", "total_bytes_processed") if k in out}
            )
        if res.rc != 0:
            crashed = "Traceback (most recent call last)" in res.stderr  # Python's exit code 1 is no warning
            if _warn_rc(tool.name, res.rc) and not crashed and r.status == "ok":
                r.status, r.error = "warning", f"rc={res.rc}: {_tail(res.stderr)}"
            elif crashed or not _warn_rc(tool.name, res.rc):
                r.status, r.error = "failed", f"rc={res.rc}: {_tail(res.stderr)}"
    r.cpu = r.user + r.sys
    if s.proxy and before is not None:
        r.proxy = delta(s.proxy.snapshot(), before)
    try:
        r.repo_size, r.repo_objects = s.repo_size()
    except Exception as exc:  # noqa: BLE001 - a size we cannot read must not end the run
        r.extra["repo_size_error"] = repr(exc)
    if step == "restore" and r.status != "failed":
        root = find_dataset_root(restore_dir) if restore_dir.exists() else None
        if root is None:
            r.status, r.error = "failed", "restored tree not found (no dataset marker)"
        else:
            v = compare_trees(s.src, root)
            r.extra["verify"] = v
            if not v["ok"]:
                r.status = "failed"
                r.error = f"restore differs: {v['n_problems']} problems, e.g. {v['problems'][:3]}"


RESTORE_FS_SHOWN = {"ext4": "a fresh ext4 each", "workdir": "the work directory"}


def _tail(text: str, n: int = 300) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:n]


# --- aggregation and output -------------------------------------------------------------------------------------------

NUMERIC = ("wall", "cpu", "user", "sys", "maxrss", "repo_size", "repo_objects")


def summarize(results: list[StepResult]) -> list[dict]:
    """Median of every metric over the runs, per (target, step, tool), plus Packvault/restic ratios.

    A (target, step, tool) with any failed run is reported as failed with its first error: a median over
    the successful runs alone would hide the failure.
    """
    groups: dict[tuple[str, str, str], list[StepResult]] = {}
    for r in results:
        groups.setdefault((r.target, r.step, r.tool), []).append(r)
    rows: list[dict] = []
    for (target, step, tool), rs in groups.items():
        good = [r for r in rs if r.status in ("ok", "warning")]
        bad = [r for r in rs if r.status not in ("ok", "warning")]
        row: dict = {"target": target, "step": step, "tool": tool, "runs": len(rs), "ok_runs": len(good),
                     "status": "ok" if not bad else bad[0].status,
                     "error": bad[0].error if bad else next((r.error for r in good if r.error), "")}
        src = good or rs
        for k in NUMERIC:
            row[k] = statistics.median(getattr(r, k) for r in src)
        for label, attr in (("proxy", "proxy"), ("own", "own")):
            keys = sorted({k for r in src for k, v in getattr(r, attr).items() if not isinstance(v, dict)})
            row[label] = {k: statistics.median(getattr(r, attr).get(k, 0) for r in src) for k in keys}
        if row["proxy"] and row["own"]:
            row["own_minus_proxy"] = {k: row["own"][k] - row["proxy"].get(k, 0) for k in REQ_KINDS
                                      if k in row["own"] and row["own"][k] != row["proxy"].get(k, 0)}
        rows.append(row)
    order = {s: i for i, s in enumerate(STEPS)}
    tool_order = {"packvault": 0, "restic": 1, "borg": 2}
    rows.sort(key=lambda r: (r["target"] != "local", order.get(r["step"], 99), tool_order.get(r["tool"], 9)))
    by_key = {(r["target"], r["step"], r["tool"]): r for r in rows}
    for r in rows:
        base = by_key.get((r["target"], r["step"], "restic"))
        if r["tool"] == "restic" or base is None:
            continue
        ratios = {}
        for k in ("wall", "cpu", "maxrss", "repo_size"):
            ratios[k] = (r[k] / base[k]) if base[k] else None
        pv_req, rs_req = requests_for_table(r), requests_for_table(base)
        pt, rt = sum(pv_req.get(k, 0) for k in REQ_KINDS), sum(rs_req.get(k, 0) for k in REQ_KINDS)
        ratios["requests"] = (pt / rt) if rt and pv_req and rs_req else None
        r["ratio_vs_restic"] = ratios
    return rows


def requests_for_table(row: dict) -> dict:
    """S3: the proxy's counts (same for every tool).  Local: the tool's own counters, if it has any."""
    return row["proxy"] if row.get("proxy") else row.get("own") or {}


def derive(rows: list[dict], dataset_bytes: int) -> dict:
    """Figures derived from the medians, e.g. PUT requests per GiB of new data in the first backup."""
    out: dict = {}
    for r in rows:
        if r["step"] != "backup-1":
            continue
        req = requests_for_table(r)
        if "PUT" in req and dataset_bytes:
            out.setdefault("put_per_gib_first_backup", {}).setdefault(r["target"], {})[r["tool"]] = round(
                req["PUT"] / (dataset_bytes / GiB), 2)
        if r["wall"]:
            out.setdefault("first_backup_mib_per_s", {}).setdefault(r["target"], {})[r["tool"]] = round(
                dataset_bytes / (1 << 20) / r["wall"], 1)
        if dataset_bytes:
            out.setdefault("repo_size_over_source_after_first_backup", {}).setdefault(r["target"], {})[
                r["tool"]] = round(r["repo_size"] / dataset_bytes, 3)
    return out


def _fmt_n(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}"


def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def format_table(rows: list[dict]) -> str:
    """Plain-text table, one block per target.  Ratios (tool / restic) appear on the non-restic rows."""
    headers = ["step", "tool", "wall s", "cpu s", "peak RSS", "repo size", *[k if k != "DELETE" else "DEL"
               for k in REQ_KINDS], "req src", "wall×", "cpu×", "rss×", "size×", "req×", "status"]
    out: list[str] = []
    for target in sorted({r["target"] for r in rows}, key=lambda t: t != "local"):
        table = [headers]
        for r in (x for x in rows if x["target"] == target):
            req = requests_for_table(r)
            src = "proxy" if r.get("proxy") else ("own" if r.get("own") else "-")
            ratios = r.get("ratio_vs_restic") or {}
            status = r["status"] if r["ok_runs"] == r["runs"] else f"{r['status']} ({r['ok_runs']}/{r['runs']} ok)"
            if r["error"]:
                status += f": {r['error'][:80]}"
            table.append([
                r["step"], r["tool"], f"{r['wall']:.2f}", f"{r['cpu']:.2f}", gen_dataset.fmt_size(r["maxrss"]),
                gen_dataset.fmt_size(r["repo_size"]), *[_fmt_n(req.get(k)) if req else "-" for k in REQ_KINDS],
                src, *[_fmt_ratio(ratios.get(k)) if ratios else "" for k in ("wall", "cpu", "maxrss",
                                                                              "repo_size", "requests")],
                status,
            ])
        widths = [max(len(row[i]) for row in table) for i in range(len(headers) - 1)]
        out.append(f"== target: {target} ==")
        for i, row in enumerate(table):
            cells = [c.ljust(widths[j]) if j < 2 else c.rjust(widths[j]) for j, c in enumerate(row[:-1])]
            out.append("  ".join(cells) + "  " + row[-1])
            if i == 0:
                out.append("-" * (sum(widths) + 2 * len(widths) + 6))
        out.append("")
    return "\n".join(out)


def format_discrepancies(rows: list[dict]) -> str:
    """Where a tool's own request counters disagree with the proxy (a counting bug on one side)."""
    lines = []
    for r in rows:
        diff = r.get("own_minus_proxy")
        if diff:
            parts = ", ".join(f"{k} {v:+g}" for k, v in diff.items())
            lines.append(f"own counters minus proxy [{r['target']}] {r['step']} {r['tool']}: {parts}")
    return "\n".join(lines)


def format_derived(derived: dict) -> str:
    lines = []
    for name, per_target in derived.items():
        for target, per_tool in per_target.items():
            vals = ", ".join(f"{tool} {v}" for tool, v in per_tool.items())
            lines.append(f"{name} [{target}]: {vals}")
    return "\n".join(lines)


# --- main --------------------------------------------------------------------------------------------------------


def ensure_dataset(
    data_dir: Path, seed: int, size: int, log: Callable[[str], None], home_files: int | None = None
) -> tuple[Path, Path, int]:
    """Generate (or reuse) day 1 and day 2 for this seed and size (or home-directory shape of ``home_files``
    files); returns their paths and day-1 bytes."""
    base = data_dir / (f"seed{seed}-home{home_files}" if home_files else f"seed{seed}-{size}")
    day1, day2 = base / "day1", base / "day2"
    marker = day1 / gen_dataset.MARKER_NAME
    if not (marker.exists() and (day2 / gen_dataset.MARKER_NAME).exists()):
        log(f"generating dataset {f'home {home_files} files' if home_files else gen_dataset.fmt_size(size)} "
            f"seed {seed} in {base}")
        for d in (day1, day2):
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
        gen_dataset.gen_day1(seed, size, day1, verbose=False, home_files=home_files)
        gen_dataset.gen_day2(seed, day1, day2, verbose=False)
    nbytes, _ = tree_usage(day1)
    return day1, day2, nbytes


@contextlib.contextmanager
def s3_server(args: argparse.Namespace, logdir: Path) -> Iterator[tuple[str, bool]]:
    """Yield (server URL, owned) for one session: a fresh moto server, or the given external endpoint."""
    if args.s3_endpoint:
        yield args.s3_endpoint.rstrip("/"), False
        return
    server = MotoServer(find_moto_server(args.moto_server), logdir, disk_spool=args.moto_disk_spool)
    try:
        yield server.url, True
    finally:
        server.stop()


def compile_packvault(exe: str, log: Callable[[str], None]) -> None:
    """Give the measured Packvault its bytecode files, as a wheel installed by pip has them.

    An editable install (this repository's ``.venv``) compiles its modules on first import and caches
    them, unless ``PYTHONDONTWRITEBYTECODE`` is set (it is on some CI runners and sandboxes): then every
    command, and every reader process it starts, compiles ~100 modules again, ~0.1 s per process that no
    installed copy pays.  Python still reads bytecode files that exist, so compiling once here is enough."""
    python = Path(exe).with_name("python")
    if not python.exists():
        return
    code = "import compileall, os, packvault; compileall.compile_dir(os.path.dirname(packvault.__file__), quiet=1)"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if result.returncode != 0:
        log(f"could not compile Packvault's modules: {result.stderr.strip()[-200:]}")


def build_tools(args: argparse.Namespace, log: Callable[[str], None]) -> list[Tool]:
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    tools: list[Tool] = []
    for name in wanted:
        if name == "packvault":
            exe = args.packvault_bin or str(REPO_ROOT / ".venv" / "bin" / "packvault")
            if not Path(exe).exists():
                exe = shutil.which("packvault") or exe
            tool: Tool = Packvault(exe)
            compile_packvault(exe, log)
        elif name == "restic":
            tool = Restic(args.restic_bin or shutil.which("restic") or "restic")
        elif name == "borg":
            tool = Borg(args.borg_bin or shutil.which("borg") or "borg")
        else:
            raise SystemExit(f"unknown tool {name!r} (packvault, restic, borg)")
        version = tool.available()
        if version is None:
            log(f"skipping {name}: not runnable")
            continue
        tool.version = version
        tools.append(tool)
    return tools


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Packvault vs restic (vs borg) benchmark on the same data.",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="repetitions; the table shows medians")
    ap.add_argument("--size", default="1GiB", help="day-1 dataset size")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--quick", action="store_true", help="~100 MiB dataset, 1 run (overrides --size/--runs)")
    ap.add_argument("--home-files", type=int, metavar="N",
                    help="home-directory-shaped dataset of N files, mostly small (instead of --size)")
    ap.add_argument("--latency-ms", type=float, default=0.0,
                    help="S3 target: the counting proxy delays every request this long (a distant region)")
    ap.add_argument("--restore-fs", choices=restorefs.MODES, default="auto",
                    help="where restores write: a fresh journaled ext4 per restore (needs root and a loop device; "
                    "auto falls back to the work directory) or the work directory (bench/restorefs.py)")
    ap.add_argument("--taskset", metavar="CPUS", help="run every tool pinned to these CPUs (taskset -c CPUS)")
    ap.add_argument("--targets", default="local,s3", help="comma list of local, s3")
    ap.add_argument("--tools", default="packvault,restic,borg", help="comma list; missing tools are skipped")
    ap.add_argument("--s3-endpoint", metavar="URL", help="use this S3 server (e.g. LocalStack) instead of moto")
    ap.add_argument("--no-proxy", action="store_true",
                    help="talk to S3 directly (measures the proxy's overhead; only tools' own request counts)")
    ap.add_argument("--moto-server", metavar="EXE", help="moto_server executable (default: next to python)")
    ap.add_argument(
        "--moto-disk-spool", action="store_true",
        help="let moto write bodies over 5 MiB into temporary files, its default (the benchmark keeps them in RAM)",
    )
    ap.add_argument("--packvault-bin", metavar="EXE")
    ap.add_argument("--restic-bin", metavar="EXE")
    ap.add_argument("--borg-bin", metavar="EXE")
    ap.add_argument("--data-dir", type=Path, default=BENCH_DIR / "data", help="datasets (reused between runs)")
    ap.add_argument("--work-dir", type=Path, default=BENCH_DIR / "work", help="repositories, copies, logs")
    ap.add_argument("--json-out", type=Path, default=BENCH_DIR / "results" / "latest.json")
    ap.add_argument("--keep", action="store_true", help="keep each session's work dir (repos, logs)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.runs = "100MiB", 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    for t in targets:
        if t not in ("local", "s3"):
            raise SystemExit(f"unknown target {t!r} (local, s3)")
    tools = build_tools(args, log)
    if not tools:
        raise SystemExit("no tool available")
    size = parse_size(args.size, what="--size")
    day1, day2, dataset_bytes = ensure_dataset(args.data_dir, args.seed, size, log, args.home_files)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = args.work_dir / stamp
    work.mkdir(parents=True)
    restore_fs = restorefs.choose(args.restore_fs, work, log)
    results: list[StepResult] = []
    started = time.time()
    for run in range(1, args.runs + 1):
        for target in targets:
            for tool in tools:
                if target == "s3" and not tool.supports_s3:
                    continue
                sdir = work / f"run{run}-{target}-{tool.name}"
                sdir.mkdir(parents=True)
                env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RESTIC_", "BORG_",
                                                                               "PACKVAULT_"))}
                s = Session(tool=tool.name, target=target, run=run, dir=sdir, src=sdir / "src", env=env,
                            pin=["taskset", "-c", args.taskset] if args.taskset else [],
                            restore_fs=restore_fs, restore_fs_bytes=2 * dataset_bytes + 512 * 1024 * 1024)
                log(f"run {run}/{args.runs}, {target}, {tool.name}")
                if target == "local":
                    s.repo_dir = sdir / "repo"
                    results.extend(run_session(tool, s, day1, day2, log))
                else:
                    env.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                               AWS_DEFAULT_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
                    with s3_server(args, s.logdir) as (url, owned):
                        s.s3_bucket = f"bench-{stamp.replace('-', '')}-r{run}-{tool.name}"
                        s.s3_direct = s3_client(url)
                        s.s3_direct.create_bucket(Bucket=s.s3_bucket)
                        if args.no_proxy:
                            s.s3_endpoint = url
                            results.extend(run_session(tool, s, day1, day2, log))
                        else:
                            with CountingProxy(url, latency=args.latency_ms / 1000) as proxy:
                                s.proxy, s.s3_endpoint = proxy, proxy.url
                                results.extend(run_session(tool, s, day1, day2, log))
                        if not owned or not args.keep:
                            s3_empty_bucket(s.s3_direct, s.s3_bucket)
                if not args.keep:
                    set_aside(sdir, work / ".trash")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)

    rows = summarize(results)
    derived = derive(rows, dataset_bytes)
    shape = f"home-shaped, {args.home_files} files, " if args.home_files else ""
    print(f"dataset: {shape}{gen_dataset.fmt_size(dataset_bytes)} (seed {args.seed}), runs: {args.runs}, "
          f"medians shown; S3 latency {args.latency_ms:g} ms per request; CPUs {args.taskset or 'all'}; "
          f"restores into {RESTORE_FS_SHOWN[restore_fs]}")
    print(format_table(rows))
    print(format_derived(derived))
    if discrepancies := format_discrepancies(rows):
        print(discrepancies)
    doc = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
            "duration_s": round(time.time() - started, 1),
            "host": platform.node(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "tools": {t.name: getattr(t, "version", None) for t in tools},
            "targets": targets,
            "s3": args.s3_endpoint
            or f"moto (fresh server per session, objects {'in temporary files' if args.moto_disk_spool else 'in RAM'})",
            "s3_latency_ms": args.latency_ms,
            "home_files": args.home_files,
            "taskset": args.taskset,
            "restore_fs": restore_fs,
            "runs": args.runs,
            "seed": args.seed,
            "dataset_bytes": dataset_bytes,
            "request_kinds": list(MAIN_KINDS),
        },
        "summary": rows,
        "derived": derived,
        "results": [asdict(r) for r in results],
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"\nJSON written to {args.json_out}", file=sys.stderr)
    return 0 if all(r["status"] in ("ok", "warning") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
