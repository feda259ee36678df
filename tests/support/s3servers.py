"""pytest plugin: real S3 endpoints for the test suite.

- ``moto_endpoint``: a moto server started once per session on a free port (fast, in memory);
- ``localstack_endpoint``: the LocalStack started by ``make test`` (``PACKVAULT_TEST_LOCALSTACK``); missing,
  it fails the test under CI (CI must run them) and skips it elsewhere;
- ``s3_env``: dummy credentials and small retry bounds, isolated from the developer's AWS config;
- ``make_s3_url(endpoint)``: a fresh bucket per call, returned as a repository URL;
- ``any_backend_url``: one fresh repository location per backend kind (file, moto, localstack);
- ``fault_proxy(upstream, ...)``: a fault-injecting HTTP proxy in front of an endpoint.

No mocks: every S3 call in the tests goes over HTTP to a real server process.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TEST_REGION = "us-east-1"
# Small, but large enough that a 15 % fault rate almost never exhausts them (0.15**6 per operation).
TEST_RETRY_ATTEMPTS = "6"
TEST_RETRY_MAX_SECONDS = "20"

_bucket_numbers = itertools.count()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http_ready(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers at all (any HTTP status), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last!r}")


def s3_client(endpoint: str):
    """A plain boto3 client for test set-up and for looking behind the backend's back."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=TEST_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2, "mode": "standard"}),
    )


def new_bucket(endpoint: str) -> str:
    """Create a bucket with a name no other test (or earlier LocalStack run) used."""
    name = f"pv-test-{os.getpid()}-{next(_bucket_numbers)}-{uuid.uuid4().hex[:8]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return name


MOTO_START_ATTEMPTS = 3


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if not exe.exists():
        pytest.fail(f"moto_server not found next to {sys.executable}; install the test extras")
    for attempt in range(MOTO_START_ATTEMPTS):
        # the free port is only known free when asked: another process may bind it before moto does, and
        # then moto exits (a port it could not have)
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_http_ready(f"{endpoint}/moto-api/data.json", timeout=60, proc=proc)
            break
        except RuntimeError:
            if proc.poll() is None or attempt + 1 == MOTO_START_ATTEMPTS:
                proc.kill()
                proc.wait()
                raise
    try:
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def localstack_endpoint() -> str:
    endpoint = os.environ.get("PACKVAULT_TEST_LOCALSTACK", "").rstrip("/")
    if not endpoint:
        message = "PACKVAULT_TEST_LOCALSTACK is not set (run 'make test', or localstack/start-host.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        wait_http_ready(f"{endpoint}/_localstack/health", timeout=60)
    except RuntimeError as exc:
        pytest.fail(f"LocalStack at {endpoint} is not answering: {exc}")
    return endpoint


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials and small retry bounds; the developer's own AWS settings cannot leak in."""
    empty = tmp_path_factory.mktemp("aws-config")
    for var in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    monkeypatch.setenv("PACKVAULT_S3_RETRY_ATTEMPTS", TEST_RETRY_ATTEMPTS)
    monkeypatch.setenv("PACKVAULT_S3_RETRY_MAX_SECONDS", TEST_RETRY_MAX_SECONDS)


@pytest.fixture
def make_s3_url(s3_env) -> Callable[..., str]:
    """``make_s3_url(endpoint, prefix="repo")`` -> ``s3://fresh-bucket/prefix?endpoint=...``."""

    def make(endpoint: str, prefix: str = "repo", **query: str) -> str:
        bucket = new_bucket(endpoint)
        path = f"{bucket}/{prefix}" if prefix else bucket
        params = "&".join(f"{k}={v}" for k, v in {"endpoint": endpoint, **query}.items())
        return f"s3://{path}?{params}"

    return make


@pytest.fixture(params=["file", "moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def any_backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, not yet created repository location on each kind of backend."""
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    endpoint = request.getfixturevalue(f"{request.param}_endpoint")
    return request.getfixturevalue("make_s3_url")(endpoint)


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., object]]:
    """``fault_proxy(upstream, fault_rate=0.15, seed=0, kinds=None, ...)`` -> a running FaultProxy."""
    from tests.support.faultproxy import FaultProxy

    started: list[FaultProxy] = []

    def start(upstream: str, fault_rate: float = 0.15, seed: int = 0, **kwargs) -> FaultProxy:
        proxy = FaultProxy(upstream, fault_rate=fault_rate, seed=seed, **kwargs)
        proxy.start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
