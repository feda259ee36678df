"""Retention policy for ``packvault prune``: which archives to keep, and why.

This module is pure: it takes archive summaries, a policy and the current time, and returns one
``Decision`` per archive.  It never reads or writes the repository, so every rule can be tested with
plain data, and ``--dry-run`` shows exactly what a real run would do.  The semantics are documented
for users in ``docs/prune.md``; the short version:

* Archives whose name does not match ``match`` (``fnmatch``) are left out of the result entirely:
  prune never touches them and they never occupy a slot of any rule.
* Archives are grouped by any subset of ``("host", "paths", "prefix")``, by default by host and backed-up
  paths (restic's grouping: one machine's backups of one set of paths form one series, whatever the
  archives are called); every group is judged on its own.
* Inside a group, archives are ordered newest first; equal times are ordered by id (smaller id
  first), so the outcome never depends on the order the caller listed them in.
* Rules are independent (each looks at the whole group, none consumes archives for another), and an
  archive kept by several rules lists every reason.  The kept set of a combined policy is therefore
  exactly the union of what each rule would keep alone.
* Bucketed rules (hourly ... yearly) keep the newest archive of each of the N most recent periods
  that contain an archive; empty periods are skipped, not counted.  Periods are calendar periods in
  the local time of ``tz``, so a day with a DST change is still one day, and the repeated hour of a
  fall-back night is two hours.
* Archives dated after ``now`` are always kept ("in the future") and take no part in the rules, so a
  client with a fast clock cannot push real archives out of their slots.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from packvault.errors import UsageError

__all__ = [
    "DEFAULT_GROUP_BY",
    "GROUP_KEYS",
    "ArchiveSummary",
    "Decision",
    "PolicyError",
    "RetentionPolicy",
    "archive_prefix",
    "paths_key",
    "format_duration",
    "plan_prune",
]

GROUP_KEYS = ("host", "paths", "prefix")
"""The attributes archives can be grouped by (``--group-by``)."""

DEFAULT_GROUP_BY = ("host", "paths")
"""restic's default.  Grouping by name prefix (the old default) put archives named ``a1`` .. ``a4`` in four
groups of one, so ``--keep-last 2`` kept all four; host and paths are recorded by ``create`` itself."""

REASON_FUTURE = "in the future"


class PolicyError(UsageError, ValueError):
    """An unusable retention policy or argument.

    It is a ``UsageError`` so the CLI prints one line and exits with the usage code, and a
    ``ValueError`` because that is what a caller of a pure function expects for a bad argument.
    """


@dataclass(frozen=True)
class ArchiveSummary:
    """What prune needs to know about one archive (the lead's archive listing fills these in)."""

    id: str
    """Hex archive id; the final tie-break between archives with the same time."""
    name: str
    time: datetime
    """Archive start time; must be timezone-aware (the repository stores UTC)."""
    host: str
    paths: tuple[str, ...] = ()
    """The paths the archive backed up, as given to ``create``; their order and repetitions do not matter."""


@dataclass(frozen=True)
class RetentionPolicy:
    """How many archives of each kind to keep.  A zero count / ``None`` means the rule is off."""

    keep_last: int = 0
    keep_within: timedelta | None = None
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0

    def __post_init__(self) -> None:
        # Checked here rather than in plan_prune so a bad policy fails when it is built from the
        # command line, before the repository is even opened.
        for field_name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"):
            value = getattr(self, field_name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise PolicyError(f"{field_name.replace('_', '-')} must be a whole number, not {value!r}")
            if value < 0:
                raise PolicyError(f"{field_name.replace('_', '-')} must not be negative (got {value})")
        if self.keep_within is not None and self.keep_within <= timedelta(0):
            raise PolicyError(f"keep-within must be a positive duration (got {self.keep_within})")

    def is_empty(self) -> bool:
        """True when no rule is switched on, i.e. the policy would keep nothing at all."""
        return self.keep_within is None and not self.has_count_rule()

    def has_count_rule(self) -> bool:
        """True when some rule keeps a number of archives (everything but keep-within).

        Such a policy always keeps at least one archive of every non-empty group; only a policy made of
        keep-within alone can empty a group, and then only because the user asked for exactly that.
        """
        return any(
            (self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly, self.keep_monthly, self.keep_yearly)
        )


@dataclass(frozen=True)
class Decision:
    """The verdict on one archive: kept when at least one rule names it."""

    archive: ArchiveSummary
    keep: bool
    reasons: tuple[str, ...]
    """Every rule that keeps the archive, e.g. ``("last #1", "daily #1")``; empty when it is pruned."""
    group: tuple[str, ...]
    """The group key, one value per ``group_by`` entry in that order (``()`` for a single group)."""


# --- durations -----------------------------------------------------------------------------------


def format_duration(duration: timedelta) -> str:
    """Render a duration compactly for a reason text: ``2d``, ``36H``, ``186d`` (from ``6m``).

    Whole days print as days, other whole hours as hours; anything finer falls back to seconds so the
    text is never wrong.  The result parses back with ``packvault.units.parse_duration``.
    """
    seconds = duration.total_seconds()
    if seconds % 3600:
        return f"{seconds:g}s"
    hours = int(seconds) // 3600
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}H"


# --- grouping ------------------------------------------------------------------------------------

# A trailing "timestamp or counter": it starts with an ASCII digit at a word boundary (start of the
# name or right after a character that is neither letter nor digit) and runs to the end over digits,
# separators (- _ . : + space), a 'T' between digits and a final 'Z' after a digit.
_SUFFIX_RE = re.compile(r"(?<![^\W_])[0-9](?:[0-9\-_.:+ ]|(?<=[0-9])T(?=[0-9])|(?<=[0-9])Z$)*$")


def archive_prefix(name: str) -> str:
    """The part of an archive name used by ``--group-by prefix``.

    Rule: drop the trailing timestamp or counter, keep everything before it including the separator.
    The dropped part must begin at a word boundary, so a digit glued to a word stays part of the
    prefix: ``laptop-2026-11-20T10:00`` -> ``laptop-``, ``db_42`` -> ``db_``, ``web01-2026-11-20`` ->
    ``web01-``, but ``server2`` -> ``server2`` and ``backup20261120`` -> ``backup20261120``.
    A name that is only a timestamp has the empty prefix.
    """
    match = _SUFFIX_RE.search(name)
    return name if match is None else name[: match.start()]


def paths_key(paths: Sequence[str]) -> str:
    """The ``paths`` group value: the set of paths, sorted, as a JSON list (exact, and readable in --list)."""
    return json.dumps(sorted(set(paths)), ensure_ascii=False)


def _group_key(archive: ArchiveSummary, group_by: Sequence[str]) -> tuple[str, ...]:
    values = {"host": lambda: archive.host, "paths": lambda: paths_key(archive.paths)}
    return tuple(values[key]() if key in values else archive_prefix(archive.name) for key in group_by)


def _check_group_by(group_by: Sequence[str]) -> tuple[str, ...]:
    if isinstance(group_by, str):
        # A bare string would be iterated letter by letter; split it the way the CLI option is written.
        group_by = [part.strip() for part in group_by.split(",") if part.strip()]
    keys = tuple(group_by)
    for key in keys:
        if key not in GROUP_KEYS:
            raise PolicyError(f"cannot group by {key!r}: choose from {', '.join(GROUP_KEYS)}")
    if len(set(keys)) != len(keys):
        raise PolicyError(f"group-by lists a key twice: {', '.join(keys)}")
    return keys


# --- periods -------------------------------------------------------------------------------------
# Each function maps a local (tz-converted) time to a key naming its calendar period.  Keys only need
# to be equal for the same period: plan_prune walks archives newest first, so the first archive met in
# a period is its newest, and the first N distinct keys met are the N most recent periods.


def _hour_period(local: datetime) -> Hashable:
    # The UTC offset tells the two 01:xx hours of a fall-back night apart; for every other hour it is
    # constant and changes nothing.
    return (local.date(), local.hour, local.utcoffset())


def _day_period(local: datetime) -> Hashable:
    return local.date()


def _week_period(local: datetime) -> Hashable:
    iso = local.isocalendar()
    return (iso.year, iso.week)


def _month_period(local: datetime) -> Hashable:
    return (local.year, local.month)


def _year_period(local: datetime) -> Hashable:
    return local.year


def _bucket_rules(policy: RetentionPolicy) -> list[tuple[int, str, Callable[[datetime], Hashable]]]:
    """(count, reason label, period function) for each calendar rule, in the order reasons are listed."""
    return [
        (policy.keep_hourly, "hourly", _hour_period),
        (policy.keep_daily, "daily", _day_period),
        (policy.keep_weekly, "weekly", _week_period),
        (policy.keep_monthly, "monthly", _month_period),
        (policy.keep_yearly, "yearly", _year_period),
    ]


def _to_local(moment: datetime, tz: tzinfo | None) -> datetime:
    # astimezone() without an argument uses the system zone's rules *for that instant*, so DST is
    # right for every archive; a fixed offset taken once from "now" would be wrong half the year.
    return moment.astimezone(tz) if tz is not None else moment.astimezone()


# --- the plan ------------------------------------------------------------------------------------


def _utc(moment: datetime, what: str) -> datetime:
    """The same instant in UTC.

    Python compares and subtracts two datetimes sharing one tzinfo object by wall clock, ignoring
    ``fold``, so 01:30 before and after a fall-back would compare equal.  Every comparison in this
    module is therefore done on UTC copies.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise PolicyError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class _Entry:
    archive: ArchiveSummary
    utc: datetime

    def newest_first(self) -> tuple[timedelta, str]:
        # A negated time sorts newest first (timedelta keeps microseconds exact, unlike a float
        # timestamp); ties go to the smaller id so the order is total and independent of input order.
        return (_EPOCH - self.utc, self.archive.id)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _judge_group(
    members: list[_Entry], policy: RetentionPolicy, now: datetime, tz: tzinfo | None
) -> dict[str, list[str]]:
    """Reasons per archive id for one group; ``members`` are sorted newest first, ``now`` is UTC."""
    reasons: dict[str, list[str]] = {entry.archive.id: [] for entry in members}
    candidates: list[_Entry] = []
    for entry in members:
        if entry.utc > now:
            reasons[entry.archive.id].append(REASON_FUTURE)
        else:
            candidates.append(entry)

    for rank, entry in enumerate(candidates[: policy.keep_last], start=1):
        reasons[entry.archive.id].append(f"last #{rank}")

    if policy.keep_within is not None:
        cutoff = now - policy.keep_within
        label = f"within {format_duration(policy.keep_within)}"
        for entry in candidates:
            if entry.utc >= cutoff:
                reasons[entry.archive.id].append(label)

    rules = [rule for rule in _bucket_rules(policy) if rule[0]]
    if rules:
        local_times = [_to_local(entry.utc, tz) for entry in candidates]
        for count, label, period_of in rules:
            seen: set[Hashable] = set()
            for entry, local in zip(candidates, local_times, strict=True):
                period = period_of(local)
                if period in seen:
                    continue
                seen.add(period)
                reasons[entry.archive.id].append(f"{label} #{len(seen)}")
                if len(seen) == count:
                    break
    return reasons


def plan_prune(
    archives: Sequence[ArchiveSummary],
    policy: RetentionPolicy,
    *,
    now: datetime,
    match: str | None = None,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    tz: tzinfo | None = None,
) -> list[Decision]:
    """Decide, for every archive matching ``match``, whether prune keeps it and by which rules.

    Returns one ``Decision`` per matching archive, ordered by group key and, inside a group, newest
    first (ties by id).  Archives not matching ``match`` (``fnmatch``, case-sensitive) are not in the
    result: prune leaves them alone.  ``tz`` is the zone whose calendar defines hours, days, weeks,
    months and years (default: the system's local zone).

    Raises ``PolicyError`` (a ``ValueError``) for an empty policy -- refusing to delete everything is
    the one safety net a typo in a cron job needs -- and for naive times, duplicate ids or an unknown
    group key.
    """
    if policy.is_empty():
        raise PolicyError(
            "refusing to prune with an empty retention policy (it would delete every archive)",
            hint="give at least one --keep-* option",
        )
    now_utc = _utc(now, "now")
    keys = _check_group_by(group_by)

    groups: dict[tuple[str, ...], list[_Entry]] = {}
    seen_ids: set[str] = set()
    for archive in archives:
        if archive.id in seen_ids:
            raise PolicyError(f"archive id {archive.id} is listed twice")
        seen_ids.add(archive.id)
        entry = _Entry(archive, _utc(archive.time, f"time of archive {archive.name!r}"))
        if match is not None and not fnmatch.fnmatchcase(archive.name, match):
            continue
        groups.setdefault(_group_key(archive, keys), []).append(entry)

    decisions: list[Decision] = []
    for group in sorted(groups):
        members = sorted(groups[group], key=_Entry.newest_first)
        reasons = _judge_group(members, policy, now_utc, tz)
        kept = 0
        for entry in members:
            why = tuple(reasons[entry.archive.id])
            kept += bool(why)
            decisions.append(Decision(archive=entry.archive, keep=bool(why), reasons=why, group=group))
        # By construction any count rule keeps the group's newest archive; if that ever fails, stop
        # before the caller deletes a whole group the user did not ask to lose.
        if kept == 0 and policy.has_count_rule():
            raise AssertionError(f"retention bug: policy {policy} would delete all of group {group}")
    return decisions
