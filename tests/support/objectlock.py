"""Helpers of the Object Lock tests: buckets created with Object Lock, and what S3 says about an object."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

from tests.support.s3servers import s3_client


def locked_bucket(endpoint: str) -> str:
    """A fresh bucket created with Object Lock enabled (and so versioned), with no default retention."""
    name = f"pv-lock-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    s3_client(endpoint).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def lock_url(endpoint: str, prefix: str = "repo", **query: str) -> str:
    """``s3://locked-bucket/prefix?endpoint=...&<query>``."""
    params = "&".join(f"{k}={v}" for k, v in {"endpoint": endpoint, **query}.items())
    return f"s3://{locked_bucket(endpoint)}/{prefix}?{params}"


def retention_of(endpoint: str, bucket: str, key: str) -> dict:
    """The object's lock mode and retain-until date as HEAD shows them (empty: no retention)."""
    head = s3_client(endpoint).head_object(Bucket=bucket, Key=key)
    if "ObjectLockMode" not in head:
        return {}
    return {"Mode": head["ObjectLockMode"], "RetainUntilDate": head["ObjectLockRetainUntilDate"]}


def retained_for(retention: dict, mode: str, days: float) -> bool:
    """Whether ``retention`` is ``mode`` until about ``days`` from now (written within the last hour)."""
    if retention.get("Mode") != mode:
        return False
    now = datetime.now(UTC)
    until = retention["RetainUntilDate"]
    return now + timedelta(days=days) - timedelta(hours=1) < until <= now + timedelta(days=days, minutes=5)


def all_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every current key under ``prefix``."""
    paginator = s3_client(endpoint).get_paginator("list_objects_v2")
    return [obj["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", [])]
