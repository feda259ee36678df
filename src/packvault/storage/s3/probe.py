"""Does the service behind a location honour conditional writes?  Probed once, remembered locally.

Some S3-compatible services accept ``If-None-Match: *`` and ignore it: no 501, the write simply replaces
what was there.  Create-only and compare-and-swap would then hold nowhere, silently.  The probe writes one
fresh key twice with ``If-None-Match: *``; the second write must fail with 412.  It costs two PUTs and a
DELETE, so its verdict is kept in the local cache directory under a digest of the location (endpoint,
bucket, prefix) and the probe runs again only when that record is missing, or after ``create`` (init), when
the service behind a location may have changed.

The probe key ends in borgstore's temporary suffix, so no listing shows it, and it is deleted right away.

``ConditionalWriteSupport`` keeps the verdict for one backend: unknown until the first conditional write
needs it (then read from the record, or probed), or until a conditional write is answered 501.  A service
that ignores the condition is treated like one that answers 501: one warning, then the writers fall back to
HEAD-then-PUT.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import hashlib
import json
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import botocore.exceptions as bex
from borgstore.constants import TMP_SUFFIX

from .bucket import S3Bucket
from .errors import is_not_implemented, is_precondition_failed, is_transient_or_conflict

log = logging.getLogger(__name__)

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


class ConditionalWriteSupport:
    """Whether the conditional writes of one backend's location can be relied on (module doc)."""

    def __init__(self, bucket: S3Bucket, cache_dir: str | os.PathLike | None):
        self.bucket = bucket
        location = bucket.settings.location()
        self.location = location
        self.record = ProbeRecord(cache_dir, f"{bucket.endpoint} {location}") if cache_dir is not None else None
        self.verdict: ConditionalWrites | None = None  # None: not known (yet); trusted until a 501
        self._probe_lock = threading.Lock()
        self._warn_lock = threading.Lock()
        self._warned = False

    def forget(self) -> None:
        """At init: the service behind the location may have changed; the first conditional write probes."""
        if self.record is not None:
            self.record.forget()
        self.verdict = None

    def recall(self) -> None:
        """At open: take the remembered verdict, if any (None: probed at the first conditional write)."""
        if self.record is not None and self.verdict is None:
            self.verdict = self.record.load()

    def hold(self) -> bool:
        """Whether conditional writes can be relied on; probes the location first if that is not known.

        False means: the one-time warning was given and writes use the HEAD-then-PUT fallback.
        """
        if self.verdict is None and self.record is not None:
            with self._probe_lock:
                if self.verdict is None:
                    self.verdict = self.record.load() or self._probe()
        verdict = self.verdict
        if verdict is None or verdict is ConditionalWrites.HONOURED:
            return True
        self._warn(verdict)
        return False

    def learn_not_implemented(self) -> None:
        """A conditional write was answered 501: remember it, warn once; callers then fall back."""
        with self._probe_lock:
            known = self.verdict is ConditionalWrites.NOT_IMPLEMENTED
            self.verdict = ConditionalWrites.NOT_IMPLEMENTED
        if not known:
            self._save(ConditionalWrites.NOT_IMPLEMENTED)
        self._warn(ConditionalWrites.NOT_IMPLEMENTED)

    def _probe(self) -> ConditionalWrites:
        bucket = self.bucket
        key = probe_key(bucket.base)

        def put(body: bytes) -> None:
            bucket.request(
                f"PUT {key} (conditional-write probe)",
                lambda: bucket.client.put_object(
                    Bucket=bucket.name, Key=key, Body=body, ContentMD5=content_md5(body), IfNoneMatch="*"
                ),
                transient=is_transient_or_conflict,
            )

        verdict = probe(put, lambda: bucket.delete(key))
        log.info("conditional writes at %s: %s", self.location, verdict.value)
        self._save(verdict)
        return verdict

    def _save(self, verdict: ConditionalWrites) -> None:
        if self.record is None:
            return
        try:
            self.record.save(verdict)
        except OSError as exc:  # the verdict still holds for this run; the next one probes again
            log.info("could not remember the conditional-write probe in %s: %s", self.record.path, exc)

    def _warn(self, verdict: ConditionalWrites) -> None:
        with self._warn_lock:
            if self._warned:
                return
            self._warned = True
        reason = (
            "it ignores If-None-Match: a probe overwrote its own object"
            if verdict is ConditionalWrites.IGNORED
            else "501 NotImplemented"
        )
        message = (
            f"S3 endpoint {self.bucket.endpoint} does not support conditional writes ({reason}); "
            "falling back to check-then-write: concurrent writers are no longer detected reliably"
        )
        log.warning(message)  # once per backend; the CLI shows warnings as one line on stderr
