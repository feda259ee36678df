"""A backup source of one file read from a stream: standard input, or the output of a command.

``pg_dump db | packvault create REPO::db-today --stdin-name db.sql -`` stores one file named ``db.sql``;
``packvault create REPO::db-today --stdin-name db.sql --stdin-from-command -- pg_dump db`` runs the command
itself, which is better: a command that fails (exit status not 0) fails the backup, with no archive, where a
shell pipe would hand Packvault a truncated dump and a success.

The stream goes through the stream chunker like any large file, so memory stays bounded by the chunker's
buffer and the writer's queues whatever the stream's length.  There is no files cache for a stream: every
run reads all of it (unchanged chunks are still deduplicated, and cost no upload).
"""

from __future__ import annotations

import contextlib
import getpass
import grp
import os
import subprocess
import time
from collections.abc import Iterator
from typing import BinaryIO

from ..errors import PackvaultError, UsageError
from . import items as it
from .walker import Entry

DEFAULT_MODE = 0o100600  # a dump is often private: only its owner may read it back from a restore


class SourceCommandFailed(PackvaultError):
    """The command whose output was being backed up failed: the backup is not committed."""


class StreamSource:
    """Yields one regular-file entry whose content is read from ``open_stream()``; ``finish()`` runs after
    the stream was read to its end (and may raise to stop the backup before it commits)."""

    def __init__(self, name: str, open_stream, finish=None):
        path = os.fsencode(name).strip(b"/")
        if not path or any(part in (b"", b".", b"..") for part in path.split(b"/")):
            raise UsageError(f"--stdin-name {name!r} is not a usable file name", hint="e.g. --stdin-name db.sql")
        self.path = path
        self._open_stream = open_stream
        self._finish = finish

    def __iter__(self) -> Iterator[Entry]:
        now = time.time_ns()
        uid, gid = os.getuid(), os.getgid()
        item = {
            it.PATH: self.path,
            it.TYPE: it.FILE,
            it.MODE: DEFAULT_MODE,
            it.UID: uid,
            it.GID: gid,
            it.USER: _user_name(),
            it.GROUP: _group_name(gid),
            it.MTIME: now,
            it.ATIME: now,
            it.CTIME: now,
            it.SIZE: 0,  # unknown until read: the stream chunker is used, and the size set from what was read
        }
        yield Entry(item, self.path, opener=self._open_stream)
        if self._finish is not None:
            self._finish()


def _user_name() -> str | None:
    with contextlib.suppress(Exception):
        return getpass.getuser()
    return None


def _group_name(gid: int) -> str | None:
    with contextlib.suppress(KeyError):
        return grp.getgrgid(gid).gr_name
    return None


class _Borrowed:
    """A stream the backup reads but must not close (standard input belongs to the process)."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def readinto(self, buffer) -> int:
        return self._stream.readinto(buffer)

    def close(self) -> None:
        return None


def stdin_source(name: str, stdin: BinaryIO) -> StreamSource:
    return StreamSource(name, lambda: _Borrowed(stdin))


def command_source(name: str, argv: list[str]) -> StreamSource:
    """The output of ``argv`` as one file; its exit status decides whether the backup may commit."""
    if not argv:
        raise UsageError("--stdin-from-command needs a command", hint="e.g. --stdin-from-command -- pg_dump db")
    state: dict[str, subprocess.Popen] = {}

    def open_stream():
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
        except OSError as exc:
            message = f"cannot run {argv[0]!r}: {exc.strerror or exc}; no archive was created"
            raise SourceCommandFailed(message) from None
        state["proc"] = proc
        return proc.stdout

    def finish() -> None:
        proc = state.get("proc")
        if proc is None:
            raise SourceCommandFailed(f"{argv[0]!r} did not run; no archive was created")
        status = proc.wait()
        if status != 0:
            raise SourceCommandFailed(
                f"{argv[0]!r} exited with status {status}; no archive was created",
                hint="its output may be incomplete: fix the command and run the backup again",
            )

    return StreamSource(name, open_stream, finish)
