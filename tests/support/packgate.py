"""The ``packvault`` command line with its pack uploads held at a gate (run it as ``python -m tests.support.packgate
<command> ...``): once ``PV_TEST_PACK_GATE_AFTER`` packs are stored, the upload thread creates ``<gate>.parked``
and waits until the file ``PV_TEST_PACK_GATE`` exists (at most five minutes).

A test that interrupts a command part way waits for the parked file and then signals, instead of counting packs
against the command's speed: on a slow machine the command could finish between the count and the signal.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

from packvault.cli.main import main
from packvault.repository.writer import RepositoryWriter

GATE_WAIT_SECONDS = 300


def gate_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.support.packgate", *map(str, args)]


def gate_env(gate: Path, after: int) -> dict[str, str]:
    return {"PV_TEST_PACK_GATE": str(gate), "PV_TEST_PACK_GATE_AFTER": str(after)}


def wait_parked(gate: Path, proc, timeout: float = 120) -> None:
    """Wait until the command's uploads are held (it cannot finish meanwhile), or fail the test."""
    parked = Path(f"{gate}.parked")
    deadline = time.monotonic() + timeout
    while not parked.exists():
        assert proc.poll() is None, f"the command ended (exit {proc.returncode}) before its uploads were held"
        assert time.monotonic() < deadline, "the command's uploads were never held"
        time.sleep(0.01)


def _hold_uploads(gate: str, after: int) -> None:
    upload = RepositoryWriter._upload
    stored = 0
    lock = threading.Lock()

    def held_upload(self: RepositoryWriter, pack) -> None:
        nonlocal stored
        upload(self, pack)
        with lock:
            stored += 1
            reached = stored == after
        if reached:
            Path(f"{gate}.parked").touch()
            deadline = time.monotonic() + GATE_WAIT_SECONDS
            while not os.path.exists(gate) and time.monotonic() < deadline:
                time.sleep(0.01)

    RepositoryWriter._upload = held_upload  # type: ignore[method-assign]


if __name__ == "__main__":
    _hold_uploads(os.environ["PV_TEST_PACK_GATE"], int(os.environ["PV_TEST_PACK_GATE_AFTER"]))
    sys.exit(main())
