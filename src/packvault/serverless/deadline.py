"""Stopping a Lambda run cleanly before its timeout.

Lambda kills a function at its timeout without warning: whatever was in flight is lost and, worse, the
packs uploaded since the last checkpoint are in the bucket but in no index.  So the run stops itself a
safety margin earlier: ``ArchiveCreator`` asks ``expired()`` before every entry and, when it answers True,
flushes its packs, writes an index checkpoint and saves the files cache; that takes seconds, not minutes.

The margin is max(``PACKVAULT_DEADLINE_MARGIN`` seconds (default 20), ``PACKVAULT_DEADLINE_FRACTION``
(default 10 %) of the time the run started with): 20 s covers flushing two packs in flight on a slow link,
10 % keeps the margin in proportion on long runs.  A context without ``get_remaining_time_in_millis``
(a local call) never expires.
"""

from __future__ import annotations

import os
import time

DEFAULT_MARGIN_SECONDS = 20.0
DEFAULT_MARGIN_FRACTION = 0.10


class Deadline:
    def __init__(self, remaining_ms=None, *, margin: float | None = None, fraction: float | None = None):
        self._remaining_ms = remaining_ms
        margin = (
            float(os.environ.get("PACKVAULT_DEADLINE_MARGIN", DEFAULT_MARGIN_SECONDS)) if margin is None else margin
        )
        fraction = (
            float(os.environ.get("PACKVAULT_DEADLINE_FRACTION", DEFAULT_MARGIN_FRACTION))
            if fraction is None
            else fraction
        )
        start = self.remaining_seconds()
        self.margin = margin if start is None else max(margin, fraction * start)

    @classmethod
    def from_context(cls, context) -> Deadline:
        getter = getattr(context, "get_remaining_time_in_millis", None)
        return cls(getter if callable(getter) else None)

    def remaining_seconds(self) -> float | None:
        if self._remaining_ms is None:
            return None
        return self._remaining_ms() / 1000.0

    def expired(self) -> bool:
        """True once less than the margin is left: time to checkpoint and stop."""
        remaining = self.remaining_seconds()
        return remaining is not None and remaining < self.margin

    def has_time_for_maintenance(self) -> bool:
        """Compact is not interruptible; start it only with at least twice the margin left."""
        remaining = self.remaining_seconds()
        return remaining is None or remaining >= 2 * self.margin

    def lock_wait(self, wait: float) -> float:
        """Wait for a lock at most ``wait`` seconds (``Settings.lock_wait``), and never into the margin."""
        remaining = self.remaining_seconds()
        if remaining is not None:
            wait = min(wait, max(0.0, remaining - self.margin))
        return wait


class LocalContext:
    """A stand-in for a Lambda context in local runs and tests: ``budget`` seconds from creation."""

    def __init__(self, budget: float):
        self._end = time.monotonic() + budget
        self.aws_request_id = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._end - time.monotonic()) * 1000))
