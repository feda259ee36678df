"""A scripted stand-in for packvault.serverless.scaleout.handler, to test the state machine on its own.

It keeps the handler's interface (events and results as in docs/serverless.md) and records every event it
receives as an object in the work bucket, so the test can check what Step Functions actually passed:

- plan: writes ``parts`` items to the ``output`` location (nothing with SCRIPTED_ENGINE_NO_PLAN=1, as a plan
  that claims success but whose object is gone);
- part: a part whose number is in SCRIPTED_ENGINE_FAIL (comma-separated) fails for good (a genuine error); one
  in SCRIPTED_ENGINE_SLOW is incomplete on its first attempt (raises PartIncomplete, as a part that reached its
  deadline does); the others succeed;
- merge: refuses to merge unless every part 0..parts-1 completed (as the engine's merge refuses an incomplete
  set of parts), else records and returns.

The S3 endpoint and the bucket the calls are recorded in come from the worker process's environment
(SCRIPTED_ENGINE_ENDPOINT, SCRIPTED_ENGINE_WORK_BUCKET).
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any
from urllib.parse import urlsplit

import boto3


class PartIncomplete(Exception):
    """Same name as the engine's: the state machine retries exactly this error."""


class EngineError(Exception):
    """A failure that retrying does not cure."""


def _s3():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["SCRIPTED_ENGINE_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _split(url: str) -> tuple[str, str]:
    parsed = urlsplit(url)
    return parsed.netloc, parsed.path.lstrip("/")


def _record(bucket: str, kind: str, event: dict) -> None:
    _s3().put_object(Bucket=bucket, Key=f"calls/{kind}/{uuid.uuid4().hex}.json", Body=json.dumps(event).encode())


def _attempts(bucket: str, kind: str) -> list[dict]:
    s3 = _s3()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"calls/{kind}/").get("Contents", [])
    return [json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listed]


def handler(event: dict, context: Any) -> dict:
    action = event["action"]
    if action == "plan":
        bucket, key = _split(event["output"])
        _record(bucket, "plan", event)
        parts = int(event["parts"])
        source = event["source"]
        bounds = [""] + [f"k{i:03d}" for i in range(1, parts)] + [None]
        items = [
            {"part": k, "parts": parts, "source": source, "start": bounds[k], "end": bounds[k + 1],
             "objects": 10, "bytes": 1000}
            for k in range(parts)
        ]  # fmt: skip
        if os.environ.get("SCRIPTED_ENGINE_NO_PLAN") != "1":
            _s3().put_object(Bucket=bucket, Key=key, Body=json.dumps(items).encode())
        return {"plan": event["output"], "parts": parts, "archive": "scripted-" + source.rsplit("/", 1)[-1]}
    bucket = os.environ["SCRIPTED_ENGINE_WORK_BUCKET"]
    if action == "part":
        _record(bucket, "part", event)
        number = str(event["item"]["part"])
        if number in os.environ.get("SCRIPTED_ENGINE_FAIL", "").split(","):
            raise EngineError(f"part {number}: the source bucket refused the listing")
        if number in os.environ.get("SCRIPTED_ENGINE_SLOW", "").split(","):
            earlier = [e for e in _attempts(bucket, "part") if str(e["item"]["part"]) == number]
            if len(earlier) == 1:  # only the call just recorded: the first attempt stops at its deadline
                raise PartIncomplete(f"part {number} reached its deadline; run it again to continue")
        _record(bucket, "part-done", event)
        return {"status": "created", "archive": f"{event['archive']}.part{number}"}
    if action == "merge":
        done = {e["item"]["part"] for e in _attempts(bucket, "part-done") if e["archive"] == event["archive"]}
        missing = sorted(set(range(int(event["parts"]))) - done)
        if missing:
            raise EngineError(f"cannot merge {event['archive']}: parts {missing} are not complete")
        _record(bucket, "merge", event)
        return {"status": "merged", "archive": event["archive"], "parts": event["parts"]}
    raise EngineError(f"unknown action {action!r}")
