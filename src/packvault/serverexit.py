"""Imported by the pools' server process (``processes.start_server_early`` preloads it) and nowhere else:
importing it makes that process end without the interpreter's teardown once its loop is over.

Why: the command that started the server waits for it at exit (``processes._reap_server_at_exit``), so
that the workers' CPU time and memory are counted as the command's.  The server has imported everything
the workers need; unloading all of that took it ~16 ms, time the command spent waiting with both cores
idle, at the end of every backup.  The server holds nothing that needs closing: it writes no file, and
the sockets and pipes it holds close with the process.

First its remaining children are reaped (waited for): the forked workers have exited by then (the pools
join them first), but the server may not yet have collected them, and a child nobody waits for is
counted in nobody's resource usage.  A child still running after ``REAP_SECONDS`` (a worker that hangs)
is left, as the server would have left it without this module, rather than holding up the command.
"""

from __future__ import annotations

import atexit
import os
import time

REAP_SECONDS = 2.0
_POLL_SECONDS = 0.002


def reap_children(deadline: float) -> None:
    """Wait for every child of this process until ``deadline`` (``time.monotonic``)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return  # none left
        if pid == 0:  # children, none of them ended yet
            if time.monotonic() >= deadline:
                return
            time.sleep(_POLL_SECONDS)


def _end_server() -> None:
    reap_children(time.monotonic() + REAP_SECONDS)
    os._exit(0)


atexit.register(_end_server)
