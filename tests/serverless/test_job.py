"""Parsing the job from environment and event: names, periods, policies, schedules, and clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from packvault.errors import UsageError
from packvault.maintenance.retention import archive_prefix
from packvault.serverless.deadline import Deadline
from packvault.serverless.job import load_job, parse_list, period_stamp

ENV = {"PACKVAULT_REPO": "s3://repo-bucket/r", "PACKVAULT_SOURCES": '["s3://src/a", "s3://src/b"]'}


def test_terraform_environment_and_event_overrides():
    job = load_job({"source": "packvault.scheduler", "job": "web", "time": "2026-11-20T23:59:00Z"}, ENV)
    assert job.sources == ("s3://src/a", "s3://src/b")
    assert job.archive == "web-2026-11-20"
    assert job.prune is None and job.compact == "never" and job.does_backup
    job = load_job(
        {"sources": ["s3://other"], "prefix": "x", "period": "hourly", "time": "2026-11-20T05:30:00+02:00"}, ENV
    )
    assert job.sources == ("s3://other",) and job.archive == "x-2026-11-20T03"


def test_period_names_keep_their_prefix_for_prune_grouping():
    when = datetime(2026, 11, 20, 15, tzinfo=UTC)  # a Friday
    assert period_stamp(when, "weekly") == "2026-11-16"
    assert period_stamp(when, "monthly") == "2026-11"
    for period in ("hourly", "daily", "weekly", "monthly"):
        assert archive_prefix(f"nightly-{period_stamp(when, period)}") == "nightly-"


def test_policy_and_compact_schedule():
    env = {**ENV, "PACKVAULT_PRUNE": '{"keep_daily": 7, "keep-within": "2d"}', "PACKVAULT_COMPACT": "sun,wed"}
    job = load_job({"time": "2026-11-22T01:00:00Z"}, env)  # a Sunday
    assert job.prune.keep_daily == 7 and job.prune.keep_within == timedelta(days=2)
    assert job.compact_due()
    assert not load_job({"time": "2026-11-23T01:00:00Z"}, env).compact_due()
    assert load_job({"action": "compact"}, {**ENV, "PACKVAULT_COMPACT": "0"}).compact_due()
    assert load_job({}, {**ENV, "PACKVAULT_COMPACT": "true"}).compact_due()


@pytest.mark.parametrize(
    ("event", "env", "message"),
    [
        ({}, {}, "no repository"),
        ({"action": "destroy"}, ENV, "unknown action"),
        ({}, {**ENV, "PACKVAULT_PRUNE": '{"keep_forever": 1}'}, "unknown retention rule"),
        ({}, {**ENV, "PACKVAULT_PRUNE": "{not json"}, "not valid JSON"),
        ({}, {**ENV, "PACKVAULT_COMPACT": "sometimes"}, "not understood"),
        ({"archive": "a/b"}, ENV, "invalid archive name"),
        ({"time": "yesterday"}, ENV, "ISO 8601"),
    ],
)
def test_bad_configuration_is_a_usage_error(event, env, message):
    with pytest.raises(UsageError, match=message):
        load_job(event, env)


def test_sources_as_comma_list():
    assert parse_list("s3://a/x, s3://b ,", "x") == ("s3://a/x", "s3://b")


def test_deadline_margin_is_the_larger_of_seconds_and_share():
    assert Deadline(lambda: 100_000, margin=20, fraction=0.1).margin == 20
    assert Deadline(lambda: 900_000, margin=20, fraction=0.1).margin == 90
    remaining = [30_000]
    deadline = Deadline(lambda: remaining[0], margin=20, fraction=0.1)
    assert not deadline.expired()
    remaining[0] = 19_999
    assert deadline.expired()
    assert not Deadline(None).expired()
