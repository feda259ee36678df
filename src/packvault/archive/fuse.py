"""The FUSE glue of ``packvault mount``: libfuse 3 through ``mfusepy`` (ctypes, as borg 2 does) over
``mountfs.RepositoryFS``.

``serve`` mounts read-only and runs libfuse's loop in the calling thread until the file system is
unmounted: by ``fusermount3 -u``/``umount``, or by SIGINT, SIGTERM or SIGHUP, for which libfuse installs
its own handlers (they end the loop, and libfuse unmounts on the way out).  libfuse reports an end by a
signal as an error code; after a successful mount that is the normal end, not a failure.

libfuse always runs in the foreground here: its own daemonizing forks the process after Python's threads
(the chunk reader's pool, the lock refresher) exist, and the child would run without them.  The CLI
detaches before it opens the repository instead (``cli/mount.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from ..errors import PackvaultError
from .mountfs import RepositoryFS

FUSE_PACKAGE = "fuse3"


class FuseUnavailable(PackvaultError):
    """libfuse (or the Python binding) is not installed: mounting is impossible on this machine."""

    hint = f"install the {FUSE_PACKAGE} package, e.g. apt-get install {FUSE_PACKAGE}"


class MountFailed(PackvaultError):
    """libfuse refused to mount (its own message is on stderr just before)."""

    hint = "check that the mount point is an empty directory you own and that /dev/fuse is usable"


def load_fuse() -> ModuleType:
    """The ``mfusepy`` module, bound to the system's libfuse; FuseUnavailable when either is missing."""
    try:
        return importlib.import_module("mfusepy")
    except ModuleNotFoundError as exc:
        if exc.name != "mfusepy":
            raise
        raise FuseUnavailable(
            "mount needs the Python package 'mfusepy'", hint="reinstall packvault (mfusepy is one of its dependencies)"
        ) from None
    except (OSError, AttributeError) as exc:  # mfusepy looks libfuse up when imported
        raise FuseUnavailable(f"mount needs libfuse 3: {exc}") from None


def _text(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def serve(fs: RepositoryFS, mountpoint: str, *, on_mounted: Callable[[], None] | None = None) -> None:
    """Mount ``fs`` read-only at ``mountpoint`` and serve it until it is unmounted.

    ``on_mounted`` runs once the kernel has the mount (libfuse's ``init``), before the first request is
    answered.  Raises MountFailed when libfuse could not mount."""
    fuse = load_fuse()

    class Operations(fuse.Operations):
        use_ns = True  # times in integer nanoseconds, as the items hold them
        mounted = False

        def init(self, path: str) -> None:
            self.mounted = True
            if on_mounted is not None:
                on_mounted()

        def getattr(self, path: str, fh: int | None = None) -> dict:
            return fs.getattr(_text(path))

        def readdir_with_offset(self, path: str, offset: int, fh: int):
            for name, kind, ino, following in fs.readdir(_text(path), offset):
                yield name.decode("utf-8", "surrogateescape"), {"st_mode": kind, "st_ino": ino}, following

        def readlink(self, path: str) -> str:
            return fs.readlink(_text(path)).decode("utf-8", "surrogateescape")

        def open(self, path: str, flags: int) -> int:
            return fs.open(_text(path), flags)

        def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
            return fs.read(fh, size, offset)

        def release(self, path: str | None, fh: int) -> int:
            fs.release(fh)
            return 0

        def listxattr(self, path: str) -> list[str]:
            return [name.decode("utf-8", "surrogateescape") for name in fs.listxattr(_text(path))]

        def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
            return fs.getxattr(_text(path), _text(name))

        def statfs(self, path: str) -> dict:
            return fs.statfs()

    options: dict[str, object] = {
        "foreground": True,
        "ro": True,
        "use_ino": True,
        "fsname": "packvault",
        "subtype": "packvault",
        # archives never change: the kernel may keep pages and attributes for as long as it likes
        "kernel_cache": True,
        "entry_timeout": 300,
        "attr_timeout": 300,
    }
    if fuse.fuse_version_major == 3:
        options["max_idle_threads"] = 4  # libfuse 3 warns about its own default otherwise
        if fuse.fuse_version_minor >= 12:
            options["max_threads"] = 8
    operations = Operations()
    try:
        fuse.FUSE(operations, mountpoint, **options)
    except RuntimeError as exc:
        if not operations.mounted:
            raise MountFailed(f"libfuse could not mount {mountpoint} (error {exc})") from None

