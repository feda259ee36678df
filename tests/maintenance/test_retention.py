"""Tests for the prune retention policy (packvault.maintenance.retention).

The table-driven cases name archives by short labels and state the complete expected outcome: every
kept archive with all its reasons; any archive not listed must be pruned.  Times are written with an
explicit UTC offset so each case reads as wall-clock time in the zone it is about.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packvault.errors import UsageError
from packvault.maintenance.retention import (
    ArchiveSummary,
    Decision,
    PolicyError,
    RetentionPolicy,
    archive_prefix,
    format_duration,
    plan_prune,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NOW = "2026-11-20T12:00:00+00:00"


def label_id(label: str) -> str:
    """A hex id whose sort order is the label's, so tie-break expectations read naturally."""
    return label.encode().hex()


def arc(label: str, when: str | datetime, *, host: str = "laptop", name: str | None = None) -> ArchiveSummary:
    moment = when if isinstance(when, datetime) else datetime.fromisoformat(when)
    return ArchiveSummary(id=label_id(label), name=name or f"{host}-{moment.isoformat()}", time=moment, host=host)


@dataclass
class Case:
    archives: list[tuple[str, str | datetime]]
    policy: RetentionPolicy
    kept: dict[str, tuple[str, ...]]
    now: str = NOW
    tz: tzinfo = UTC


def run(case: Case) -> dict[str, tuple[str, ...]]:
    archives = [arc(label, when) for label, when in case.archives]
    decisions = plan_prune(archives, case.policy, now=datetime.fromisoformat(case.now), tz=case.tz)
    labels = {label_id(label): label for label, _ in case.archives}
    assert sorted(labels[d.archive.id] for d in decisions) == sorted(labels.values()), "each archive decided once"
    for d in decisions:
        assert d.keep == bool(d.reasons)
    return {labels[d.archive.id]: d.reasons for d in decisions if d.keep}


