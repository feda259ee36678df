"""A module whose import waits until the file named by ``PV_TEST_IMPORT_GATE`` exists (at most five minutes):
tests preload it in a worker pool's server to see who waits for the server's imports."""

from __future__ import annotations

import os
import time

_gate = os.environ.get("PV_TEST_IMPORT_GATE")
if _gate:
    _deadline = time.monotonic() + 300
    while not os.path.exists(_gate) and time.monotonic() < _deadline:
        time.sleep(0.01)
