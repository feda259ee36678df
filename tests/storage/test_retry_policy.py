"""The retry bounds, counted exactly: attempts, on_retry calls and what give_up is told."""

from __future__ import annotations

import time

import pytest

from packvault.storage.retry import RetryPolicy


class Transient(Exception):
    pass


class GaveUp(Exception):
    pass


def _run(policy: RetryPolicy, outcomes: list):
    """Call with ``outcomes`` consumed per attempt (an exception instance is raised); returns the log."""
    log = {"calls": 0, "retries": 0, "gave_up": None}

    def fn():
        log["calls"] += 1
        outcome = outcomes.pop(0) if outcomes else Transient("again")
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def give_up(exc, attempts, elapsed):
        log["gave_up"] = attempts
        return GaveUp(f"{exc} after {attempts}")

    def on_retry(exc):
        log["retries"] += 1

    try:
        log["result"] = policy.call(
            fn, is_transient=lambda e: isinstance(e, Transient), give_up=give_up, on_retry=on_retry
        )
    except GaveUp:
        log["result"] = "gave up"
    return log


FAST = {"initial_wait": 0.001, "max_wait": 0.002}


def test_first_attempt_works():
    log = _run(RetryPolicy(attempts=5, **FAST), ["ok"])
    assert (log["calls"], log["retries"], log["result"]) == (1, 0, "ok")


def test_transient_failures_then_success():
    log = _run(RetryPolicy(attempts=5, **FAST), [Transient(), Transient(), "ok"])
    assert (log["calls"], log["retries"], log["result"]) == (3, 2, "ok")


@pytest.mark.parametrize("attempts", [1, 2, 3, 6])
def test_always_failing_stops_at_the_attempt_bound(attempts):
    log = _run(RetryPolicy(attempts=attempts, **FAST), [])
    assert (log["calls"], log["retries"], log["gave_up"], log["result"]) == (
        attempts,
        attempts - 1,
        attempts,
        "gave up",
    )


def test_a_permanent_error_is_not_retried():
    with pytest.raises(ValueError):
        _run(RetryPolicy(attempts=5, **FAST), [Transient(), ValueError("no")])


def test_the_time_bound_ends_retries_early():
    started = time.monotonic()
    log = _run(RetryPolicy(attempts=1000, max_seconds=0.3, initial_wait=0.05, max_wait=0.1), [])
    assert log["result"] == "gave up"
    assert 2 <= log["calls"] < 1000 and log["gave_up"] == log["calls"]
    assert time.monotonic() - started < 3.0  # 1000 attempts would take over a minute
