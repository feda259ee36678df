"""Helpers of the cold-storage tests: a source tree and what S3 says about each object of a repository."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.s3servers import s3_client

KiB = 1024
STEPS = 40  # manual_restores: reads of an object per restore step (none -> in progress -> done)


def source_tree(root: Path, seed: int = 7) -> Path:
    rnd = random.Random(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        (root / ("sub" if i % 2 else "") / f"f{i}.bin").write_bytes(rnd.randbytes(200 * KiB + i))
    (root / "note.txt").write_text("hello cold world\n")
    return root


def objects_of(url: str) -> dict[str, dict]:
    """key -> {"class": storage class, "restore": x-amz-restore or ""} of every object of the repository."""
    parts = urlsplit(url)
    endpoint = dict(q.split("=", 1) for q in parts.query.split("&"))["endpoint"]
    client = s3_client(endpoint)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=parts.netloc):
        for obj in page.get("Contents", []):
            head = client.head_object(Bucket=parts.netloc, Key=obj["Key"])
            found[obj["Key"]] = {"class": head.get("StorageClass", "STANDARD"), "restore": head.get("Restore", "")}
    return found


cold_backends = pytest.mark.parametrize("any_backend_url", ["moto", "localstack"], indirect=True)


def drive(url: str, keys: list[str], state: str) -> None:
    """Read each key until moto shows its restore in ``state`` ("true": in progress, "false": done).

    moto answers "done" for a restore whose first step has not been taken yet, so a test starts every
    restore (``start``) before it finishes some (``finish``)."""
    parts = urlsplit(url)
    endpoint = dict(q.split("=", 1) for q in parts.query.split("&"))["endpoint"]
    client = s3_client(endpoint)
    for key in keys:
        for _ in range(3 * STEPS):
            if f'ongoing-request="{state}"' in client.head_object(Bucket=parts.netloc, Key=key).get("Restore", ""):
                break
        else:
            raise AssertionError(f"the restore of {key} did not get to ongoing-request={state}")


def start(url: str, keys: list[str]) -> None:
    drive(url, keys, "true")


def finish(url: str, keys: list[str]) -> None:
    drive(url, keys, "false")
