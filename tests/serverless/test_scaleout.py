"""The scale-out Lambda handler (``serverless/scaleout.py``), invoked in-process as Step Functions would: a
plan into a bucket, one invocation per plan element (one of them out of time first), then the merge.  Source,
plan and repository are buckets of a real moto server."""

from __future__ import annotations

import json
import os

import pytest

from packvault.errors import UsageError
from packvault.serverless import scaleout
from tests.support.s3servers import new_bucket, s3_client

PASSPHRASE = "correct horse battery staple"
OBJECTS = {f"in/{d}/{i:02d}.dat": os.urandom(20_000 + i) for d in "abc" for i in range(8)}


class Context:
    """A Lambda context with a fixed amount of time left."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.aws_request_id = "req"

    def get_remaining_time_in_millis(self) -> int:
        return int(self.seconds * 1000)


@pytest.fixture
def job(pv, moto_endpoint, make_s3_url, monkeypatch, capsys) -> dict:
    source = new_bucket(moto_endpoint)
    client = s3_client(moto_endpoint)
    for key, data in OBJECTS.items():
        client.put_object(Bucket=source, Key=key, Body=data)
    repo = make_s3_url(moto_endpoint)
    pv("init", repo)
    monkeypatch.setenv("PACKVAULT_REPO", repo)
    monkeypatch.setenv("PACKVAULT_ARCHIVE_PREFIX", "lake")
    monkeypatch.setenv("PACKVAULT_SOURCES", f"s3://{source}/in?endpoint={moto_endpoint}")
    monkeypatch.setenv("PACKVAULT_DEADLINE_MARGIN", "20")
    return {"repo": repo, "source": source, "plans": new_bucket(moto_endpoint)}


def test_plan_parts_and_merge_through_the_handler(pv, job, moto_endpoint, monkeypatch):
    when = {"time": "2026-12-03T02:00:00Z"}  # every invocation of one execution passes its start time
    output = f"s3://{job['plans']}/plans/run.json?endpoint={moto_endpoint}"
    planned = scaleout.handler({"action": "plan", "parts": 3, "output": output, **when}, Context(900))
    assert planned["status"] == "planned" and planned["parts"] == 3 and planned["objects"] == len(OBJECTS)
    assert planned["archive"] == "lake-2026-12-03" and planned["plan"] == output
    plan = json.loads(s3_client(moto_endpoint).get_object(Bucket=job["plans"], Key="plans/run.json")["Body"].read())

    with pytest.raises(scaleout.PartIncomplete):  # 10 s left is inside the 20 s margin: stops at once
        scaleout.handler({"action": "part", "item": plan[1], **when}, Context(10))
    done = [scaleout.handler({"action": "part", "item": element, **when}, Context(900)) for element in plan]
    assert [d["status"] for d in done] == ["created"] * 3
    assert [d["archive"] for d in done] == [f"lake-2026-12-03.part{k}" for k in range(3)]
    assert sum(d["objects"] for d in done) == len(OBJECTS)
    assert sum(d["bytes"] for d in done) == sum(map(len, OBJECTS.values()))
    again = scaleout.handler({"action": "part", "item": plan[0], **when}, Context(900))
    assert again["status"] == "already-complete"  # a second run of an iteration changes nothing

    merged = scaleout.handler({"action": "merge", "parts": 3, **when}, Context(900))
    assert merged["status"] == "merged" and merged["objects"] == len(OBJECTS)
    assert scaleout.handler({"action": "merge", "parts": 3, **when}, Context(900))["status"] == "already-merged"
    assert scaleout.handler({"action": "part", "item": plan[2], **when}, Context(900))["status"] == "already-complete"
    names = [a["name"] for a in json.loads(pv("list", "--json", job["repo"]).out)["archives"]]
    assert names == ["lake-2026-12-03"]
    source_url = f"s3://{job['source']}/in?endpoint={moto_endpoint}"
    pv("create", f"{job['repo']}::single", source_url)
    diff = pv("diff", f"{job['repo']}::single", "lake-2026-12-03")
    assert diff.out.strip() == ""


def test_a_merge_with_a_missing_part_fails_and_names_it(pv, job, moto_endpoint):
    when = {"time": "2026-12-03T02:00:00Z"}
    output = f"s3://{job['plans']}/p.json?endpoint={moto_endpoint}"
    scaleout.handler({"action": "plan", "parts": 2, "output": output, **when}, Context(900))
    plan = json.loads(s3_client(moto_endpoint).get_object(Bucket=job["plans"], Key="p.json")["Body"].read())
    scaleout.handler({"action": "part", "item": plan[0], **when}, Context(900))
    with pytest.raises(Exception, match="lake-2026-12-03.part1") as failed:
        scaleout.handler({"action": "merge", "parts": 2, **when}, Context(900))
    assert "nothing was merged" in str(failed.value)


def test_unknown_actions_and_bad_events_are_one_line_errors(job):
    with pytest.raises(UsageError, match="unknown scale-out action"):
        scaleout.handler({"action": "backup"}, Context(900))
    with pytest.raises(UsageError, match="output"):
        scaleout.handler({"action": "plan", "parts": 2}, Context(900))
    with pytest.raises(UsageError, match="plan element"):
        scaleout.handler({"action": "part", "item": {"part": 0}}, Context(900))
