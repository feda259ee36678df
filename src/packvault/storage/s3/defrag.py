"""Copy-forward for S3: a new object from byte ranges of existing ones, copied inside S3 where it pays.

The result equals borgstore's ``BackendBase.defrag`` byte for byte.  With an explicit ``target``, runs of
>= 5 MiB are copied inside S3 (UploadPartCopy with a source range) and only the small runs are downloaded
(``plan.py``).  Without one, the name is the hash of the content, which needs every byte on this side anyway:
then it is a parallel gather and one upload.  Before a server-side copy every range is checked against its
source's size (one HEAD per source), so a short or missing source is a ``ReadRangeError``/``ObjectNotFound``
as on every other path.  The new object is written by its namespace's write mode, like ``store``.
"""

from __future__ import annotations

import botocore.exceptions as bex
from borgstore.backends._base import validate_name
from borgstore.backends.errors import ObjectNotFound
from borgstore.utils import hashing
from borgstore.utils.nesting import nest

from ...errors import ConflictError, IntegrityError, StorageError
from ..layout import WriteMode
from ..payload import BufferPayload
from .errors import is_not_found, is_precondition_failed
from .multipart import CopySource, MultipartUpload
from .plan import CopyPart, DataPart, merge_runs, plan_copy_parts
from .reads import S3Reads
from .writes import CONDITIONAL, S3Writes

Sources = list[tuple[str, int, int]]


class S3Defrag:
    """``defrag`` of ``S3Backend`` over its reading and writing halves."""

    def __init__(self, reads: S3Reads, writes: S3Writes):
        self.reads = reads
        self.writes = writes
        self.bucket = writes.bucket

    def defrag(self, sources: Sources, *, target=None, algorithm=None, namespace=None, levels=0) -> str:
        """``sources`` validated by the caller; see the module doc."""
        sizes: dict[str, int] = {}
        sources = self.reads.absolute_sources(sources, sizes)
        if target is None:
            if algorithm is None:
                raise ValueError("Either target or algorithm must be given for defrag")
            data = self.reads.gather(sources)
            h = hashing.new(algorithm)
            h.update(data)
            target = h.hexdigest()
            if namespace:
                target = namespace.rstrip("/") + "/" + target
            if levels:
                target = nest(target, levels)
            self.writes.store(target, BufferPayload(data))
            return target
        validate_name(target)
        parts = plan_copy_parts(merge_runs(sources))
        if not any(isinstance(p, CopyPart) for p in parts):
            self.writes.store(target, BufferPayload(self.reads.gather(sources)))
            return target
        self.reads.check_ranges(sources, sizes)
        self._server_side(target, parts, sources)
        return target

    def _server_side(self, target: str, parts: list[CopyPart | DataPart], sources: Sources) -> None:
        """Assemble ``target`` from copies and uploaded parts, written by ``target``'s write mode like
        ``store``: create-only/first-wins completes with ``If-None-Match: *``, compare-and-swap with the ETag
        last seen, anything else overwrites."""
        bucket = self.bucket
        key = bucket.key(target)
        total = sum(p.size for p in parts)
        mode = self.writes.policy.mode(target)
        conditional = mode in CONDITIONAL and self.writes.conditions.hold()
        if mode in (WriteMode.CREATE_ONLY, WriteMode.FIRST_WINS) and not conditional:
            head = bucket.head(target)
            if head is not None:
                self._existing(target, mode, head, total, None, sources)
                return
        if not conditional:
            condition = {}
        elif mode is WriteMode.COMPARE_AND_SWAP:
            condition = self.writes.etags.condition(target)
        else:
            condition = {"IfNoneMatch": "*"}

        lock = self.writes.object_lock(target)

        def attempt() -> tuple[dict | None, str | None]:
            upload = MultipartUpload(bucket.client, bucket.request, bucket.name, key, self.writes.pool())
            try:
                upload.start(storage_class=self.writes.storage_class(target), lock=lock)
                for part in parts:
                    if isinstance(part, CopyPart):
                        upload.add_copy(CopySource(bucket.key(part.name), part.offset, part.size))
                    else:
                        upload.add_bytes(self.reads.gather(part.ranges))
                return upload.complete(condition)
            except bex.ClientError as exc:
                upload.abort()
                if is_precondition_failed(exc):
                    return {}, upload.expected_etag
                if is_not_found(exc):  # a source vanished after its size was checked
                    raise ObjectNotFound(f"a source of {target} vanished while it was copied") from None
                self.writes.refused(target, exc)
                raise
            except BaseException:
                upload.abort()
                raise

        response, expected = self.writes.restarting_on_conflict(key, attempt)
        if response:
            self.writes.etags.remember(target, response.get("ETag"))
            self.writes.confirm_lock(target, lock)
            return
        head = bucket.head(target)
        if response is None:  # the completion's answer was lost and the upload is gone: did it complete?
            if head is None or head.get("ETag") != expected:
                raise StorageError(f"server-side copy to {key} vanished without completing")
            self.writes.etags.remember(target, head.get("ETag"))
            self.writes.confirm_lock(target, lock)
            return
        if head is None:  # 412, then deleted: try again
            self._server_side(target, parts, sources)
            return
        self._existing(target, mode, head, total, expected, sources)

    def _existing(
        self, target: str, mode: WriteMode, head: dict, total: int, expected: str | None, sources: Sources
    ) -> None:
        """The conditional completion (or the HEAD before it) found ``target``: keep it (first-wins), accept
        it if it holds exactly the assembled bytes, else refuse (create-only) or report the lost race (CAS)."""
        if mode is WriteMode.FIRST_WINS:
            return
        same = head["ContentLength"] == total and (
            (expected is not None and head.get("ETag") == expected)
            or self.reads.load(target) == self.reads.gather(sources)
        )
        if mode is WriteMode.COMPARE_AND_SWAP:
            if not same:
                raise ConflictError(f"{target} was changed by another client since this one read it")
            self.writes.etags.remember(target, head.get("ETag"))
        elif not same:
            raise IntegrityError(f"{target} already exists with different content; refusing to overwrite it")
        self.bucket.counter.add("converged")
