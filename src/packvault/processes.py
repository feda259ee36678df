"""Worker processes (backup's readers, restore's writers, check's verifiers): how many, and Ctrl-C.

A Ctrl-C on a terminal goes to the whole process group.  A worker process that got it (backup's readers,
restore's writers, check's verifiers) would die with a traceback, in the middle of its imports or of its
task, and a pool whose worker dies while it holds the task queue can hang the shutdown.  So workers ignore
SIGINT; the process that started them stops handing out work and ends the pool.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Around the start of worker processes: they are spawned with SIGINT ignored (an ignored signal stays
    ignored across ``exec``, and Python installs its KeyboardInterrupt handler only where SIGINT is at its
    default), so they never see Ctrl-C, not even while they import.  Only the main thread may change a
    handler: started from another thread, the workers ignore it from ``ignore_interrupts`` on.  (A Ctrl-C
    in the few milliseconds of the spawn itself is lost.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def spawn_pool(processes: int, initializer: Callable[..., None], initargs: tuple) -> ProcessPoolExecutor:
    """A pool of worker processes started with ``spawn``: never a ``fork`` of a process that runs threads (a
    lock held by another thread at the fork would stay held in the child forever).  Its processes start as
    work is submitted; ``start_workers`` starts them at once."""
    return ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=initializer, initargs=initargs
    )


def start_workers(pool: ProcessPoolExecutor, processes: int) -> list[Future]:
    """Start every process of ``pool`` now, without waiting for them (a process is spawned per submit while
    none is idle), with SIGINT ignored; each future is done once a process is up."""
    with interrupts_ignored():
        return [pool.submit(os.getpid) for _ in range(processes)]


def ignore_interrupts() -> None:
    """In a worker process, first thing: Ctrl-C is for the process that started it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def usable_processes(requested: int | None) -> int:
    """How many worker processes to start: ``requested``, or one per CPU this process may run on; none on a
    single CPU (the command's own process is as fast there, without the workers' start-up and round trips)."""
    if requested is not None:
        return requested
    count = getattr(os, "process_cpu_count", None)  # Python 3.13: honours the affinity mask
    if count is not None:
        cpus = count() or 1
    else:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
    return cpus if cpus > 1 else 0
