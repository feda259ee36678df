"""A module that notes, in the file named by ``PV_TEST_IMPORT_LOG``, the pid of every process importing it:
tests count how many processes of a worker pool loaded their modules themselves."""

from __future__ import annotations

import os

if os.environ.get("PV_TEST_IMPORT_LOG"):
    with open(os.environ["PV_TEST_IMPORT_LOG"], "a") as _log:
        _log.write(f"{os.getpid()}\n")


def start() -> None:
    """A pool initializer that does nothing of its own."""


def environment(name: str) -> tuple[str | None, str]:
    return os.environ.get(name), os.getcwd()


def burn(seconds: float) -> int:
    """Use ``seconds`` of CPU time in this process; returns its pid."""
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return os.getpid()


def restore_allocator_tuned() -> bool:
    """In a restore process: whether its start-up tuned the allocator."""
    from packvault.archive import restorers

    return restorers.allocator_tuned


def reader_allocator_tuned() -> bool:
    """In a backup's reader process: whether its start-up tuned the allocator."""
    from packvault.archive import readerprocess

    return readerprocess.allocator_tuned


_arena = None


def keep_arena(arena) -> None:  # noqa: ANN001 - the mapping a worker is started with
    """A pool initializer that keeps the shared arena it was handed (``sharedarena.WorkerArena``)."""
    global _arena
    _arena = arena


def write_into_arena(start: int, data: bytes) -> int:
    """Write ``data`` at ``start`` in the arena kept by ``keep_arena``, as a reader writes its objects."""
    from packvault.sharedarena import RegionWriter

    writer = RegionWriter(_arena, start, 4096)
    writer.add(data)
    return writer.result()
