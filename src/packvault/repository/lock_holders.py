"""Who holds a lock: this machine's host identity, and whether a local process is still alive (a dead local
holder's lock is stale at once; another host's expires by time)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import uuid


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def default_host_id() -> str:
    """``hostname/digest``, where the digest names the scope in which this machine's pids are meaningful.

    A pid can only be checked for liveness by a process that sees the same pid space: the same boot of the
    same kernel, and the same pid namespace (containers on one host share the boot but not the pid space;
    containers from one image often share /etc/machine-id).  So on Linux the digest covers the boot id and
    the pid namespace's inode.  A lock left behind before a reboot thus counts as another host's and
    expires by time, which is slower but never wrong.  Elsewhere, the MAC-derived node id stands in.
    """
    parts: list[str] = []
    boot_id = _read_text("/proc/sys/kernel/random/boot_id")
    if boot_id:
        parts.append(boot_id)
        with contextlib.suppress(OSError):
            parts.append(f"pidns:{os.stat('/proc/self/ns/pid').st_ino}")
    else:
        parts.append(_read_text("/etc/machine-id") or f"node:{uuid.getnode():012x}")
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    return f"{socket.gethostname()}/{digest}"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process from /proc, or None where that is not available."""
    text = _read_text(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        fields = text[text.rindex(")") + 2 :].split()  # the command name may contain spaces and ")"
        return fields[0], int(fields[19])
    except (ValueError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    """An identity for the process ``pid`` beyond its number, so a reused pid is not taken for the holder."""
    stat = _proc_stat(pid)
    return None if stat is None else stat[1]


def pid_alive(pid: int, start: int | None = None) -> bool:
    """Whether ``pid`` (started at ``start``, if known) is a running process in our pid space.

    Errs on the side of "alive": a wrongly live verdict only makes a dead holder's lock wait for expiry.
    """
    if pid <= 0:
        return True  # not a real pid: os.kill would address a process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. EPERM: exists, but belongs to someone else
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    if state in ("Z", "X"):
        return False  # exited; only its parent has not reaped it yet
    return start is None or started == start