CASES = [
    # --- keep-last -----------------------------------------------------------------------------
    pytest.param(
        Case(
            [("a", "2026-11-20T10:00+00:00"), ("b", "2026-11-19T10:00+00:00"), ("c", "2026-11-18T10:00+00:00"),
             ("d", "2026-11-17T10:00+00:00")],
            RetentionPolicy(keep_last=2),
            {"a": ("last #1",), "b": ("last #2",)},
        ),
        id="last-2-of-4",
    ),
    pytest.param(
        Case(
            [("a", "2026-11-20T10:00+00:00"), ("b", "2026-11-19T10:00+00:00")],
            RetentionPolicy(keep_last=10),
            {"a": ("last #1",), "b": ("last #2",)},
        ),
        id="last-more-than-there-are",
    ),
    # --- keep-within ---------------------------------------------------------------------------
    pytest.param(
        Case(
            [("recent", "2026-11-20T10:00+00:00"), ("edge", "2026-11-18T12:00+00:00"),
             ("just-out", "2026-11-18T11:59+00:00"), ("old", "2026-10-01T00:00+00:00")],
            RetentionPolicy(keep_within=timedelta(days=2)),
            {"recent": ("within 2d",), "edge": ("within 2d",)},
        ),
        id="within-2d-boundary-inclusive",
    ),
    pytest.param(
        Case(
            [("a", "2026-11-20T00:00+00:00"), ("b", "2026-11-19T00:30+00:00"), ("c", "2026-11-18T23:59+00:00")],
            RetentionPolicy(keep_within=timedelta(hours=36)),
            {"a": ("within 36H",), "b": ("within 36H",)},
        ),
        id="within-36H",
    ),
    pytest.param(
        Case(
            [("a", "2026-10-01T00:00+00:00"), ("b", "2026-09-01T00:00+00:00")],
            RetentionPolicy(keep_within=timedelta(days=7)),
            {},
        ),
        id="within-alone-may-empty-a-group",
    ),
    # --- hourly --------------------------------------------------------------------------------
    pytest.param(
        Case(
            [("10:50", "2026-11-20T10:50+00:00"), ("10:10", "2026-11-20T10:10+00:00"),
             ("09:59", "2026-11-20T09:59+00:00"), ("09:00", "2026-11-20T09:00+00:00"),
             ("07:30", "2026-11-20T07:30+00:00"), ("06:00", "2026-11-20T06:00+00:00")],
            RetentionPolicy(keep_hourly=3),
            {"10:50": ("hourly #1",), "09:59": ("hourly #2",), "07:30": ("hourly #3",)},
        ),
        id="hourly-newest-per-hour-gap-at-08",
    ),
    # --- daily ---------------------------------------------------------------------------------
    pytest.param(
        Case(
            [("20-late", "2026-11-20T10:00+00:00"), ("20-early", "2026-11-20T08:00+00:00"),
             ("18-late", "2026-11-18T23:00+00:00"), ("18-early", "2026-11-18T01:00+00:00"),
             ("15", "2026-11-15T12:00+00:00"), ("14", "2026-11-14T12:00+00:00")],
            RetentionPolicy(keep_daily=3),
            {"20-late": ("daily #1",), "18-late": ("daily #2",), "15": ("daily #3",)},
        ),
        id="daily-gaps-do-not-count",
    ),
    # --- weekly (ISO weeks, Monday first) --------------------------------------------------------
    pytest.param(
        Case(
            [("fri-w47", "2026-11-20T10:00+00:00"), ("mon-w47", "2026-11-16T00:30+00:00"),
             ("sun-w46", "2026-11-15T23:30+00:00"), ("mon-w45", "2026-11-02T10:00+00:00")],
            RetentionPolicy(keep_weekly=2),
            {"fri-w47": ("weekly #1",), "sun-w46": ("weekly #2",)},
        ),
        id="weekly-sunday-ends-iso-week",
    ),
    pytest.param(
        Case(
            [("2027-w01", "2027-01-04T10:00+00:00"), ("sun-w53", "2027-01-03T10:00+00:00"),
             ("jan1-w53", "2027-01-01T10:00+00:00"), ("dec31-w53", "2026-12-31T10:00+00:00"),
             ("mon-w53", "2026-12-28T10:00+00:00"), ("sun-w52", "2026-12-27T10:00+00:00"),
             ("w51", "2026-12-20T10:00+00:00")],
            RetentionPolicy(keep_weekly=3),
            {"2027-w01": ("weekly #1",), "sun-w53": ("weekly #2",), "sun-w52": ("weekly #3",)},
            now="2027-01-05T00:00+00:00",
        ),
        id="weekly-iso-week-53-spans-new-year",
    ),
    pytest.param(
        Case(
            [("sun-2025w01", "2025-01-05T10:00+00:00"), ("mon-2025w01", "2024-12-30T10:00+00:00"),
             ("sun-2024w52", "2024-12-29T10:00+00:00")],
            RetentionPolicy(keep_weekly=2),
            {"sun-2025w01": ("weekly #1",), "sun-2024w52": ("weekly #2",)},
            now="2025-01-06T00:00+00:00",
        ),
        id="weekly-dec-30-belongs-to-next-iso-year",
    ),
    # --- monthly / yearly ----------------------------------------------------------------------
    pytest.param(
        Case(
            [("nov20", "2026-11-20T10:00+00:00"), ("nov1", "2026-11-01T00:00+00:00"),
             ("oct31", "2026-10-31T23:59+00:00"), ("aug15", "2026-08-15T12:00+00:00"),
             ("jul1", "2026-07-01T12:00+00:00")],
            RetentionPolicy(keep_monthly=3),
            {"nov20": ("monthly #1",), "oct31": ("monthly #2",), "aug15": ("monthly #3",)},
        ),
        id="monthly-missing-months-skipped",
    ),
    pytest.param(
        Case(
            [("jan1", "2026-01-01T00:00+00:00"), ("dec31", "2025-12-31T23:59+00:00"),
             ("jun", "2025-06-01T12:00+00:00"), ("2024", "2024-12-31T12:00+00:00")],
            RetentionPolicy(keep_yearly=2),
            {"jan1": ("yearly #1",), "dec31": ("yearly #2",)},
        ),
        id="yearly-dec31-jan1-are-different-years",
    ),
    pytest.param(
        Case(
            [("jan4", "2027-01-04T10:00+00:00"), ("jan1", "2027-01-01T10:00+00:00"),
             ("dec31", "2026-12-31T10:00+00:00"), ("dec30", "2026-12-30T10:00+00:00")],
            RetentionPolicy(keep_weekly=2, keep_yearly=2),
            {"jan4": ("weekly #1", "yearly #1"), "jan1": ("weekly #2",), "dec31": ("yearly #2",)},
            now="2027-01-05T00:00+00:00",
        ),
        id="weekly-and-yearly-disagree-across-new-year",
    ),
    # --- the zone decides the calendar -----------------------------------------------------------
    pytest.param(
        Case(
            [("jan1-berlin", "2026-12-31T23:30+00:00"), ("dec31-late", "2026-12-31T22:30+00:00"),
             ("dec31-morning", "2026-12-31T10:00+00:00")],
            RetentionPolicy(keep_daily=2, keep_yearly=2),
            {"jan1-berlin": ("daily #1", "yearly #1"), "dec31-late": ("daily #2", "yearly #2")},
            now="2027-01-02T00:00+00:00",
            tz=BERLIN,
        ),
        id="year-boundary-in-berlin",
    ),
    pytest.param(
        Case(
            [("jan1-berlin", "2026-12-31T23:30+00:00"), ("dec31-late", "2026-12-31T22:30+00:00"),
             ("dec31-morning", "2026-12-31T10:00+00:00")],
            RetentionPolicy(keep_daily=2, keep_yearly=2),
            {"jan1-berlin": ("daily #1", "yearly #1")},
            now="2027-01-02T00:00+00:00",
            tz=UTC,
        ),
        id="same-archives-all-dec31-in-utc",
    ),
    # --- DST: New York (fall back 2026-11-01 02:00 EDT -> 01:00 EST; spring forward 2026-03-08) ----
    pytest.param(
        Case(
            [("01:30-est", "2026-11-01T01:30-05:00"), ("01:10-est", "2026-11-01T01:10-05:00"),
             ("01:30-edt", "2026-11-01T01:30-04:00"), ("00:40-edt", "2026-11-01T00:40-04:00"),
             ("oct31", "2026-10-31T23:00-04:00")],
            RetentionPolicy(keep_hourly=2, keep_daily=2),
            {"01:30-est": ("hourly #1", "daily #1"), "01:30-edt": ("hourly #2",), "oct31": ("daily #2",)},
            tz=NEW_YORK,
        ),
        id="new-york-fall-back-repeat-hour-is-two-hours-one-day",
    ),
    pytest.param(
        Case(
            [("03:30-edt", "2026-03-08T03:30-04:00"), ("03:10-edt", "2026-03-08T03:10-04:00"),
             ("01:30-est", "2026-03-08T01:30-05:00"), ("00:30-est", "2026-03-08T00:30-05:00")],
            RetentionPolicy(keep_hourly=3),
            {"03:30-edt": ("hourly #1",), "01:30-est": ("hourly #2",), "00:30-est": ("hourly #3",)},
            tz=NEW_YORK,
        ),
        id="new-york-spring-forward-hours",
    ),
    pytest.param(
        Case(
            [("mar8-late", "2026-03-08T23:50-04:00"), ("mar8-early", "2026-03-08T00:10-05:00"),
             ("mar7-late", "2026-03-07T23:50-05:00")],
            RetentionPolicy(keep_daily=2),
            {"mar8-late": ("daily #1",), "mar7-late": ("daily #2",)},
            tz=NEW_YORK,
        ),
        id="new-york-spring-forward-23h-day-is-one-day",
    ),
    # --- DST: Berlin (fall back 2026-10-25 03:00 CEST -> 02:00 CET; spring forward 2026-03-29) ----
    pytest.param(
        Case(
            [("23:55-cet", "2026-10-25T23:55+01:00"), ("02:30-cet", "2026-10-25T02:30+01:00"),
             ("02:30-cest", "2026-10-25T02:30+02:00"), ("00:05-cest", "2026-10-25T00:05+02:00"),
             ("oct24", "2026-10-24T23:55+02:00")],
            RetentionPolicy(keep_hourly=3, keep_daily=2),
            {"23:55-cet": ("hourly #1", "daily #1"), "02:30-cet": ("hourly #2",), "02:30-cest": ("hourly #3",),
             "oct24": ("daily #2",)},
            tz=BERLIN,
        ),
        id="berlin-fall-back-25h-day",
    ),
    pytest.param(
        Case(
            [("23:30-cest", "2026-03-29T23:30+02:00"), ("03:45-cest", "2026-03-29T03:45+02:00"),
             ("03:15-cest", "2026-03-29T03:15+02:00"), ("01:30-cet", "2026-03-29T01:30+01:00"),
             ("00:30-cet", "2026-03-29T00:30+01:00")],
            RetentionPolicy(keep_hourly=3, keep_daily=1),
            {"23:30-cest": ("hourly #1", "daily #1"), "03:45-cest": ("hourly #2",), "01:30-cet": ("hourly #3",)},
            now="2026-04-01T00:00+00:00",
            tz=BERLIN,
        ),
        id="berlin-spring-forward-skipped-hour",
    ),
    pytest.param(
        Case(
            # Same tzinfo object on both sides of the fall-back: Python would compare these two by
            # wall clock and call them equal; the engine must order them by instant.
            [("fold1", datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=1)),
             ("fold0", datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=0))],
            RetentionPolicy(keep_last=1, keep_hourly=2),
            {"fold1": ("last #1", "hourly #1"), "fold0": ("hourly #2",)},
            tz=NEW_YORK,
        ),
        id="zoneinfo-fold-times",
    ),
    # --- combinations: rules are independent, reasons accumulate ----------------------------------
    pytest.param(
        Case(
            [("nov20-10", "2026-11-20T10:00+00:00"), ("nov20-09", "2026-11-20T09:00+00:00"),
             ("nov19", "2026-11-19T10:00+00:00"), ("nov18", "2026-11-18T10:00+00:00")],
            RetentionPolicy(keep_last=2, keep_daily=2),
            {"nov20-10": ("last #1", "daily #1"), "nov20-09": ("last #2",), "nov19": ("daily #2",)},
        ),
        id="last-and-daily-independent-not-cumulative",
    ),
    pytest.param(
        Case(
            [("nov20-10", "2026-11-20T10:00+00:00"), ("nov20-09", "2026-11-20T09:00+00:00"),
             ("nov19", "2026-11-19T10:00+00:00"), ("nov17", "2026-11-17T10:00+00:00"),
             ("oct30", "2026-10-30T10:00+00:00"), ("sep1", "2026-09-01T10:00+00:00")],
            RetentionPolicy(keep_last=1, keep_daily=3, keep_monthly=2),
            {"nov20-10": ("last #1", "daily #1", "monthly #1"), "nov19": ("daily #2",), "nov17": ("daily #3",),
             "oct30": ("monthly #2",)},
        ),
        id="last-daily-monthly",
    ),
    pytest.param(
        Case(
            [("a", "2026-11-20T10:00+00:00"), ("b", "2026-11-19T13:00+00:00"), ("c", "2026-11-19T11:00+00:00"),
             ("d", "2026-11-01T11:00+00:00")],
            RetentionPolicy(keep_within=timedelta(days=1), keep_daily=1, keep_weekly=2),
            {"a": ("within 1d", "daily #1", "weekly #1"), "b": ("within 1d",), "d": ("weekly #2",)},
        ),
        id="within-daily-weekly",
    ),
    # --- future and ties -------------------------------------------------------------------------
    pytest.param(
        Case(
            [("tomorrow", "2026-11-21T10:00+00:00"), ("today", "2026-11-20T10:00+00:00"),
             ("yesterday", "2026-11-19T10:00+00:00")],
            RetentionPolicy(keep_last=1, keep_daily=1),
            {"tomorrow": ("in the future",), "today": ("last #1", "daily #1")},
        ),
        id="future-kept-and-takes-no-slot",
    ),
    pytest.param(
        Case(
            [("b", "2026-11-20T10:00+00:00"), ("a", "2026-11-20T10:00+00:00"), ("c", "2026-11-20T10:00+00:00")],
            RetentionPolicy(keep_last=1, keep_daily=1),
            {"a": ("last #1", "daily #1")},
        ),
        id="identical-times-smallest-id-is-newest",
    ),
    pytest.param(
        Case(
            [("b", "2026-11-20T11:00+01:00"), ("a", "2026-11-20T10:00+00:00"), ("z", "2026-11-20T09:00+00:00")],
            RetentionPolicy(keep_last=2),
            {"a": ("last #1",), "b": ("last #2",)},
        ),
        id="same-instant-different-offsets-is-a-tie",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_policy_table(case: Case) -> None:
    assert run(case) == case.kept


# --- grouping and --match ------------------------------------------------------------------------

GROUP_ARCHIVES = [
    ArchiveSummary("01", "home-2026-11-20T10:00", datetime(2026, 11, 20, 10, tzinfo=UTC), "laptop"),
    ArchiveSummary("02", "home-2026-11-19T10:00", datetime(2026, 11, 19, 10, tzinfo=UTC), "laptop"),
    ArchiveSummary("03", "etc-2026-11-18T10:00", datetime(2026, 11, 18, 10, tzinfo=UTC), "laptop"),
    ArchiveSummary("04", "etc-2026-11-17T10:00", datetime(2026, 11, 17, 10, tzinfo=UTC), "laptop"),
    ArchiveSummary("05", "home-2026-11-16T10:00", datetime(2026, 11, 16, 10, tzinfo=UTC), "server"),
    ArchiveSummary("06", "home-2026-11-15T10:00", datetime(2026, 11, 15, 10, tzinfo=UTC), "server"),
]


@pytest.mark.parametrize(
    ("group_by", "match", "expected"),
    [
        pytest.param((), None, [((), "01", True), ((), "02", False), ((), "03", False), ((), "04", False),
                                ((), "05", False), ((), "06", False)], id="one-group"),
        pytest.param(("host",), None, [(("laptop",), "01", True), (("laptop",), "02", False),
                                       (("laptop",), "03", False), (("laptop",), "04", False),
                                       (("server",), "05", True), (("server",), "06", False)], id="by-host"),
        pytest.param(("prefix",), None, [(("etc-",), "03", True), (("etc-",), "04", False),
                                         (("home-",), "01", True), (("home-",), "02", False),
                                         (("home-",), "05", False), (("home-",), "06", False)], id="by-prefix"),
        pytest.param(("host", "prefix"), None, [(("laptop", "etc-"), "03", True), (("laptop", "etc-"), "04", False),
                                                (("laptop", "home-"), "01", True), (("laptop", "home-"), "02", False),
                                                (("server", "home-"), "05", True), (("server", "home-"), "06", False)],
                     id="by-host-and-prefix"),
        pytest.param(("prefix", "host"), None, [(("etc-", "laptop"), "03", True), (("etc-", "laptop"), "04", False),
                                                (("home-", "laptop"), "01", True), (("home-", "laptop"), "02", False),
                                                (("home-", "server"), "05", True), (("home-", "server"), "06", False)],
                     id="key-order-follows-group-by"),
        pytest.param((), "etc-*", [((), "03", True), ((), "04", False)], id="match-leaves-others-out"),
        pytest.param(("host",), "home-*", [(("laptop",), "01", True), (("laptop",), "02", False),
                                           (("server",), "05", True), (("server",), "06", False)],
                     id="match-then-group"),
        pytest.param((), "HOME-*", [], id="match-is-case-sensitive"),
        pytest.param("host", None, [(("laptop",), "01", True), (("laptop",), "02", False),
                                    (("laptop",), "03", False), (("laptop",), "04", False),
                                    (("server",), "05", True), (("server",), "06", False)], id="group-by-as-string"),
    ],
)
def test_grouping_and_match(group_by, match, expected) -> None:
    decisions = plan_prune(
        list(reversed(GROUP_ARCHIVES)), RetentionPolicy(keep_last=1), now=datetime.fromisoformat(NOW),
        match=match, group_by=group_by, tz=UTC,
    )
    assert [(d.group, d.archive.id, d.keep) for d in decisions] == expected


def test_default_groups_by_host_and_paths() -> None:
    # restic's grouping: the names do not matter, the machine and the backed-up paths do
    at = [datetime(2026, 11, 20 - day, 10, tzinfo=UTC) for day in range(6)]
    archives = [
        ArchiveSummary("01", "a1", at[5], "laptop", ("/home/me",)),
        ArchiveSummary("02", "a2", at[4], "laptop", ("/home/me",)),
        ArchiveSummary("03", "a3", at[3], "laptop", ("/home/me",)),
        ArchiveSummary("04", "a4", at[2], "laptop", ("/home/me",)),
        ArchiveSummary("05", "etc-1", at[1], "laptop", ("/etc", "/srv")),
        ArchiveSummary("06", "etc-2", at[0], "laptop", ("/srv", "/etc", "/srv")),  # same set of paths
        ArchiveSummary("07", "a5", at[0], "server", ("/home/me",)),
    ]
    decisions = plan_prune(archives, RetentionPolicy(keep_last=2), now=datetime.fromisoformat(NOW), tz=UTC)
    assert {d.archive.id for d in decisions if d.keep} == {"03", "04", "05", "06", "07"}
    assert {d.archive.id: d.group for d in decisions} == {
        "01": ("laptop", '["/home/me"]'),
        "02": ("laptop", '["/home/me"]'),
        "03": ("laptop", '["/home/me"]'),
        "04": ("laptop", '["/home/me"]'),
        "05": ("laptop", '["/etc", "/srv"]'),
        "06": ("laptop", '["/etc", "/srv"]'),
        "07": ("server", '["/home/me"]'),
    }


def test_names_without_a_date_are_one_series_by_default() -> None:
    # the report: "prune --keep-last 2 on archives named a1..a4 pruned nothing"
    archives = [
        ArchiveSummary(f"0{n}", f"a{n}", datetime(2026, 11, 10 + n, tzinfo=UTC), "laptop", ("/data",))
        for n in range(1, 5)
    ]
    decisions = plan_prune(archives, RetentionPolicy(keep_last=2), now=datetime.fromisoformat(NOW), tz=UTC)
    assert [(d.archive.name, d.keep) for d in decisions] == [("a4", True), ("a3", True), ("a2", False), ("a1", False)]
    # grouping by name prefix still exists, and keeps every one of them (each is its own group)
    by_prefix = plan_prune(
        archives, RetentionPolicy(keep_last=2), now=datetime.fromisoformat(NOW), tz=UTC, group_by=("prefix",)
    )
    assert all(d.keep for d in by_prefix)


def test_decision_carries_the_archive_object() -> None:
    (decision,) = plan_prune(GROUP_ARCHIVES[:1], RetentionPolicy(keep_last=1), now=datetime.fromisoformat(NOW))
    assert decision == Decision(GROUP_ARCHIVES[0], True, ("last #1",), ("laptop", "[]"))
    assert decision.archive is GROUP_ARCHIVES[0]


def test_default_tz_is_system_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    archives = [
        # Summer (EDT, -4): June 30 16:00 and 00:30 in New York, two days at a fixed -5.
        arc("summer-late", "2026-06-30T20:00+00:00"),
        arc("summer-early", "2026-06-30T04:30+00:00"),
        # Winter (EST, -5): Jan 15 05:00 and Jan 14 23:30 in New York, one day at a fixed -4.
        arc("winter-late", "2026-01-15T10:00+00:00"),
        arc("winter-early", "2026-01-15T04:30+00:00"),
    ]
    policy = RetentionPolicy(keep_daily=10)
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        decisions = plan_prune(archives, policy, now=datetime.fromisoformat(NOW))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert [d.keep for d in decisions] == [True, False, True, True]
    in_utc = plan_prune(archives, policy, now=datetime.fromisoformat(NOW), tz=UTC)
    assert [d.keep for d in in_utc] == [True, False, True, False]


def test_now_given_in_a_zone_with_fold() -> None:
    # now = the first 01:30 of the fall-back night; the archive at the second 01:30 is an hour later.
    now = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=0)
    later = ArchiveSummary("02", "x-2", datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK, fold=1), "h")
    earlier = ArchiveSummary("01", "x-1", datetime(2026, 11, 1, 1, 0, tzinfo=NEW_YORK, fold=0), "h")
    decisions = plan_prune([earlier, later], RetentionPolicy(keep_within=timedelta(hours=1)), now=now, tz=NEW_YORK)
    assert [(d.archive.id, d.reasons) for d in decisions] == [("02", ("in the future",)), ("01", ("within 1H",))]


