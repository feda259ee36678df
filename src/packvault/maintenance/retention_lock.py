"""Extending the S3 Object Lock retention of everything still live (``packvault retention extend``, and
the last step of ``compact``).

Not to be confused with ``retention.py``, prune's policy of which archives to keep.

Every object gets its retention when it is written (``storage/s3/writes.py``).  A pack written a year ago
and still referenced by today's archives would lose its protection when that retention runs out; this step
gives each live object (``repository/object_lock.py``) a new retain-until date of now + ``period`` once less
than ``renew_below`` of its retention is left.  Objects no longer live are left to run out, so compact can
collect them.

Cost: one HEAD per live object per run (to read the current date; a GET-class request), and one
PutObjectRetention (a PUT-class request) per live object per extension, that is, per ``period -
renew_below``.  With the defaults (period = the repository's retention, renew below half of it) a run every
day extends each object once every half period: for 30 d, every live object costs one PUT per 15 days.
Sizing: N live objects (about repository size / pack size, plus archives and fragments) cost
N / (period - renew_below) PUT requests per day; a longer period means fewer requests but objects that
stay undeletable (and billed) that much longer after they died.  The runs must come more often than
``renew_below``, or an object can run out between two of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ..errors import UsageError
from ..repository.repository import Repository


@dataclass
class RetentionReport:
    mode: str = ""
    objects_live: int = 0
    objects_extended: int = 0
    objects_current: int = 0  # enough retention left: not touched
    retain_until: str = ""  # the date the extended objects got
    earliest_until: str = ""  # the earliest retain-until date of a live object after this run
    dry_run: bool = False
    requests: dict = field(default_factory=dict)
    duration: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class RetentionOptions:
    period: float | None = None  # seconds; None: the repository's retention
    renew_below: float | None = None  # seconds; None: half the period
    dry_run: bool = False


def extend_retention(repo: Repository, opts: RetentionOptions, *, now: datetime | None = None) -> RetentionReport:
    """Give every live object at least ``now + period`` once less than ``renew_below`` is left (module doc)."""
    config = repo.config
    if config is None or not config.object_lock:
        raise UsageError(
            f"{repo.location} has no Object Lock", hint="only a repository created with --object-lock has retention"
        )
    started = time.monotonic()
    before = repo.request_stats()
    period = timedelta(seconds=opts.period if opts.period is not None else config.retention_seconds)
    renew_below = timedelta(seconds=opts.renew_below) if opts.renew_below is not None else period / 2
    if renew_below > period:
        raise UsageError("--renew-below must not be longer than the retention period")
    now = now or datetime.now(UTC)
    target = now + period
    report = RetentionReport(mode=config.object_lock, dry_run=opts.dry_run, retain_until=target.isoformat())
    earliest: datetime | None = None
    for name in repo.live_object_names():
        report.objects_live += 1
        current = repo.object_retained_until(name)
        if current is not None and current - now >= renew_below:
            report.objects_current += 1
            kept = current
        else:
            report.objects_extended += 1
            if not opts.dry_run:
                repo.retain_object_until(name, target)
            kept = target
        earliest = kept if earliest is None or kept < earliest else earliest
    report.earliest_until = earliest.isoformat() if earliest is not None else ""
    after = repo.request_stats()
    report.requests = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    report.duration = time.monotonic() - started
    return report
