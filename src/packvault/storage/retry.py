"""Bounded retries of single storage requests, with tenacity.

Why per request and not per backend call: a backend call (store of a large object, defrag) is made of
several requests, and only the failed one should be repeated.  Writes stay safe to repeat because the S3
backend makes them convergent (create-only, compare-and-swap), see ``s3/writes.py``.

The policy is bounded twice: by a number of attempts and by a total time.  The backoff never sleeps past
the time bound, so "the service stays down" turns into one clear error within the configured time (plus,
at most, the timeouts of the request that was in flight).  When the budget is spent, the last error is
translated by the caller-supplied ``give_up`` function into a user-facing ``StorageError``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_ATTEMPTS = 8
DEFAULT_MAX_SECONDS = 120.0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and for how long one request is retried, and how long the backoff steps are."""

    attempts: int = DEFAULT_ATTEMPTS
    max_seconds: float = DEFAULT_MAX_SECONDS
    initial_wait: float = 0.1
    max_wait: float = 10.0

    @classmethod
    def from_options(cls, attempts: str | int | None, max_seconds: str | float | None) -> RetryPolicy:
        """The policy for bounds given as text (a URL option, an environment value); None or "" means the
        default.  Where the values come from, and which source wins, is the caller's business."""
        try:
            n = int(attempts) if attempts not in (None, "") else DEFAULT_ATTEMPTS
            s = float(max_seconds) if max_seconds not in (None, "") else DEFAULT_MAX_SECONDS
        except ValueError as exc:
            raise ValueError(f"invalid retry bound: {exc}") from None
        if n < 1 or s <= 0:
            raise ValueError("retry attempts must be >= 1 and retry seconds > 0")
        return cls(attempts=n, max_seconds=s)

    def delay(self, attempt: int) -> float:
        """"Full jitter" exponential backoff before retry number ``attempt`` (1 = the first retry).

        Also used for repeats of whole operations that a single request's retry cannot cover (a multipart
        upload that has to start again), so that racing writers drift apart.
        """
        ceiling = min(self.max_wait, self.initial_wait * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def call(
        self,
        fn: Callable[[], T],
        *,
        is_transient: Callable[[BaseException], bool],
        give_up: Callable[[BaseException, int, float], BaseException],
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> T:
        """Run ``fn``; repeat it on transient errors within the bounds; non-transient errors pass through.

        ``give_up(last_error, attempts, elapsed)`` builds the exception raised when the bounds are reached.
        """
        started = time.monotonic()
        try:  # the common case, one attempt that works, without building the retry machinery
            return fn()
        except BaseException as exc:
            if not is_transient(exc):
                raise
            first_error = exc

        def stop(state: RetryCallState) -> bool:
            attempt = state.attempt_number + 1  # tenacity counts from the second attempt
            return attempt >= self.attempts or time.monotonic() - started >= self.max_seconds

        def backoff(attempt: int) -> float:
            # never sleeping past the time bound
            remaining = self.max_seconds - (time.monotonic() - started)
            return max(0.0, min(self.delay(attempt), remaining))

        def note_retry(exc: BaseException, attempt: int) -> None:
            log.debug("retrying after %r (attempt %d)", exc, attempt)
            if on_retry is not None:
                on_retry(exc)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                note_retry(exc, state.attempt_number + 1)

        if self.attempts <= 1 or time.monotonic() - started >= self.max_seconds:
            raise give_up(first_error, 1, time.monotonic() - started) from first_error
        note_retry(first_error, 1)
        time.sleep(backoff(1))
        retrying = Retrying(
            stop=stop,
            wait=lambda state: backoff(state.attempt_number + 1),
            retry=retry_if_exception(is_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except BaseException as exc:
            if not is_transient(exc):
                raise
            attempts = retrying.statistics.get("attempt_number", self.attempts - 1) + 1
            raise give_up(exc, attempts, time.monotonic() - started) from exc