# --- input validation ----------------------------------------------------------------------------


def test_empty_policy_is_refused() -> None:
    assert RetentionPolicy().is_empty()
    with pytest.raises(ValueError, match="empty retention policy"):
        plan_prune(GROUP_ARCHIVES, RetentionPolicy(), now=datetime.fromisoformat(NOW))
    with pytest.raises(ValueError, match="empty retention policy"):
        plan_prune([], RetentionPolicy(), now=datetime.fromisoformat(NOW))


@pytest.mark.parametrize(
    "policy",
    [RetentionPolicy(keep_last=1), RetentionPolicy(keep_within=timedelta(hours=1)), RetentionPolicy(keep_hourly=1),
     RetentionPolicy(keep_daily=1), RetentionPolicy(keep_weekly=1), RetentionPolicy(keep_monthly=1),
     RetentionPolicy(keep_yearly=1)],
)
def test_any_single_rule_makes_policy_non_empty(policy: RetentionPolicy) -> None:
    assert not policy.is_empty()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_last": -1}, "must not be negative"),
        ({"keep_daily": -3}, "must not be negative"),
        ({"keep_weekly": True}, "whole number"),
        ({"keep_monthly": 1.5}, "whole number"),
        ({"keep_within": timedelta(0)}, "positive"),
        ({"keep_within": timedelta(hours=-1)}, "positive"),
    ],
)
def test_bad_policy_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetentionPolicy(**kwargs)


