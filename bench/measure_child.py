#!/usr/bin/env python3
"""Run one command and report what it alone used: wall time, user and system CPU, peak RSS, exit code.

Why a launcher between the benchmark and the tool: on Linux a child's ``ru_maxrss`` starts from the memory
of the process that spawned it (until ``exec`` the child runs on its parent's memory map, and ``exec``
keeps that high-water mark).  The benchmark process holds the counting proxy and every result, ~80 MiB,
so every command that peaked below that was reported at the harness's size: two different tools showed
the same 81.9 MiB for an unchanged re-run.  This launcher starts with ``-I -S`` and holds ~10 MiB, so the
peak it reports is the tool's own.

Usage: ``measure_child.py RESULT.json -- COMMAND [ARGS...]``.  The command inherits stdin/stdout/stderr,
its exit code is ours, and RESULT.json gets ``{"rc", "wall", "user", "sys", "maxrss"}`` (maxrss in bytes).
A command that cannot be started is reported with rc 127 and the reason on stderr.
"""

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: measure_child.py RESULT.json -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    result_path, command = argv[0], argv[2:]
    started = time.perf_counter()
    try:
        proc = subprocess.Popen(command)
    except OSError as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        result = {"rc": 127, "wall": 0.0, "user": 0.0, "sys": 0.0, "maxrss": 0}
    else:
        _pid, status, usage = os.wait4(proc.pid, 0)
        result = {
            "rc": os.waitstatus_to_exitcode(status),
            "wall": time.perf_counter() - started,
            "user": usage.ru_utime,
            "sys": usage.ru_stime,
            "maxrss": usage.ru_maxrss * 1024,  # Linux reports KiB
        }
    with open(result_path, "w") as f:
        json.dump(result, f)
    return result["rc"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
