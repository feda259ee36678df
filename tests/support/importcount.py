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


def reader_allocator_tuned() -> bool:
    """In a backup's reader process: whether its start-up tuned the allocator."""
    from packvault.archive import filereaders

    return filereaders._allocator_tuned
