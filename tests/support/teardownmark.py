"""A module whose process, when it goes through the interpreter's normal teardown, notes ``teardown <pid>``
in the file named by ``PV_TEST_IMPORT_LOG``: tests see which processes skip it."""

from __future__ import annotations

import atexit
import os


def _note() -> None:
    with open(os.environ["PV_TEST_IMPORT_LOG"], "a") as log:
        log.write(f"teardown {os.getpid()}\n")


if os.environ.get("PV_TEST_IMPORT_LOG"):
    atexit.register(_note)
