"""The scale-out state machine, as the module deploys it, running on LocalStack's Step Functions.

The definition is rendered from terraform/modules/scale-out exactly as in test_scale_out.py, with one change: the
three Lambda ARNs are replaced by Step Functions Activities, served by local worker processes
(tests/infra/sfn_worker.py) that do what Lambda would do: call a handler with the task's input and report its
result or its exception class. So the Distributed Map, its ItemReader over the plan object, the ResultWriter,
the Retry on PartIncomplete and the Catch into Fail states all run on a real ASL interpreter.

The test starts its own LocalStack (S3, Step Functions, STS) on a free port with localstack/start-host.sh
under its own LOCALSTACK_NAME, so the S3-only instance of ``make test`` is not touched. It runs wherever the
LocalStack tests run (PACKVAULT_TEST_LOCALSTACK set); PACKVAULT_TEST_SFN_LOCALSTACK=http://... reuses a running
instance with those services instead of starting one.

Known LocalStack limit (2026.3): ToleratedFailurePercentage is parsed (only as a decimal literal, hence the
module renders it with one decimal) but not enforced, so the failure threshold is not tested here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from tests.support.s3servers import free_port, wait_http_ready

from .scale_out_asl import render_template
from .terraform_hcl import REPO_ROOT
from .test_scale_out import asl_values

pytestmark = [pytest.mark.localstack, pytest.mark.slow]

SERVICES = "s3,stepfunctions,sts"
ROLE_ARN = "arn:aws:iam::000000000000:role/packvault-bulk-states"
SCRIPTED = "tests.infra.sfn_scripted_engine:handler"


def client(endpoint: str, service: str):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture(scope="module")
def sfn_endpoint() -> Iterator[str]:
    reuse = os.environ.get("PACKVAULT_TEST_SFN_LOCALSTACK", "").rstrip("/")
    if reuse:
        wait_http_ready(f"{reuse}/_localstack/health", timeout=60)
        yield reuse
        return
    if not os.environ.get("PACKVAULT_TEST_LOCALSTACK"):
        message = "PACKVAULT_TEST_LOCALSTACK is not set: LocalStack tests are not wanted here (run 'make test')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    env = {**os.environ, "SERVICES": SERVICES, "LOCALSTACK_NAME": f"sfn-{port}", "LOCALSTACK_START_TIMEOUT": "180"}
    # Activity long polls keep LocalStack's request threads busy for up to a minute after the workers are gone,
    # so a clean shutdown would mostly wait for them; its state is thrown away anyway.
    env["LOCALSTACK_STOP_TIMEOUT"] = "5"
    started = subprocess.run(
        ["bash", str(REPO_ROOT / "localstack" / "start-host.sh"), str(port)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    try:
        if started.returncode != 0:
            pytest.fail(f"LocalStack with {SERVICES} did not start:\n{started.stderr[-3000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stopped = subprocess.run(
            ["bash", str(REPO_ROOT / "localstack" / "stop.sh")], env=env, capture_output=True, text=True, timeout=120
        )
        if stopped.returncode != 0:
            pytest.fail(f"localstack/stop.sh could not stop the Step Functions LocalStack:\n{stopped.stderr}")
        (REPO_ROOT / ".venv-localstack" / f"localstack-{env['LOCALSTACK_NAME']}.log").unlink(missing_ok=True)


class Deployment:
    """One state machine from the module's template, its activities, its work bucket and its workers."""

    def __init__(self, endpoint: str, **variables: Any) -> None:
        self.endpoint = endpoint
        self.sfn = client(endpoint, "stepfunctions")
        self.s3 = client(endpoint, "s3")
        tag = uuid.uuid4().hex[:10]
        self.bucket = f"pv-sfn-{tag}"
        self.s3.create_bucket(Bucket=self.bucket)
        self.activities = {
            step: self.sfn.create_activity(name=f"bulk-{step}-{tag}")["activityArn"]
            for step in ("plan", "part", "merge")
        }
        self.values = asl_values(work_bucket_name=self.bucket, **variables)
        for step, arn in self.activities.items():
            self.values[f"{step}_resource"] = arn
        self.definition = render_template(self.values)
        created = self.sfn.create_state_machine(
            name=f"bulk-{tag}", definition=self.definition, roleArn=ROLE_ARN, type="STANDARD"
        )
        self.arn = created["stateMachineArn"]
        self.workers: list[subprocess.Popen] = []

    def start_workers(
        self, handler: str, parts: int = 2, seconds: float = 120.0, part_options: tuple[str, ...] = (), **env: str
    ) -> None:
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
            "SCRIPTED_ENGINE_ENDPOINT": self.endpoint,
            "SCRIPTED_ENGINE_WORK_BUCKET": self.bucket,
            **env,
        }
        for step, count in (("plan", 1), ("part", parts), ("merge", 1)):
            for _ in range(count):
                command = [sys.executable, "-m", "tests.infra.sfn_worker", self.endpoint, self.activities[step]]
                command += [handler, "--seconds", str(seconds), *(part_options if step == "part" else ())]
                self.workers.append(subprocess.Popen(command, env=environment, cwd=REPO_ROOT))

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        self.workers.clear()

    def run(self, timeout: float = 240.0) -> dict[str, Any]:
        name = f"run-{uuid.uuid4().hex[:8]}"
        execution = self.sfn.start_execution(stateMachineArn=self.arn, name=name, input="{}")["executionArn"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described = self.sfn.describe_execution(executionArn=execution)
            if described["status"] != "RUNNING":
                described["name"] = name
                return described
            for worker in self.workers:
                assert worker.poll() is None, f"an activity worker exited with {worker.returncode}"
            time.sleep(0.5)
        self.sfn.stop_execution(executionArn=execution, error="Test.Timeout", cause="the test gave up waiting")
        pytest.fail(f"execution {name} still running after {timeout}s")

    def calls(self, kind: str) -> list[dict[str, Any]]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"calls/{kind}/").get("Contents", [])
        return [json.loads(self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read()) for o in listed]

    def read_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())


