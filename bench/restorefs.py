"""Where the benchmark's restores write: a fresh, journaled ext4 file system per restore, or the work directory.

Why a file system of its own: a restore is mostly file creation, and what creating 25,000 files costs
depends on the file system's recent past more than on the tool.  This VM's root file system runs without a
journal, and ext4 without one skips every inode freed in the last minutes, reading the inode table to find
that out (``recently_deleted`` in perf): a restore started after an earlier step deleted a tree spent 2-3x
as long in the kernel, and by how much varied from run to run for every tool alike.  A file system made
for each restore (a sparse image on a loop device with direct I/O, formatted with its inode tables and
journal written up front, so no background initialisation runs during the restore) gives every tool and
run the same start, and it is what a user restoring onto a disk of their own has.  Removing it afterwards
is one unlink, not 25,000, so it also leaves the next step's file creation on the root file system alone.

Making one needs root, ``mkfs.ext4`` and a loop device; ``auto`` falls back to the work directory and
says why.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODES = ("auto", "ext4", "workdir")
UMOUNT_BUSY = 32  # umount(8)'s exit status for a mount failure, here a busy target
UNMOUNT_ATTEMPTS = 5
UNMOUNT_PAUSE = 0.5
MKFS = ("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0,nodiscard")


class FreshExt4:
    """One file system image, formatted and mounted at ``mountpoint`` for one restore, then removed."""

    def __init__(self, image: Path, size: int, *, mkfs: tuple[str, ...] = MKFS):
        self.image = image
        self.size = size
        self.mkfs = mkfs
        self.mountpoint: Path | None = None
        self.device: str | None = None  # the loop device

    def mount(self, mountpoint: Path) -> None:
        mountpoint.mkdir(parents=True, exist_ok=True)
        with open(self.image, "wb") as f:
            f.truncate(self.size)  # sparse: only what the restore writes takes space
        try:
            _run([*self.mkfs, str(self.image)])
            # direct I/O to the image: without it every restored byte is cached twice, by the restore's file
            # system and by the root file system's copy of the image, which a disk of its own does not do
            self.device = _output(["losetup", "--find", "--show", "--direct-io=on", str(self.image)])
            try:
                dio = Path("/sys/block") / Path(self.device).name / "loop" / "dio"
                if dio.read_text().strip() != "1":  # losetup only warns when it cannot
                    raise OSError(f"{self.device} cannot do direct I/O to {self.image}")
                _run(["mount", self.device, str(mountpoint)])
            except BaseException:
                _run(["losetup", "--detach", self.device])
                raise
        except BaseException:
            self.device = None
            self.image.unlink(missing_ok=True)
            raise
        self.mountpoint = mountpoint

    def unmount(self) -> None:
        """Unmount (writing back what the restore left dirty, untimed), detach and delete the image.

        An unmount refused as busy (seen once in many runs, right after a restore returned, and not again a
        moment later) is retried a few times; who held the file system is printed first, so that a tool that
        leaves a process behind in the restore target shows up by name."""
        if self.mountpoint is not None:
            for attempt in range(UNMOUNT_ATTEMPTS):
                try:
                    _run(["umount", str(self.mountpoint)])
                    break
                except subprocess.CalledProcessError as exc:
                    if exc.returncode != UMOUNT_BUSY or attempt + 1 == UNMOUNT_ATTEMPTS:
                        raise
                    print(f"bench: {self.mountpoint} busy after the restore, held by: "
                          f"{', '.join(holders(self.mountpoint)) or 'no process (the kernel)'}; retrying",
                          file=sys.stderr, flush=True)
                    time.sleep(UNMOUNT_PAUSE)
            self.mountpoint = None
        if self.device is not None:
            _run(["losetup", "--detach", self.device])
            self.device = None
        self.image.unlink(missing_ok=True)


def unusable_reason(work: Path, *, mkfs: tuple[str, ...] = MKFS) -> str | None:
    """Why a fresh file system cannot be made here (None: it can), found by making and removing a small one."""
    if os.geteuid() != 0:
        return "mounting a file system needs root"
    for tool in (mkfs[0], "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = FreshExt4(work / "restorefs-probe.img", 64 * 1024 * 1024, mkfs=mkfs)
    try:
        probe.mount(work / "restorefs-probe")
    except (OSError, subprocess.CalledProcessError) as exc:
        return f"cannot make and mount one: {_reason(exc)}"
    finally:
        with contextlib.suppress(OSError, subprocess.CalledProcessError):
            probe.unmount()
        with contextlib.suppress(OSError):
            (work / "restorefs-probe").rmdir()
    return None


def choose(mode: str, work: Path, log, *, mkfs: tuple[str, ...] = MKFS) -> str:
    """``ext4`` or ``workdir`` for ``mode``; ``auto`` says in the log why it could not use ``ext4``."""
    if mode == "workdir":
        return mode
    reason = unusable_reason(work, mkfs=mkfs)
    if reason is None:
        return "ext4"
    if mode == "ext4":
        raise SystemExit(f"--restore-fs ext4: {reason}")
    log(f"restores go to the work directory: a fresh ext4 is not possible here ({reason})")
    return "workdir"


def holders(mountpoint: Path) -> list[str]:
    """The processes (pid and name) with a file, working directory or root under ``mountpoint``."""
    top = os.fspath(mountpoint)
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        base = f"/proc/{pid}"
        try:
            links = [os.path.join(base, "cwd"), os.path.join(base, "root")]
            links += [os.path.join(base, "fd", fd) for fd in os.listdir(os.path.join(base, "fd"))]
            targets = []
            for link in links:
                with contextlib.suppress(OSError):
                    targets.append(os.readlink(link))
            if any(t == top or t.startswith(top + "/") for t in targets):
                with open(os.path.join(base, "comm")) as f:
                    found.append(f"{pid} {f.read().strip()}")
        except OSError:
            continue  # gone meanwhile, or not ours to look at
    return found


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


def _output(argv: list[str]) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        lines = (exc.stderr or "").strip().splitlines()
        return f"{exc.cmd[0]}: {lines[-1] if lines else f'exit {exc.returncode}'}"
    return str(exc)
