"""Does the service behind a location honour conditional writes?  Probed once, remembered locally.

Some S3-compatible services accept ``If-None-Match: *`` and ignore it: no 501, the write simply replaces
what was there.  Create-only and compare-and-swap would then hold nowhere, silently.  The probe writes one
fresh key twice with ``If-None-Match: *``; the second write must fail with 412.  It costs two PUTs and a
DELETE, so its verdict is kept in the local cache directory under a digest of the location (endpoint,
bucket, prefix) and the probe runs again only when that record is missing, or after ``create`` (init), when
the service behind a location may have changed.

The probe key ends in borgstore's temporary suffix, so no listing shows it, and it is deleted right away.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

import botocore.exceptions as bex
from borgstore.constants import TMP_SUFFIX

from .s3_errors import is_not_implemented, is_precondition_failed

CACHE_SUBDIR = "s3-conditional-writes"


class ConditionalWrites(enum.Enum):
    HONOURED = "honoured"
    IGNORED = "ignored"  # accepted and ignored: the second create-only write replaced the first
    NOT_IMPLEMENTED = "not-implemented"  # answered 501


class ProbeRecord:
    """The remembered verdict for one location, a small JSON file replaced atomically."""

    def __init__(self, cache_dir: str | os.PathLike, identity: str):
        digest = hashlib.blake2b(identity.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        self.path = Path(cache_dir) / CACHE_SUBDIR / digest
        self.identity = identity

    def load(self) -> ConditionalWrites | None:
        try:
            record = json.loads(self.path.read_text())
            if record.get("location") != self.identity:
                return None
            return ConditionalWrites(record["conditional_writes"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # missing or unreadable: probe again

    def save(self, verdict: ConditionalWrites) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".probe.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"location": self.identity, "conditional_writes": verdict.value}, f)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def probe_key(base: str) -> str:
    return f"{base}conditional-write-probe-{uuid.uuid4().hex}{TMP_SUFFIX}"


def probe(put: Callable[[bytes], object], delete: Callable[[], object]) -> ConditionalWrites:
    """Write a fresh key twice with ``If-None-Match: *`` (``put``), then remove it (``delete``).

    ``put(body)`` sends one conditional PUT of ``body`` with the caller's retries; a 412 on the *first*
    write can only mean that a retry met the attempt whose answer was lost (the key is new and ours), which
    proves the condition is honoured just as well.
    """
    try:
        put(b"1")
    except bex.ClientError as exc:
        if is_not_implemented(exc):
            return ConditionalWrites.NOT_IMPLEMENTED
        if not is_precondition_failed(exc):
            raise
        delete()
        return ConditionalWrites.HONOURED
    try:
        put(b"2")
    except bex.ClientError as exc:
        if is_precondition_failed(exc):
            return ConditionalWrites.HONOURED
        if is_not_implemented(exc):
            return ConditionalWrites.NOT_IMPLEMENTED
        raise
    finally:
        delete()
    return ConditionalWrites.IGNORED


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()
