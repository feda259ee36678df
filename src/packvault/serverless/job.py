"""What one invocation of the scheduled job should do, from the environment and the event.

The environment is the job's configuration (set by ``terraform/modules/scheduled-backup``); the event may
override any of it, which is how one function serves both its regular schedule and a one-off invocation
(``{"action": "compact"}``, or ``{"action": "extract", "archive": ..., "target": "s3://bucket/prefix"}``).
Everything is parsed and validated here, before the repository is opened,
so a typo in the configuration fails in milliseconds with a clear message rather than after the KDF.

Archive names are ``{prefix}-{period stamp}``: a run that stopped at its deadline and the run that resumes
it compute the same name, and an existing archive of that name means "this period is done".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ..errors import UsageError
from ..maintenance.retention import RetentionPolicy
from ..units import parse_duration

ACTIONS = ("backup", "prune", "compact", "maintenance", "extract")
RESTORE_TIERS = ("bulk", "standard", "expedited")
PERIODS = ("hourly", "daily", "weekly", "monthly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TRUE = {"1", "true", "yes", "on", "always"}
_FALSE = {"", "0", "false", "no", "off", "never"}
_POLICY_KEYS = ("keep_last", "keep_within", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")
_NAME_RE = re.compile(r"^[^/.][^/]*$")


@dataclass(frozen=True)
class Job:
    action: str
    repository: str
    sources: tuple[str, ...]
    excludes: tuple[str, ...]
    prefix: str
    period: str
    when: datetime  # the scheduled time (UTC) the archive's period is taken from
    archive: str
    prune: RetentionPolicy | None
    compact: str  # "always", "never", or comma-separated weekdays ("sun", "mon,thu")
    compact_threshold: float
    compact_min_age: str
    # S3 Object Lock: the mode and retention the job writes with (as the location options object_lock= and
    # retention=; the repository's config must agree on the mode), and the period compact's retention
    # extension gives live objects (None: the repository's retention)
    object_lock: str | None = None
    retention: str | None = None
    retention_extend: float | None = None
    # action "extract": what to restore where, and how cold data packs are restored
    target: str | None = None
    paths: tuple[str, ...] = ()
    restore_tier: str = "standard"
    restore_days: int = 3

    def s3_options(self) -> dict[str, str]:
        """The location options the job adds to the repository's URL (Object Lock, when configured)."""
        if not self.object_lock:
            return {}
        return {"object_lock": self.object_lock, "retention": self.retention or ""}

    @property
    def does_backup(self) -> bool:
        return self.action == "backup" and bool(self.sources)

    def compact_due(self) -> bool:
        """Is compaction part of this run?  An explicit compact/maintenance action always is."""
        if self.action in ("compact", "maintenance"):
            return True
        if self.action in ("prune", "extract") or self.compact == "never":
            return False
        return self.compact == "always" or WEEKDAYS[self.when.weekday()] in self.compact.split(",")

    def prune_due(self) -> bool:
        return self.prune is not None and self.action in ("backup", "prune", "maintenance")

    def describe(self) -> dict:
        described = {
            "action": self.action,
            "repository": _redact(self.repository),
            "sources": [_redact(s) for s in self.sources],
            "archive": self.archive if self.does_backup or self.action == "extract" else None,
            "retention": bool(self.prune),
            "compact_schedule": self.compact,
        }
        if self.object_lock:
            described["object_lock"] = self.object_lock
        if self.action == "extract":
            described["target"] = _redact(self.target or "")
        return described


def _redact(url: str) -> str:
    """Locations go into logs; a query string could carry a profile name or endpoint, never secrets, but
    user:password@ in an endpoint would be one, so anything that looks like it is cut."""
    return re.sub(r"//[^/@?]*@", "//***@", url)


def _pick(event: Mapping, env: Mapping[str, str], key: str, var: str, default=None):
    if key in event and event[key] is not None:
        return event[key]
    value = env.get(var)
    return default if value is None else value


def parse_list(value, what: str) -> tuple[str, ...]:
    """A JSON list, or a comma-separated string (the Terraform module writes JSON)."""
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{what} is not a valid JSON list: {exc}") from None
        else:
            return tuple(part.strip() for part in text.split(",") if part.strip())
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{what} must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def parse_policy(value) -> RetentionPolicy | None:
    """``{"keep_daily": 7, "keep_within": "2d"}`` (JSON text or a dict) -> RetentionPolicy; empty -> None."""
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise UsageError(f"PACKVAULT_PRUNE is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError('the retention policy must be a JSON object such as {"keep_daily": 7}')
    fields = {}
    for raw_key, raw in value.items():
        key = raw_key.replace("-", "_")
        if key not in _POLICY_KEYS:
            raise UsageError(f"unknown retention rule {raw_key!r}", hint=f"use {', '.join(_POLICY_KEYS)}")
        if key == "keep_within":
            fields[key] = parse_duration(str(raw), what=raw_key)
        else:
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise UsageError(f"{raw_key} must be a whole number, not {raw!r}")
            fields[key] = raw
    policy = RetentionPolicy(**fields)
    if policy.is_empty():
        return None
    return policy


def parse_compact(value) -> str:
    if isinstance(value, bool):
        return "always" if value else "never"
    text = str(value or "").strip().lower()
    if text in _TRUE:
        return "always"
    if text in _FALSE:
        return "never"
    days = [d.strip()[:3] for d in text.split(",") if d.strip()]
    if not days or any(d not in WEEKDAYS for d in days):
        raise UsageError(
            f"PACKVAULT_COMPACT={value!r} is not understood",
            hint="use true, false, or weekdays such as 'sun' or 'mon,thu'",
        )
    return ",".join(days)


def parse_when(value) -> datetime:
    if value in (None, ""):
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"event time {value!r} is not an ISO 8601 time") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def period_stamp(when: datetime, period: str) -> str:
    """The name part shared by every run of one period.  Weekly uses the Monday's date (not ``2026-W47``),
    so that ``prune --group-by prefix`` still recognises the trailing timestamp."""
    if period == "hourly":
        return when.strftime("%Y-%m-%dT%H")
    if period == "daily":
        return when.strftime("%Y-%m-%d")
    if period == "weekly":
        return (when - timedelta(days=when.weekday())).strftime("%Y-%m-%d")
    return when.strftime("%Y-%m")