@pytest.fixture
def deploy(sfn_endpoint: str) -> Iterator[Callable[..., Deployment]]:
    made: list[Deployment] = []

    def make(**variables: Any) -> Deployment:
        deployment = Deployment(sfn_endpoint, **variables)
        made.append(deployment)
        return deployment

    try:
        yield make
    finally:
        for deployment in made:
            deployment.stop_workers()


def test_definition_runs_plan_distributed_map_and_merge(deploy: Callable[..., Deployment]) -> None:
    """Every planned range reaches a part exactly as planned, an incomplete part is continued, the merge gets
    the archive and the number of parts, and the Map's results land under the results prefix."""
    deployment = deploy(parts=5, max_concurrency=2, part_retry_interval_seconds=1)
    deployment.start_workers(SCRIPTED, parts=2, SCRIPTED_ENGINE_SLOW="3")
    result = deployment.run()
    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))

    (plan_call,) = deployment.calls("plan")
    plan_key = f"{deployment.values['plans_prefix']}{result['name']}.json"
    assert plan_call == {
        "action": "plan",
        "source": "s3://data-lake/media",
        "parts": 5,
        "output": f"s3://{deployment.bucket}/{plan_key}",
    }
    planned = deployment.read_json(plan_key)
    assert len(planned) == 5

    part_calls = deployment.calls("part")
    assert {c["archive"] for c in part_calls} == {"scripted-media"}
    assert {c["action"] for c in part_calls} == {"part"}
    # each planned item, unchanged, went to a part; the incomplete one (3) twice, the others once
    by_part: dict[int, list[dict]] = {}
    for call in part_calls:
        by_part.setdefault(call["item"]["part"], []).append(call["item"])
    assert sorted(by_part) == [0, 1, 2, 3, 4]
    for item in planned:
        expected_calls = 2 if item["part"] == 3 else 1
        assert by_part[item["part"]] == [item] * expected_calls

    assert deployment.calls("merge") == [{"action": "merge", "archive": "scripted-media", "parts": 5}]

    output = json.loads(result["output"])
    assert output["planned"] == {"archive": "scripted-media", "parts": 5, "plan": plan_call["output"]}
    assert output["merged"]["status"] == "merged"
    writer = output["results"]["ResultWriterDetails"]
    assert writer["Bucket"] == deployment.bucket
    assert writer["Key"].startswith(deployment.values["results_prefix"])
    manifest = deployment.read_json(writer["Key"])
    assert manifest  # the map run's manifest, written by the ResultWriter


def test_a_failing_part_is_not_retried_and_no_archive_is_merged(deploy: Callable[..., Deployment]) -> None:
    """A genuine error in a part is not retried like an incomplete one, and the run fails without a merged
    archive. On AWS the Map fails (threshold 0: PartsFailed); LocalStack does not enforce the threshold (its Map
    run succeeds with a failed item), so there the merge refuses the incomplete set (MergeFailed). Either way
    a failed part never ends in a succeeded execution."""
    deployment = deploy(parts=3, max_concurrency=3)
    deployment.start_workers(SCRIPTED, parts=2, SCRIPTED_ENGINE_FAIL="1")
    result = deployment.run()
    assert result["status"] == "FAILED"
    assert result["error"] in ("Packvault.PartsFailed", "Packvault.MergeFailed")
    assert "scripted-media" in result["cause"]
    failing = [c for c in deployment.calls("part") if c["item"]["part"] == 1]
    assert len(failing) == 1
    assert deployment.calls("merge") == []
    if result["error"] == "Packvault.MergeFailed":
        assert "parts [1] are not complete" in result["cause"]


def test_a_map_that_cannot_read_the_plan_fails_with_the_results_location(
    deploy: Callable[..., Deployment],
) -> None:
    deployment = deploy(parts=2)
    deployment.start_workers(SCRIPTED, parts=1, SCRIPTED_ENGINE_NO_PLAN="1")
    result = deployment.run()
    assert result["status"] == "FAILED"
    assert result["error"] == "Packvault.PartsFailed"
    assert result["cause"].startswith("Backing up the parts of scripted-media failed (")
    assert f"s3://{deployment.bucket}/{deployment.values['results_prefix']}" in result["cause"]
    assert deployment.calls("part") == [] and deployment.calls("merge") == []


