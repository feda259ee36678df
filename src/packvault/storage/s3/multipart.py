"""One S3 multipart upload: parts in parallel, completed conditionally, aborted on any failure.

Parts are either a range of a payload we hold in memory or in a spool file (UploadPart with Content-MD5,
read through a small file-like reader, never copied whole, see ``payload.py``) or a byte range of an
object already in the bucket (UploadPartCopy).  A failure anywhere aborts the upload, so no invisible,
billed, incomplete upload is left behind (the one exception: a lost response to CreateMultipartUpload,
whose id we never learn; a bucket lifecycle rule for incomplete uploads covers that, see
docs/s3-backend.md).

Completion carries the write condition (``If-None-Match: *`` or ``If-Match``).  If the response to the
completion is lost and the retry finds the upload gone (``NoSuchUpload``), the object may well be complete:
the caller checks the object's ETag against ``expected_etag``, the multipart ETag S3 computes from the
part ETags.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass

from ..payload import BufferPayload, Payload
from .errors import error_code

log = logging.getLogger(__name__)


@dataclass
class CopySource:
    key: str
    offset: int
    size: int


class UploadGone(Exception):
    """The completion retry found no upload: it was probably completed by the attempt whose answer was lost."""


def multipart_etag(part_etags: list[str]) -> str:
    """The ETag S3 gives a multipart object: MD5 over the binary part MD5s, dash, number of parts."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e.strip('"')) for e in part_etags)).hexdigest()
    return f'"{digest}-{len(part_etags)}"'


class MultipartUpload:
    def __init__(self, client, request: Callable, bucket: str, key: str, pool: Executor):
        self.client = client
        self.request = request  # request(what, fn) -> result, with retries and error translation
        self.bucket = bucket
        self.key = key
        self.pool = pool
        self.upload_id: str | None = None
        self.expected_etag: str | None = None  # the object's ETag if the completion succeeds, once known
        self._futures: list[tuple[int, Future]] = []

    def start(
        self, *, storage_class: str | None = None, metadata: dict[str, str] | None = None, lock: dict | None = None
    ) -> None:
        """Create the upload; ``lock``: the Object Lock arguments the completed object gets (``writes.py``)."""
        kwargs: dict = {"Bucket": self.bucket, "Key": self.key, **(lock or {})}
        if storage_class:
            kwargs["StorageClass"] = storage_class
        if metadata:
            kwargs["Metadata"] = metadata
        response = self.request(
            f"CreateMultipartUpload {self.key}", lambda: self.client.create_multipart_upload(**kwargs)
        )
        self.upload_id = response["UploadId"]

    def _number(self) -> int:
        return len(self._futures) + 1

    def add_bytes(self, data: bytes | memoryview) -> None:
        self.add_part(BufferPayload(data), 0, len(data))

    def add_part(self, payload: Payload, start: int, size: int) -> None:
        """Upload ``[start, start + size)`` of ``payload`` as the next part, without copying the part.

        The part's MD5 is computed once, in the pool thread; every attempt reads the range through a fresh
        reader (``payload.reader``), so a retried part starts again from its first byte.
        """
        number = self._number()

        def upload():
            md5 = base64.b64encode(payload.range_md5(start, size)).decode()
            return self.request(
                f"UploadPart {number} of {self.key}",
                lambda: self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=payload.reader(start, size),
                    ContentMD5=md5,
                ),
            )["ETag"]

        self._futures.append((number, self.pool.submit(upload)))

    def add_copy(self, source: CopySource) -> None:
        number = self._number()
        byte_range = f"bytes={source.offset}-{source.offset + source.size - 1}"

        def copy():
            return self.request(
                f"UploadPartCopy {number} of {self.key} from {source.key}",
                lambda: self.client.upload_part_copy(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.bucket, "Key": source.key},
                    CopySourceRange=byte_range,
                ),
            )["CopyPartResult"]["ETag"]

        self._futures.append((number, self.pool.submit(copy)))

    def complete(self, condition: dict[str, str]) -> tuple[dict | None, str]:
        """Wait for the parts and complete; return (response or None if the upload was gone, expected ETag)."""
        parts = [{"PartNumber": number, "ETag": future.result()} for number, future in self._futures]
        expected = multipart_etag([p["ETag"] for p in parts])
        self.expected_etag = expected  # also for a caller whose completion fails (412: is it ours?)
        attempts = 0

        def finish():
            nonlocal attempts
            attempts += 1
            try:
                return self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition,
                )
            except Exception as exc:
                if attempts > 1 and error_code(exc) == "NoSuchUpload":
                    raise UploadGone() from exc
                raise

        try:
            return self.request(f"CompleteMultipartUpload {self.key}", finish), expected
        except UploadGone:
            return None, expected

    def abort(self) -> None:
        """Best effort: wait for running parts, then abort; never hides the original failure."""
        for _, future in self._futures:
            future.cancel()
        for _, future in self._futures:
            # a cancelled future raises here; the caller reports the first error
            with contextlib.suppress(BaseException):
                future.exception()
        if self.upload_id is None:
            return
        try:
            self.request(
                f"AbortMultipartUpload {self.key}",
                lambda: self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id),
            )
        except Exception as exc:
            if error_code(exc) != "NoSuchUpload":
                log.warning("could not abort multipart upload %s of %s: %s", self.upload_id, self.key, exc)