def load_job(event: Mapping | None, env: Mapping[str, str] = os.environ) -> Job:
    event = dict(event or {})
    action = str(event.get("action") or "backup").lower()
    if action not in ACTIONS:
        raise UsageError(f"unknown action {action!r}", hint=f"use one of {', '.join(ACTIONS)}")
    if action == "extract" and not event.get("archive"):
        raise UsageError('an "extract" job needs "archive" (the archive name) and "target" (s3://bucket/prefix)')
    repository = str(_pick(event, env, "repository", "PACKVAULT_REPO", "")).strip()
    if not repository:
        raise UsageError("no repository", hint="set PACKVAULT_REPO (or 'repository' in the event)")
    sources = parse_list(_pick(event, env, "sources", "PACKVAULT_SOURCES"), "PACKVAULT_SOURCES")
    excludes = parse_list(_pick(event, env, "excludes", "PACKVAULT_EXCLUDES"), "PACKVAULT_EXCLUDES")
    default_prefix = event.get("job") or env.get("AWS_LAMBDA_FUNCTION_NAME") or "packvault"
    prefix = str(_pick(event, env, "prefix", "PACKVAULT_ARCHIVE_PREFIX", default_prefix))
    period = str(_pick(event, env, "period", "PACKVAULT_ARCHIVE_PERIOD", "daily")).lower()
    if period not in PERIODS:
        raise UsageError(f"unknown archive period {period!r}", hint=f"use one of {', '.join(PERIODS)}")
    when = parse_when(event.get("time"))
    archive = str(event.get("archive") or f"{prefix}-{period_stamp(when, period)}")
    if not _NAME_RE.match(archive):
        raise UsageError(f"invalid archive name {archive!r}", hint="no '/' and no leading '.'")
    try:
        threshold = float(_pick(event, env, "compact_threshold", "PACKVAULT_COMPACT_THRESHOLD", 10.0))
    except (TypeError, ValueError):
        raise UsageError("PACKVAULT_COMPACT_THRESHOLD must be a number (percent)") from None
    return Job(
        action=action,
        repository=repository,
        sources=sources,
        excludes=excludes,
        prefix=prefix,
        period=period,
        when=when,
        archive=archive,
        prune=parse_policy(_pick(event, env, "prune", "PACKVAULT_PRUNE")),
        compact=parse_compact(_pick(event, env, "compact", "PACKVAULT_COMPACT", "")),
        compact_threshold=threshold,
        compact_min_age=str(_pick(event, env, "compact_min_age", "PACKVAULT_COMPACT_MIN_AGE", "2h")),
        **_object_lock(event, env),
        **(_extract(event) if action == "extract" else {}),
    )


def _object_lock(event: Mapping, env: Mapping[str, str]) -> dict:
    """``PACKVAULT_OBJECT_LOCK`` (governance|compliance) with ``PACKVAULT_RETENTION`` (both or neither), and
    ``PACKVAULT_RETENTION_EXTEND`` (a duration), checked here so that a typo fails before the KDF."""
    mode = str(_pick(event, env, "object_lock", "PACKVAULT_OBJECT_LOCK", "")).strip().lower() or None
    retention = str(_pick(event, env, "retention", "PACKVAULT_RETENTION", "")).strip() or None
    extend = str(_pick(event, env, "retention_extend", "PACKVAULT_RETENTION_EXTEND", "")).strip() or None
    if mode is not None and mode not in ("governance", "compliance"):
        raise UsageError(f"PACKVAULT_OBJECT_LOCK={mode!r} is not a mode", hint="use governance or compliance")
    if (mode is None) != (retention is None):
        raise UsageError("PACKVAULT_OBJECT_LOCK and PACKVAULT_RETENTION go together", hint="set both, or neither")
    if retention is not None:
        parse_duration(retention, what="PACKVAULT_RETENTION")
    period = parse_duration(extend, what="PACKVAULT_RETENTION_EXTEND").total_seconds() if extend else None
    return {"object_lock": mode, "retention": retention, "retention_extend": period}


def _extract(event: Mapping) -> dict:
    """The fields of an extract job: only from the event (a one-off invocation, not a schedule)."""
    target = str(event.get("target") or "").strip()
    if not target.startswith("s3://"):
        raise UsageError(
            'an "extract" job needs "target": "s3://bucket/prefix"', hint="a function has no directory to restore to"
        )
    tier = str(event.get("restore_tier") or "standard").lower()
    if tier not in RESTORE_TIERS:
        raise UsageError(f"unknown restore tier {tier!r}", hint=f"use one of {', '.join(RESTORE_TIERS)}")
    days = event.get("restore_days", 3)
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise UsageError(f"restore_days must be a whole number of days (at least 1), not {days!r}")
    return {
        "target": target,
        "paths": parse_list(event.get("paths"), "paths"),
        "restore_tier": tier,
        "restore_days": days,
    }