def test_policy_error_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        plan_prune([], RetentionPolicy(), now=datetime.fromisoformat(NOW))
    assert issubclass(PolicyError, ValueError)


@pytest.mark.parametrize(
    ("archives", "now", "group_by", "message"),
    [
        ([ArchiveSummary("01", "x", datetime(2026, 1, 1), "h")], NOW, ("host",), "timezone-aware"),
        ([], "2026-11-20T12:00", ("host",), "timezone-aware"),
        ([GROUP_ARCHIVES[0], GROUP_ARCHIVES[0]], NOW, ("host",), "listed twice"),
        ([], NOW, ("hostname",), "cannot group by"),
        ([], NOW, ("host", "host"), "twice"),
    ],
)
def test_bad_arguments(archives, now, group_by, message) -> None:
    with pytest.raises(ValueError, match=message):
        plan_prune(archives, RetentionPolicy(keep_last=1), now=datetime.fromisoformat(now), group_by=group_by)


def test_naive_time_is_refused_even_when_not_matched() -> None:
    # A naive time is a bug in the caller; it must not hide behind --match.
    with pytest.raises(ValueError, match="timezone-aware"):
        plan_prune([ArchiveSummary("01", "x", datetime(2026, 1, 1), "h")], RetentionPolicy(keep_last=1),
                   now=datetime.fromisoformat(NOW), match="nomatch")


