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


def asked_in_a_worker(initializer, initargs: tuple, question):  # noqa: ANN001, ANN201 - any callables
    """Start one worker process with ``initializer(*initargs)`` as a pool starts it, return what
    ``question()`` answers there, and stop it."""
    from packvault.processes import start_workers, worker_pool

    pool = worker_pool(1, initializer, initargs)
    try:
        for future in start_workers(pool, 1):
            future.result(timeout=60)
        return pool.submit(question).result(timeout=60)
    finally:
        pool.shutdown()


def glibc_here() -> bool:
    """Whether this is Linux with glibc, where ``allocator.tune_for_chunk_reads`` applies."""
    import platform

    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


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