def test_a_failing_plan_fails_the_run_before_any_part(deploy: Callable[..., Deployment]) -> None:
    deployment = deploy(parts=2)
    # The plan worker fails: the plan's output location is in a bucket that does not exist.
    deployment.values["work_bucket"] = "pv-sfn-missing-bucket"
    deployment.start_workers(SCRIPTED, parts=1)
    broken = render_template({**deployment.values})
    created = deployment.sfn.create_state_machine(
        name=f"broken-{uuid.uuid4().hex[:8]}", definition=broken, roleArn=ROLE_ARN, type="STANDARD"
    )
    deployment.arn = created["stateMachineArn"]
    result = deployment.run()
    assert result["status"] == "FAILED"
    assert result["error"] == "Packvault.PlanFailed"
    assert "Planning the backup of s3://data-lake/media failed" in result["cause"]
    assert "NoSuchBucket" in result["cause"]
    assert deployment.calls("part") == [] and deployment.calls("merge") == []


# --- the real engine ------------------------------------------------------------------------------------------

ENGINE = "packvault.serverless.scaleout:handler"
OBJECTS = {
    **{f"lake/day={d}/part-{i:03d}.bin": os.urandom(20_000 + 997 * i) for d in ("01", "02") for i in range(8)},
    "lake/day=01.manifest": b"manifest",
    "lake/big.bin": os.urandom(2 * 1024 * 1024 + 13),
    "lake/_SUCCESS": b"",
}


def test_state_machine_runs_the_engine_and_the_merged_archive_restores_bit_exactly(
    deploy: Callable[..., Deployment], pv, pv_env, tmp_path, monkeypatch
) -> None:
    """Plan, parts (each stopped at its deadline once and continued by the Retry), merge, all through the
    module's definition with Activity workers calling packvault.serverless.scaleout.handler against a
    LocalStack S3 repository. The merged archive is the only one left, restores bit-exactly, and has the
    items and chunk ids of a single backup of the same bucket."""
    from tests.cli.test_scaleout_flow import _items

    deployment = deploy(parts=3, max_concurrency=2)
    s3 = deployment.s3
    source_bucket, repo_bucket = f"{deployment.bucket}-src", f"{deployment.bucket}-repo"
    for bucket in (source_bucket, repo_bucket):
        s3.create_bucket(Bucket=bucket)
    for key, data in OBJECTS.items():
        s3.put_object(Bucket=source_bucket, Key=key, Body=data)
    # the definition's source is the module's source_url; the endpoint comes from the environment, as in AWS
    deployment.values["source_url"] = f"s3://{source_bucket}/lake"
    deployment.arn = deployment.sfn.create_state_machine(
        name=f"engine-{uuid.uuid4().hex[:8]}", definition=render_template(deployment.values), roleArn=ROLE_ARN
    )["stateMachineArn"]

    aws = {
        "AWS_ENDPOINT_URL_S3": deployment.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in aws.items():
        monkeypatch.setenv(key, value)
    repo_url = f"s3://{repo_bucket}/repo"
    pv("init", repo_url, "--pack-size", "64K")

    log = tmp_path / "attempts.jsonl"
    deployment.start_workers(
        ENGINE,
        parts=2,
        seconds=600.0,
        part_options=("--first-attempt-seconds", "0", "--log", str(log)),
        **pv_env,
        **aws,
        PACKVAULT_REPO=repo_url,
        PACKVAULT_ARCHIVE_PREFIX="lake",
    )
    result = deployment.run(timeout=480)
    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    output = json.loads(result["output"])
    archive = output["planned"]["archive"]
    assert archive.startswith("lake-")
    assert output["merged"]["status"] == "merged" and output["merged"]["parts"] == 3

    # every part stopped at its deadline at least once and was continued by the state machine's Retry
    attempts: dict[int, list[str]] = {}
    for line in log.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        attempts.setdefault(entry["input"]["item"]["part"], []).append(entry["outcome"])
    assert sorted(attempts) == [0, 1, 2]
    for outcomes in attempts.values():
        assert outcomes[-1] == "success" and outcomes.count("success") == 1
        assert set(outcomes[:-1]) == {"PartIncomplete"} and len(outcomes) >= 2

    listed = json.loads(pv("list", "--json", repo_url).out)["archives"]
    assert [a["name"] for a in listed] == [archive]  # the parts' entries were retired by the merge
    target = tmp_path / "restore"
    pv("extract", f"{repo_url}::{archive}", "--target", str(target))
    root = target / source_bucket
    assert {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()} == OBJECTS

    pv("create", f"{repo_url}::single", f"s3://{source_bucket}/lake")
    items, item_ids = _items(repo_url, archive)
    single, single_ids = _items(repo_url, "single")
    assert items == single and item_ids == single_ids
    pv("check", repo_url)