# --- duration labels and prefixes (the duration grammar: tests/test_units.py) ----------------------------


@pytest.mark.parametrize(
    ("duration", "text"),
    [(timedelta(days=2), "2d"), (timedelta(hours=36), "36H"), (timedelta(days=186), "186d"),
     (timedelta(minutes=90), "5400s")],
)
def test_format_duration(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


@pytest.mark.parametrize(
    ("name", "prefix"),
    [
        ("laptop-2026-11-20T10:00", "laptop-"),
        ("laptop-2026-11-20T10:00:00.123456+01:00", "laptop-"),
        ("laptop-2026-11-20T10:00:00Z", "laptop-"),
        ("laptop 2026-11-20 10:00", "laptop "),
        ("db_42", "db_"),
        ("web01-2026-11-20", "web01-"),
        ("a.b-1.2.3", "a.b-"),
        ("über-3", "über-"),
        ("server2", "server2"),
        ("backup20261120", "backup20261120"),
        ("home", "home"),
        ("db-3T", "db-3T"),
        ("2026-11-20T10:00", ""),
        ("", ""),
    ],
)
def test_archive_prefix(name: str, prefix: str) -> None:
    assert archive_prefix(name) == prefix


# --- properties ----------------------------------------------------------------------------------

ZONES = [UTC, BERLIN, NEW_YORK, ZoneInfo("Australia/Lord_Howe"), ZoneInfo("Asia/Kolkata")]
BASE = datetime(2026, 10, 20, tzinfo=UTC)  # covers both 2026 fall-back dates and a month boundary
SPAN_MINUTES = 60 * 24 * 60


@st.composite
def archive_lists(draw) -> list[ArchiveSummary]:
    # Few distinct minutes so ties, same-hour and same-day archives are common.
    minutes = st.one_of(st.integers(0, SPAN_MINUTES), st.sampled_from([0, 30, 90, 60 * 24 * 12]))
    paths = st.sampled_from([("/home",), ("/etc", "/srv"), ("/srv", "/etc"), ()])
    rows = draw(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.sampled_from(["home-", "etc-"]), minutes, paths),
                         max_size=25))
    return [
        ArchiveSummary(f"{index:04x}", f"{prefix}{index}", BASE + timedelta(minutes=offset, seconds=index % 3), host,
                       backed_up)
        for index, (host, prefix, offset, backed_up) in enumerate(rows)
    ]


