"""A Step Functions Activity worker: what Lambda does for a Task state, done by a local process.

    python -m tests.infra.sfn_worker ENDPOINT ACTIVITY_ARN MODULE:FUNCTION [--seconds N]
        [--first-attempt-seconds M] [--log FILE]

Polls GetActivityTask, calls ``FUNCTION(event, context)`` with the task's input, and answers SendTaskSuccess
with the JSON result, or SendTaskFailure with the exception's class name as the error, which is what Lambda
reports as ``errorType`` and what the state machine's Retry/Catch match (``PartIncomplete``). The context
offers ``get_remaining_time_in_millis`` for a run of ``--seconds``, like a Lambda timeout; an input this process
has not seen before gets ``--first-attempt-seconds`` instead (0: it is out of time at once, so a part stops at its
deadline on its first attempt, deterministically). ``--log`` appends one JSON line per task: its input and
whether it succeeded or which error it reported. Runs until killed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import time
import traceback
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config


class Context:
    """The part of Lambda's context object Packvault's handlers use."""

    def __init__(self, seconds: float, name: str) -> None:
        self._deadline = time.monotonic() + seconds
        self.function_name = name
        self.aws_request_id = f"activity-{time.time_ns()}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load(spec: str) -> Callable[[dict, Any], Any]:
    module, _, function = spec.partition(":")
    return getattr(importlib.import_module(module), function)


def serve(
    endpoint: str,
    activity_arn: str,
    handler: Callable[[dict, Any], Any],
    seconds: float,
    first_attempt_seconds: float | None = None,
    log: str | None = None,
) -> None:
    client = boto3.client(
        "stepfunctions",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=70, retries={"max_attempts": 5, "mode": "standard"}),
    )
    name = activity_arn.rsplit(":", 1)[-1]
    seen: set[str] = set()
    while True:
        task = client.get_activity_task(activityArn=activity_arn, workerName=name)
        token = task.get("taskToken")
        if not token:
            continue
        budget = seconds
        if first_attempt_seconds is not None and task["input"] not in seen:
            budget = first_attempt_seconds
        seen.add(task["input"])
        try:
            result = handler(json.loads(task["input"]), Context(budget, name))
        except Exception as exc:  # every failure goes back to the state machine, as Lambda reports it
            cause = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                                "stackTrace": traceback.format_exc().splitlines()[-5:]})  # fmt: skip
            outcome = type(exc).__name__
            client.send_task_failure(taskToken=token, error=outcome, cause=cause[:32000])
        else:
            outcome = "success"
            client.send_task_success(taskToken=token, output=json.dumps(result if result is not None else {}))
        if log:
            with open(log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"input": json.loads(task["input"]), "outcome": outcome}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("activity_arn")
    parser.add_argument("handler")
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--first-attempt-seconds", type=float, default=None)
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    serve(args.endpoint, args.activity_arn, load(args.handler), args.seconds, args.first_attempt_seconds, args.log)


if __name__ == "__main__":
    main()
