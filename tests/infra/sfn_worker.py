"""A Step Functions Activity worker: what Lambda does for a Task state, done by a local process.

    python -m tests.infra.sfn_worker ENDPOINT ACTIVITY_ARN MODULE:FUNCTION [--seconds N]

Polls GetActivityTask, calls ``FUNCTION(event, context)`` with the task's input, and answers SendTaskSuccess
with the JSON result, or SendTaskFailure with the exception's class name as the error, which is what Lambda
reports as ``errorType`` and what the state machine's Retry/Catch match (``PartIncomplete``). The context
offers ``get_remaining_time_in_millis`` for a run of ``--seconds``, like a Lambda timeout. Runs until killed.
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


def serve(endpoint: str, activity_arn: str, handler: Callable[[dict, Any], Any], seconds: float) -> None:
    client = boto3.client(
        "stepfunctions",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(read_timeout=70, retries={"max_attempts": 5, "mode": "standard"}),
    )
    name = activity_arn.rsplit(":", 1)[-1]
    while True:
        task = client.get_activity_task(activityArn=activity_arn, workerName=name)
        token = task.get("taskToken")
        if not token:
            continue
        try:
            result = handler(json.loads(task["input"]), Context(seconds, name))
        except Exception as exc:  # every failure goes back to the state machine, as Lambda reports it
            cause = json.dumps({"errorMessage": str(exc), "errorType": type(exc).__name__,
                                "stackTrace": traceback.format_exc().splitlines()[-5:]})  # fmt: skip
            client.send_task_failure(taskToken=token, error=type(exc).__name__, cause=cause[:32000])
        else:
            client.send_task_success(taskToken=token, output=json.dumps(result if result is not None else {}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("endpoint")
    parser.add_argument("activity_arn")
    parser.add_argument("handler")
    parser.add_argument("--seconds", type=float, default=900.0)
    args = parser.parse_args()
    serve(args.endpoint, args.activity_arn, load(args.handler), args.seconds)


if __name__ == "__main__":
    main()