counts = st.integers(0, 4)
policies = st.builds(
    RetentionPolicy,
    keep_last=counts,
    keep_within=st.one_of(st.none(), st.integers(1, 24 * 70).map(lambda hours: timedelta(hours=hours))),
    keep_hourly=counts,
    keep_daily=counts,
    keep_weekly=counts,
    keep_monthly=counts,
    keep_yearly=counts,
).filter(lambda policy: not policy.is_empty())
nows = st.integers(-60 * 24, SPAN_MINUTES + 60 * 24 * 30).map(lambda minutes: BASE + timedelta(minutes=minutes))
group_bys = st.sampled_from([(), ("host",), ("prefix",), ("host", "prefix"), ("paths",), ("host", "paths")])
RULES = ["keep_last", "keep_within", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly"]


def by_group(decisions: list[Decision]) -> dict[tuple[str, ...], list[Decision]]:
    groups: dict[tuple[str, ...], list[Decision]] = {}
    for d in decisions:
        groups.setdefault(d.group, []).append(d)
    return groups


def single_rules(policy: RetentionPolicy) -> list[RetentionPolicy]:
    return [
        RetentionPolicy(**{name: getattr(policy, name)})
        for name in RULES
        if getattr(policy, name) not in (0, None)
    ]


@settings(max_examples=300, deadline=None)
@given(archive_lists(), st.integers(1, 6), nows, group_bys, st.sampled_from(ZONES))
def test_keep_last_keeps_exactly_the_n_newest(archives, n, now, group_by, tz) -> None:
    decisions = plan_prune(archives, RetentionPolicy(keep_last=n), now=now, group_by=group_by, tz=tz)
    for group, members in by_group(decisions).items():
        past = [d.archive for d in members if d.archive.time <= now]
        expected = sorted(past, key=lambda a: (-a.time.timestamp(), a.id))[:n]
        kept_past = [d.archive for d in members if d.keep and d.archive.time <= now]
        assert kept_past == expected, group
        assert len(kept_past) == min(n, len(past))
        assert all(d.keep and d.reasons == ("in the future",) for d in members if d.archive.time > now)


@settings(max_examples=300, deadline=None)
@given(archive_lists(), policies, nows, group_bys, st.sampled_from(ZONES))
def test_combined_policy_is_union_of_single_rules(archives, policy, now, group_by, tz) -> None:
    combined = plan_prune(archives, policy, now=now, group_by=group_by, tz=tz)
    reasons: dict[str, list[str]] = {a.id: [] for a in archives}
    for single in single_rules(policy):
        for d in plan_prune(archives, single, now=now, group_by=group_by, tz=tz):
            reasons[d.archive.id] += [r for r in d.reasons if r not in reasons[d.archive.id]]
    assert {d.archive.id: d.reasons for d in combined} == {key: tuple(value) for key, value in reasons.items()}


@settings(max_examples=300, deadline=None)
@given(archive_lists(), policies, nows, group_bys, st.sampled_from(ZONES), st.randoms(use_true_random=False))
def test_order_is_deterministic_and_complete(archives, policy, now, group_by, tz, rnd: random.Random) -> None:
    decisions = plan_prune(archives, policy, now=now, group_by=group_by, tz=tz)
    shuffled = list(archives)
    rnd.shuffle(shuffled)
    assert plan_prune(shuffled, policy, now=now, group_by=group_by, tz=tz) == decisions
    assert sorted(d.archive.id for d in decisions) == sorted(a.id for a in archives)
    keys = [(d.group, -d.archive.time.timestamp(), d.archive.id) for d in decisions]
    assert keys == sorted(keys)
    for group, members in by_group(decisions).items():
        if policy.has_count_rule():
            assert any(d.keep for d in members), f"a count rule must keep something in {group}"


def hour_start(local: datetime) -> datetime:
    # An independent notion of "the same hour": the instant the local wall-clock hour began.
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


PERIODS = {
    "keep_hourly": ("hourly", hour_start),
    "keep_daily": ("daily", lambda local: local.date()),
    "keep_weekly": ("weekly", lambda local: local.isocalendar()[:2]),
    "keep_monthly": ("monthly", lambda local: (local.year, local.month)),
    "keep_yearly": ("yearly", lambda local: local.year),
}


@settings(max_examples=300, deadline=None)
@given(archive_lists(), st.sampled_from(sorted(PERIODS)), st.integers(1, 5), nows, group_bys,
       st.sampled_from(ZONES))
def test_bucket_rule_keeps_newest_of_n_most_recent_periods(archives, rule, n, now, group_by, tz) -> None:
    label, period_of = PERIODS[rule]
    decisions = plan_prune(archives, RetentionPolicy(**{rule: n}), now=now, group_by=group_by, tz=tz)
    for members in by_group(decisions).values():
        past = [d for d in members if d.archive.time <= now]
        periods: dict[object, list[Decision]] = {}
        for d in past:
            periods.setdefault(period_of(d.archive.time.astimezone(tz)), []).append(d)
        kept = [d for d in past if d.keep]
        assert len(kept) == min(n, len(periods))
        assert [d.reasons for d in kept] == [(f"{label} #{rank}",) for rank in range(1, len(kept) + 1)]
        kept_periods = {period_of(d.archive.time.astimezone(tz)) for d in kept}
        assert len(kept_periods) == len(kept), "one archive per period"
        for period in kept_periods:
            newest = min(periods[period], key=lambda d: (-d.archive.time.timestamp(), d.archive.id))
            assert newest.keep, "the kept archive is the newest of its period"
        if kept:
            oldest_kept = min(d.archive.time for d in kept)
            for period, ds in periods.items():
                if period not in kept_periods:
                    assert max(d.archive.time for d in ds) < oldest_kept, "a skipped period is older than all kept"
