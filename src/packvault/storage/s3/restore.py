"""Cold objects: whether a GLACIER/DEEP_ARCHIVE object is readable, and asking S3 for a readable copy.

S3 refuses a GET of an object in GLACIER or DEEP_ARCHIVE (``InvalidObjectState``) until a RestoreObject
request has made a temporary copy of it readable.  HEAD tells the state without a retrieval charge: the
``x-amz-storage-class`` header names the class, ``x-amz-restore`` says ``ongoing-request="true"`` while the
copy is being made and ``ongoing-request="false", expiry-date=...`` once it is there.  GLACIER_IR and every
other class are readable as they are.
"""

from __future__ import annotations

import botocore.exceptions as bex
from borgstore.backends.errors import ObjectNotFound

from ...errors import ColdObject, UsageError
from ..backend import COLD, READABLE, RESTORING
from .bucket import S3Bucket
from .config import NEEDS_RESTORE
from .errors import error_code

TIERS = {"bulk": "Bulk", "standard": "Standard", "expedited": "Expedited"}


def state_of(head: dict) -> str:
    """The readability of an object from its HEAD answer (module doc)."""
    if head.get("StorageClass") not in NEEDS_RESTORE:
        return READABLE
    restore = head.get("Restore") or ""
    if not restore:
        return COLD
    return RESTORING if 'ongoing-request="true"' in restore else READABLE


def restore_status(bucket: S3Bucket, name: str) -> tuple[str, int]:
    head = bucket.head(name)
    if head is None:
        raise ObjectNotFound(name)
    return state_of(head), head["ContentLength"]


def restore(bucket: S3Bucket, name: str, *, days: int, tier: str) -> str:
    """One RestoreObject request; a restore already running (409) is not an error, it is the answer."""
    if tier not in TIERS:
        raise UsageError(f"unknown restore tier {tier!r}", hint=f"use one of {', '.join(TIERS)}")
    if days < 1:
        raise UsageError("--restore-days must be at least 1")
    key = bucket.key(name)
    request = {"Days": days, "GlacierJobParameters": {"Tier": TIERS[tier]}}
    try:
        response = bucket.request(
            f"RESTORE {key}",
            lambda: bucket.client.restore_object(Bucket=bucket.name, Key=key, RestoreRequest=request),
        )
    except bex.ClientError as exc:
        code = error_code(exc)
        if code == "RestoreAlreadyInProgress":
            return RESTORING
        if code in {"NoSuchKey", "404"}:
            raise ObjectNotFound(name) from None
        raise
    except ColdObject:  # InvalidObjectState (translated): not in a class that needs a restore, e.g. STANDARD
        return READABLE
    # 200: a readable copy exists already (its expiry was extended); 202: accepted, the copy is being made
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 202)
    return READABLE if status == 200 else RESTORING
