"""Every write of the S3 backend: stores by the namespace's write policy, deletes and moves.

The policy is handed in (``storage/layout.py``'s ``WritePolicy``: create-only, first-wins, compare-and-swap
or overwrite, per namespace); this module knows no namespace.

- Create-only and first-wins keys are written with ``If-None-Match: *``.  A 412 means "it is there already":
  for create-only, when its size and MD5 equal ours (a retry whose first answer was lost, or a second writer
  of the same content-named object) the write succeeded, otherwise it is an ``IntegrityError`` and the
  object is never overwritten; for first-wins the existing object stays.
- Compare-and-swap keys carry ``If-Match`` with the ETag this backend last saw (``EtagMemory``), or
  ``If-None-Match: *`` when it saw none; a lost race is a ``ConflictError``.
- A 409 (conditional writes to one key raced) repeats a PUT and starts a multipart upload again.
- Where the service does not honour conditions (``probe.ConditionalWriteSupport``), HEAD-then-PUT.
- Upload bodies are fresh file-like readers over a ``Payload`` (memory we hold, or a spooled pack), one per
  attempt, so each retry starts at offset 0 and nothing is copied whole (``storage/payload.py``).  Uploads
  carry ``Content-MD5`` and the MD5 of the whole content as ``x-amz-meta-pv-md5``.
- With S3 Object Lock (``S3Settings.object_lock``), every object the policy locks (all but lock records)
  gets its mode and a retain-until date (now + retention) on the request that creates it: the PUT, the
  CreateMultipartUpload (parts inherit it; UploadPartCopy targets included), the CopyObject of a move.
  A completed multipart upload is confirmed with one PutObjectRetention (``confirm_lock``): not every
  service applies the headers of CreateMultipartUpload (moto drops them), and an object above the multipart
  threshold is rare enough that the request costs nothing worth counting.
  S3 demands Content-MD5 (or a flexible checksum) on such PUTs and parts, which every upload here sends.
  Before the first locked write the bucket's Object Lock configuration is asked for once (one request per
  writing run): some services accept the headers on a bucket without Object Lock and ignore them
  (LocalStack does).  A bucket without Object Lock, or a service that refuses the headers, stops the write
  (``ObjectLockUnavailable``): writing unprotected objects into a repository that promises protection
  would be a silent downgrade.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import botocore.exceptions as bex
from borgstore.backends.errors import ObjectNotFound

from ...errors import ConflictError, IntegrityError, StorageError
from ..layout import WriteMode, WritePolicy
from ..payload import Payload
from .bucket import MD5_META, EtagMemory, ListedSizes, S3Bucket
from .config import MIN_PART_SIZE
from .errors import (
    ObjectLockUnavailable,
    error_code,
    is_conflict,
    is_not_found,
    is_not_implemented,
    is_object_lock_refused,
    is_precondition_failed,
    is_transient_or_conflict,
)
from .multipart import MultipartUpload
from .probe import ConditionalWriteSupport

log = logging.getLogger(__name__)
T = TypeVar("T")

CONDITIONAL = (WriteMode.CREATE_ONLY, WriteMode.FIRST_WINS, WriteMode.COMPARE_AND_SWAP)


def same_content(head: dict, size: int, md5: bytes) -> bool | None:
    """Compare a HEAD answer with our content: True/False when decidable, None when not (no MD5 known)."""
    if head["ContentLength"] != size:
        return False
    stored = head.get("Metadata", {}).get(MD5_META)
    if stored:
        return stored == md5.hex()
    etag = head.get("ETag", "").strip('"')
    if etag and "-" not in etag:
        return etag == md5.hex()
    return None


class S3Writes:
    """The writing half of ``S3Backend``; ``pool()`` is the backend's thread pool (parts in parallel)."""

    def __init__(
        self,
        bucket: S3Bucket,
        policy: WritePolicy,
        conditions: ConditionalWriteSupport,
        etags: EtagMemory,
        pool: Callable[[], Executor],
        sizes: ListedSizes,
    ):
        self.bucket = bucket
        self.policy = policy
        self.conditions = conditions
        self.etags = etags
        self.pool = pool
        self.sizes = sizes  # a deleted (or moved) object's listed size no longer holds
        self._lock_checked = False

    def storage_class(self, name: str) -> str | None:
        """The class ``name`` is written to: data packs the data class, lock records the bucket's default
        (they live for minutes, and infrequent-access classes bill at least 30 days), the rest the hot one."""
        settings = self.bucket.settings
        if self.policy.is_data(name):
            return settings.data_storage_class
        return settings.hot_storage_class if self.policy.is_locked(name) else None

    def object_lock(self, name: str) -> dict:
        """The Object Lock arguments of a request creating ``name`` (none without a lock or for lock records)."""
        settings = self.bucket.settings
        if not settings.object_lock or not self.policy.is_locked(name):
            return {}
        if not self._lock_checked:
            if not self.bucket.object_lock_enabled():
                raise ObjectLockUnavailable(
                    f"bucket {self.bucket.name} has no Object Lock enabled; refusing to write {name} without "
                    f"the repository's {settings.object_lock.lower()} retention"
                )
            self._lock_checked = True
        until = datetime.now(UTC) + timedelta(seconds=settings.retention_seconds)
        return {"ObjectLockMode": settings.object_lock, "ObjectLockRetainUntilDate": until}

    def confirm_lock(self, name: str, lock: dict) -> None:
        """Set ``lock`` on the object a multipart upload just completed (see the module doc)."""
        if lock:
            self.bucket.put_retention(self.bucket.key(name), lock["ObjectLockMode"], lock["ObjectLockRetainUntilDate"])

    def refused(self, name: str, exc: bex.ClientError) -> None:
        """Raise ``ObjectLockUnavailable`` when ``exc`` is the service refusing the retention of ``name``."""
        if self.bucket.settings.object_lock and self.policy.is_locked(name) and is_object_lock_refused(exc):
            raise ObjectLockUnavailable(
                f"cannot write {name} with Object Lock retention to bucket {self.bucket.name}: "
                f"{exc.response.get('Error', {}).get('Message') or error_code(exc)}"
            ) from None

    def store(self, name: str, payload: Payload) -> None:
        """Write ``name`` by its namespace's write mode."""
        try:
            self._store(name, payload)
        except bex.ClientError as exc:
            self.refused(name, exc)
            raise

    def _store(self, name: str, payload: Payload) -> None:
        mode = self.policy.mode(name)
        if mode is WriteMode.COMPARE_AND_SWAP:
            self._store_cas(name, payload)
        elif mode in (WriteMode.CREATE_ONLY, WriteMode.FIRST_WINS):
            self.store_create_only(name, payload, mode)
        else:
            self._upload(name, payload, {})

    def store_create_only(self, name: str, payload: Payload, mode: WriteMode) -> None:
        """Write ``name`` unless it exists; an existing one is compared (create-only) or kept (first-wins).

        Above the multipart threshold a HEAD goes first: a 412 comes only with the completion, after every
        part was uploaded, and re-storing a pack (a retried backup, a second writer) must not cost its size.
        """
        conditional = self.conditions.hold()
        if not conditional or payload.size > self.bucket.settings.multipart_threshold:
            head = self.bucket.head(name)
            if head is not None:
                self._existing(name, payload, mode, head)
                return
        if not conditional:
            self._upload(name, payload, {})
            return
        try:
            self._upload(name, payload, {"IfNoneMatch": "*"})
        except bex.ClientError as exc:
            if is_precondition_failed(exc):
                if mode is not WriteMode.FIRST_WINS:  # for first-wins a 412 says all there is to know
                    self._existing(name, payload, mode, self.bucket.head(name))
            elif is_not_implemented(exc):
                self.conditions.learn_not_implemented()
                self.store_create_only(name, payload, mode)
            else:
                raise

    def _store_cas(self, name: str, payload: Payload) -> None:
        condition = self.etags.condition(name) if self.conditions.hold() else {}
        try:
            etag = self._upload(name, payload, condition)
        except bex.ClientError as exc:
            if is_not_implemented(exc) and condition:
                self.conditions.learn_not_implemented()
                etag = self._upload(name, payload, {})
            elif is_precondition_failed(exc):
                head = self.bucket.head(name)
                if head is None or not same_content(head, payload.size, payload.md5):
                    raise ConflictError(f"{name} was changed by another client since this one read it") from None
                # our own earlier attempt landed and its answer was lost
                self.bucket.counter.add("converged")
                etag = head.get("ETag")
            else:
                raise
        self.etags.remember(name, etag)

    def _upload(self, name: str, payload: Payload, condition: dict[str, str]) -> str | None:
        """PUT or multipart upload with ``condition``; return the new ETag.

        The body is never a copy of the whole object: each attempt gets a fresh reader over the payload
        (``payload.reader()``), so a retry starts from offset 0 whatever the failed attempt had sent.  A 409
        (a conditional write to the same key raced with ours and ours was not applied) is sent again.
        """
        if payload.size > self.bucket.settings.multipart_threshold:
            return self._upload_multipart(name, payload, condition)
        bucket = self.bucket
        key = bucket.key(name)
        kwargs = {
            "Bucket": bucket.name,
            "Key": key,
            "ContentMD5": base64.b64encode(payload.md5).decode(),
            "Metadata": {MD5_META: payload.md5.hex()},
            **condition,
        }
        storage_class = self.storage_class(name)
        if storage_class:
            kwargs["StorageClass"] = storage_class
        kwargs.update(self.object_lock(name))
        return bucket.request(
            f"PUT {key}",
            lambda: bucket.client.put_object(Body=payload.reader(), **kwargs),
            transient=is_transient_or_conflict,
        ).get("ETag")

    def _upload_multipart(self, name: str, payload: Payload, condition: dict[str, str]) -> str | None:
        bucket = self.bucket
        key = bucket.key(name)
        part_size = max(bucket.settings.part_size, MIN_PART_SIZE)

        lock = self.object_lock(name)

        def attempt() -> tuple[dict | None, str]:
            upload = MultipartUpload(bucket.client, bucket.request, bucket.name, key, self.pool())
            try:
                upload.start(storage_class=self.storage_class(name), metadata={MD5_META: payload.md5.hex()}, lock=lock)
                for start in range(0, payload.size, part_size):
                    upload.add_part(payload, start, min(part_size, payload.size - start))
                return upload.complete(condition)
            except BaseException:
                upload.abort()
                raise

        response, expected = self.restarting_on_conflict(key, attempt)
        if response is None:  # the completion's answer was lost, the upload is gone: did it complete?
            head = bucket.head(name)
            if head is None or head.get("ETag") != expected:
                raise StorageError(f"multipart upload of {key} vanished without completing")
            self.confirm_lock(name, lock)
            return head.get("ETag")
        self.confirm_lock(name, lock)
        return response.get("ETag")

    def restarting_on_conflict(self, key: str, attempt: Callable[[], T]) -> T:
        """Run a whole multipart upload, and again from its start after a 409 on its completion (S3 cannot
        complete that upload any more), with the retry policy's bounds and backoff between the attempts."""
        policy = self.bucket.settings.retry
        for number in range(1, policy.attempts + 1):
            try:
                return attempt()
            except bex.ClientError as exc:
                if not is_conflict(exc):
                    raise
                self.bucket.counter.add("retries")
                log.info("multipart upload of %s raced with another conditional write; starting it again", key)
                if number < policy.attempts:
                    time.sleep(policy.delay(number))
        raise ConflictError(
            f"the multipart upload of {key} lost {policy.attempts} races against concurrent writes to the same key"
        )

    def _existing(self, name: str, payload: Payload, mode: WriteMode, head: dict | None) -> None:
        """The key exists (``head``; None if it vanished since): first-wins keeps it; create-only succeeds if
        it holds our bytes and never overwrites it otherwise."""
        if head is None:  # deleted in between: write it again
            self.store_create_only(name, payload, mode)
            return
        if mode is WriteMode.FIRST_WINS:
            log.debug("%s exists already; the first write stands", name)
            return
        same = same_content(head, payload.size, payload.md5)
        if same is None:
            data, _ = self.bucket.get(name, None, verify=True)
            same = payload.same_bytes(data)
        if not same:
            raise IntegrityError(f"{name} already exists with different content; refusing to overwrite it")
        self.bucket.counter.add("converged")
        log.info("%s was already stored with the same content (retried or concurrent write)", name)

    def delete(self, name: str) -> None:
        """HEAD then DELETE: S3's DELETE succeeds for missing keys, borgstore wants ``ObjectNotFound``."""
        if self.bucket.head(name) is None:
            raise ObjectNotFound(name)
        self.discard(name)

    def discard(self, name: str) -> None:
        """DELETE without asking first whether the object exists (one request, not two)."""
        self.sizes.forget(name)
        self.bucket.delete(self.bucket.key(name))
        self.etags.remember(name, None)

    def discard_many(self, names: Sequence[str]) -> None:
        """DeleteObjects of every name (``S3Bucket.delete_keys``), none asked for first."""
        for name in names:
            self.sizes.forget(name)
        self.bucket.delete_keys([self.bucket.key(name) for name in names])
        for name in names:
            self.etags.remember(name, None)

    def move(self, curr_name: str, new_name: str) -> None:
        """Server-side copy, then delete the source (overwrites the target, as borgstore demands).

        A move onto itself changes nothing (as a rename on the file backend); S3 would refuse the copy.
        """
        bucket = self.bucket
        if curr_name == new_name:
            if bucket.head(curr_name) is None:
                raise ObjectNotFound(curr_name)
            return
        src, dst = bucket.key(curr_name), bucket.key(new_name)
        kwargs = {
            "Bucket": bucket.name,
            "Key": dst,
            "CopySource": {"Bucket": bucket.name, "Key": src},
            "MetadataDirective": "COPY",
        }
        storage_class = self.storage_class(new_name)
        if storage_class:
            kwargs["StorageClass"] = storage_class
        kwargs.update(self.object_lock(new_name))
        try:
            result = bucket.request(f"COPY {src} -> {dst}", lambda: bucket.client.copy_object(**kwargs))
        except bex.ClientError as exc:
            if is_not_found(exc):
                raise ObjectNotFound(curr_name) from None
            self.refused(new_name, exc)
            raise
        self.etags.remember(new_name, result.get("CopyObjectResult", {}).get("ETag"))
        self.sizes.forget(curr_name)
        self.sizes.forget(new_name)
        bucket.delete(src)
        self.etags.remember(curr_name, None)
