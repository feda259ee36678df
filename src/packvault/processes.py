"""Worker processes (backup's readers, restore's writers, check's verifiers): how many, and Ctrl-C.

A Ctrl-C on a terminal goes to the whole process group.  A worker process that got it (backup's readers,
restore's writers, check's verifiers) would die with a traceback, in the middle of its imports or of its
task, and a pool whose worker dies while it holds the task queue can hang the shutdown.  So workers ignore
SIGINT; the process that started them stops handing out work and ends the pool.
"""

from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager

# imported by the server process only, to end it quickly (see the module); by name: never in this process
SERVER_EXIT_MODULE = "packvault.serverexit"


@contextmanager
def interrupts_ignored() -> Iterator[None]:
    """Around the start of worker processes: the pool's server process is started with SIGINT ignored (an
    ignored signal stays ignored across ``exec``, and Python installs its KeyboardInterrupt handler only
    where SIGINT is at its default), and its forks keep that, so they never see Ctrl-C, not even while they
    start.  Only the main thread may change a handler: started from another thread, the workers ignore it
    from ``ignore_interrupts`` on, the first thing each does.  (A Ctrl-C in the few milliseconds of the
    server's own start is lost.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def worker_pool(
    processes: int, initializer: Callable[..., None], initargs: tuple, *, preload: Sequence[str] = ()
) -> ProcessPoolExecutor:
    """A pool of worker processes forked from a server process (``forkserver``) that runs no thread: never
    a fork of a process that runs threads (a lock held by another thread at the fork would stay held in the
    child forever).  Its processes start as work is submitted; ``start_workers`` starts them at once.

    Why a server rather than ``spawn``: a spawned worker imports Packvault (and, to read from S3, botocore)
    itself, ~0.25 CPU-seconds each on the two cores the command needs; the server imports the initializer's
    module and ``preload`` once, and each worker is a copy-on-write fork of it.  The server is started once
    per process (here, unless ``start_server_early`` did), with the first pool's modules (a later pool's
    workers import what is missing, as spawned ones do).  A worker is handed the environment and working
    directory of the moment its pool was made (``_bootstrap``), not those the server was started with, so it
    behaves as a spawned one would."""
    start_server_early(initializer.__module__, preload)
    state = (dict(os.environ), os.getcwd(), os.getpid())
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_bootstrap,
        initargs=(state, initializer, initargs),
    )


def start_server_early(module: str, preload: Sequence[str] = ()) -> None:
    """Start the pools' server process unless it runs, with ``module`` (the initializer's) and ``preload``
    imported in it.  ``worker_pool`` does; a command that will most likely start a pool does it first,
    before it opens its repository: the server imports meanwhile, and the first pool's processes fork at
    once.  Started with the first pool instead, the command's main thread waited for the server's imports
    before the first worker existed (~0.1 s; with botocore ~0.2 s).  A failure is left to the pool to meet
    (a platform without processes falls back to working in the command's process)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([module, *preload, SERVER_EXIT_MODULE])
    _reap_server_at_exit()
    try:
        with interrupts_ignored():
            multiprocessing.forkserver.ensure_running()
    except Exception:  # noqa: BLE001 - no processes here: the pool says so when it is made
        return


def stop_server() -> None:
    """Stop the pools' server now if it runs: one started early for a command that turned out not to need it
    (``cli/early_readers.py``), which would otherwise sit idle, holding its memory, until the command ends.
    A pool made later starts a new one."""
    stop = _stop_of(multiprocessing.forkserver, "_forkserver")
    if stop is not None:
        stop()


_reaping = threading.Lock()
_reaped_at_exit = False


def _reap_server_at_exit() -> None:
    """Stop the server process and wait for it when the process exits, after the pools have joined their
    workers (``concurrent.futures`` does that first).  Why: the server reaps the workers, so their CPU time
    and peak memory are its; left to exit on its own, it would be nobody's child, and ``time packvault ...``
    (or the benchmark) would not count what the workers did.  ``ForkServer._stop`` is the standard library's
    own way to do this (its tests use it); where it is missing, the server ends on its own, as before.

    The resource tracker (the helper ``multiprocessing`` starts before the server) is left to end on its
    own: stopped here, it ran before ``multiprocessing``'s own exit handler, which still had the semaphores
    of a pool interrupted by a signal to release, and warned of them as leaked."""
    global _reaped_at_exit
    with _reaping:
        if _reaped_at_exit:
            return
        _reaped_at_exit = True
    stop = _stop_of(multiprocessing.forkserver, "_forkserver")
    if stop is not None:
        atexit.register(stop)


def _stop_of(module, name: str) -> Callable[[], None] | None:  # noqa: ANN001 - a multiprocessing module
    """The ``_stop`` of ``multiprocessing``'s helper-process singleton ``module.name``, where it has one."""
    return getattr(getattr(module, name, None), "_stop", None)


def _bootstrap(state: tuple[dict[str, str], str, int], initializer: Callable[..., None], initargs: tuple) -> None:
    ignore_interrupts()
    environ, cwd, owner = state
    end_with(owner)
    if environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    os.chdir(cwd)
    initializer(*initargs)


# How often a worker looks whether its pool's owner still runs, where it cannot be told (no pidfd).
OWNER_POLL_SECONDS = 1.0


def end_with(owner: int) -> None:
    """In a worker process: end it when the process that made its pool ends.

    Why: a pool's owner that is killed outright (SIGKILL, the OOM killer) runs no exit handler, and its
    workers are not its children but the server's.  Each holds both ends of the pool's task queue, so it
    waits for a task forever, and the write end of the pipe that keeps the server alive (``multiprocessing``
    hands it to every worker), so the server never sees its owner go: all of them stayed, each holding its
    memory, until the machine restarted.  A thread of the worker's waits for the owner's end (a pidfd, where
    Linux has them; a check every ``OWNER_POLL_SECONDS`` elsewhere) and ends the worker; the server then sees
    no one left and ends too, and the resource tracker after it."""
    try:
        watched = os.pidfd_open(owner)
    except (AttributeError, OSError):  # no pidfd here (old kernel, not Linux), or the owner is gone already
        watched = None
        if not _runs(owner):
            os._exit(1)

    def wait_for_owner() -> None:
        if watched is not None:
            select.select([watched], [], [])
        else:
            while _runs(owner):
                time.sleep(OWNER_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=wait_for_owner, name="pv-owner-watch", daemon=True).start()


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # runs, as another user (the pid was reused): the owner is gone
        return False
    return True


def start_workers(pool: ProcessPoolExecutor, processes: int) -> list[Future]:
    """Start every process of ``pool`` now, without waiting for them (a process is spawned per submit while
    none is idle), with SIGINT ignored; each future is done once a process is up."""
    with interrupts_ignored():
        return [pool.submit(os.getpid) for _ in range(processes)]


def start_workers_meanwhile(pool: ProcessPoolExecutor, processes: int) -> list[Future]:
    """``start_workers`` from a thread of its own, for a caller that goes on meanwhile: forking a worker
    waits until the pool's server has imported the pool's modules (~0.1 s; with botocore ~0.2 s).  The list
    returned fills with one future per process (done once it is up) when the thread has asked for them all;
    it stays empty where no process can start, or the pool was shut down meanwhile (its next submit says
    so).  Start the server first, from the main thread (``start_server_early``): its forks then ignore
    SIGINT, whichever thread asks for them."""
    started: list[Future] = []

    def fork() -> None:
        try:
            started.extend(start_workers(pool, processes))
        except Exception:  # noqa: BLE001 - see above
            return

    threading.Thread(target=fork, name="pv-workers-start", daemon=True).start()
    return started


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
