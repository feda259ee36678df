"""``packvault mount REPO[::ARCHIVE] MOUNTPOINT``: archives as a read-only FUSE file system.

The engine is ``archive/mountfs.py`` (the tree, the reads, the cache) and ``archive/fuse.py`` (libfuse).
This module checks the mount point, opens the repository, and detaches: without ``--foreground`` the
command forks *before* it opens anything (no thread exists yet, so the child lacks nothing), the child
mounts, and the parent waits until the child reports the mount (exit 0) or exits (its exit code, after its
one-line error on the shared stderr).  Once mounted, the child leaves the terminal's session and its
standard streams go to /dev/null.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import EXIT_OK, EXIT_WARNING, UsageError
from .location import split_location

if TYPE_CHECKING:
    from .run import Run

DESCRIPTION = (
    "Browse archives as a read-only FUSE file system: REPO shows one directory per archive (by name), "
    "REPO::ARCHIVE shows that archive at MOUNTPOINT.  File data is read on demand through ranged reads and "
    "a 64 MiB cache of decrypted chunks; an archive's tree is built the first time it is visited.  Without "
    "--foreground the command returns once the file system is mounted.  Unmount with 'fusermount3 -u "
    "MOUNTPOINT', or stop a --foreground mount with Ctrl-C (SIGINT) or SIGTERM.  Needs libfuse 3 (Debian: "
    "the fuse3 package)."
)
EXIT_CODES = (
    "For mount: 0 mounted (without --foreground), or served and unmounted cleanly (--foreground); 1 served "
    "and unmounted, but something could not be shown or read (the warnings were on stderr); 2 not mounted "
    "(one line on stderr says why)."
)


def add_parser(command: Callable[..., argparse.ArgumentParser], add_common: Callable[..., None]) -> None:
    """The ``mount`` subcommand, added by ``cli/main.py``'s ``command`` and ``_add_common`` helpers."""
    p = command("mount", "browse archives as a read-only file system (FUSE)", DESCRIPTION, before_exit_codes=EXIT_CODES)
    p.add_argument(
        "location",
        metavar="REPO[::ARCHIVE]",
        help="the repository (a path, file:///path or s3://bucket[/prefix]; or ::ARCHIVE with $PACKVAULT_REPO), "
        "and optionally one archive",
    )
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="an existing directory to mount on")
    p.add_argument(
        "-f",
        "--foreground",
        action="store_true",
        help="stay in the foreground until unmounted, showing warnings on stderr (default: detach once mounted)",
    )
    add_common(p, json_flag=False, reading=True)
    p.set_defaults(func="cmd_mount")


def _print_warning(path: str, message: str) -> None:
    print(f"warning: {path}: {message}", file=sys.stderr, flush=True)


def _mountpoint(path: str) -> str:
    full = os.path.abspath(path)
    if not os.path.isdir(full):
        raise UsageError(f"the mount point {path} is not a directory", hint=f"create it first: mkdir -p {path}")
    if os.path.ismount(full):
        raise UsageError(f"{path} is already a mount point", hint=f"unmount it first: fusermount3 -u {path}")
    return full


def _check_fuse() -> None:
    from ..archive.fuse import FuseUnavailable, load_fuse

    load_fuse()
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable(
            "/dev/fuse does not exist, so nothing can be mounted",
            hint="load the kernel module (modprobe fuse); in a container, pass the device (--device /dev/fuse)",
        )


def cmd_mount(args, run: Run) -> int:
    location, archive = split_location(args.location)
    mountpoint = _mountpoint(args.mountpoint)
    _check_fuse()
    if args.foreground:
        return _serve(args, run, location, archive, mountpoint, on_mounted=None)
    return _detach_and_serve(args, run, location, archive, mountpoint)


def _serve(
    args, run: Run, location: str, archive: str | None, mountpoint: str, on_mounted: Callable[[], None] | None
) -> int:
    from ..archive.fuse import serve
    from ..archive.mountfs import MountOptions, RepositoryFS
    from ..repository.reader import ChunkReader
    from .opening import open_repository

    with open_repository(args, run, location) as repo, ChunkReader(repo, meta_packs=repo.meta_pack_cache()) as reader:
        entries = [repo.find_archive(archive)] if archive else repo.archive_entries()
        fs = RepositoryFS(
            reader,
            entries,
            single=archive is not None,
            options=MountOptions(spool_dir=repo.cache.path),
            on_warning=_print_warning,
        )
        fs.prepare()
        serve(fs, mountpoint, on_mounted=on_mounted)
    return EXIT_WARNING if fs.report.warnings else EXIT_OK


def _detach_and_serve(args, run: Run, location: str, archive: str | None, mountpoint: str) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_write)
        # Ctrl-C before the mount reaches the child too (same process group): it says so and exits 130,
        # which is reported below, once
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        with os.fdopen(ready_read, "rb") as ready:
            mounted = ready.read(1) == b"1"
        if mounted:
            return EXIT_OK
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code

    os.close(ready_read)

    def detach() -> None:
        """Called once the kernel has the mount: leave the terminal, tell the parent it may return."""
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
        os.write(ready_write, b"1")
        os.close(ready_write)

    return _serve(args, run, location, archive, mountpoint, on_mounted=detach)
