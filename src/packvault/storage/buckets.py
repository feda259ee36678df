"""Objects of a bucket, for the archive layer: a bucket backed up as a source, or restored into as a target.

``archive/`` reads and writes plain objects of a user's bucket (not a repository), and it must not know
botocore, the client, S3's error codes or the request counter: this module is all of that it may use.
Everything runs on the S3 backend's machinery, so there is one of each: the location syntax
(``s3/config.py``), the counted client (``s3/client.py``), the bounded retry policy (``retry.py``), the
paging loop (``s3/listing.py``) and the resumable download (``s3/stream.py``).

Failures are ``StorageError``s.  Those that end a job (missing bucket, access denied, no credentials, an
endpoint that stays down) are the usual subclasses; for the others, whose meaning depends on the caller (a
missing key is a vanished file to a backup, a 412 is a kept object to a restore), ``refusal(exc)`` names
the service's answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from ..errors import StorageError
from .accounting import RequestCounter
from .s3.bucket import request
from .s3.client import make_client
from .s3.config import S3Settings, parse_s3_url
from .s3.errors import error_code, is_not_found, is_precondition_failed
from .s3.listing import pages
from .s3.stream import RangeStream
from .settings import StorageSettings

T = TypeVar("T")

BucketLocation = S3Settings  # ``s3://bucket[/prefix][?endpoint=...]``: bucket, prefix, location(), ...

NOT_FOUND = "NotFound"  # ``refusal``: no such key (or bucket, for a bucket request)
PRECONDITION_FAILED = "PreconditionFailed"  # ``refusal``: If-Match / If-None-Match did not hold


def parse_location(url: str, settings: StorageSettings | None = None) -> BucketLocation:
    """``s3://bucket[/prefix][?endpoint=...]``, the repository URL syntax; ``settings``: the environment's
    defaults (``settings.from_environment``)."""
    return parse_s3_url(url, settings=settings)


def refusal(exc: BaseException) -> str | None:
    """The service's answer behind a failed request: ``NOT_FOUND``, ``PRECONDITION_FAILED``, or S3's error
    code ("" when it gave none); None when no answer of the service caused ``exc``."""
    cause = exc.__cause__ if isinstance(exc, StorageError) else exc
    if not isinstance(cause, ClientError):
        return None
    if is_not_found(cause):
        return NOT_FOUND
    if is_precondition_failed(cause):
        return PRECONDITION_FAILED
    return error_code(cause)


def client_key(location: BucketLocation) -> tuple:
    """Locations with the same key share one client (connection pool, credentials)."""
    return (location.endpoint, location.region, location.profile, location.path_style, location.retry)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    modified: datetime | None  # None where the service did not say


class Buckets:
    """The buckets one job reads or writes: a client per endpoint and credentials, one request counter.

    ``requests`` counts every HTTP attempt (LIST, HEAD, GET, PUT, ..., ``bytes_down``/``bytes_up``), plus
    ``extra_counts`` (``resumed``: downloads resumed after a broken connection)."""

    def __init__(self, extra_counts: tuple[str, ...] = ()):
        self.requests = RequestCounter(extra_keys=extra_counts)
        self._clients: dict[tuple, object] = {}

    def bucket(self, location: BucketLocation) -> Bucket:
        key = client_key(location)
        if key not in self._clients:
            self._clients[key] = make_client(location, self.requests)
        return Bucket(location, self._clients[key], self.requests)

    def request_stats(self) -> dict[str, int]:
        return self.requests.snapshot()


class Bucket:
    """The objects of ``location.bucket`` (keys are full keys: the location's prefix is the caller's)."""

    def __init__(self, location: BucketLocation, client, requests: RequestCounter):
        self.location = location
        self.name = location.bucket
        self._client = client
        self._requests = requests

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """One request with the bounded retries (the S3 backend's ``bucket.request``); every final failure is
        a ``StorageError`` (``refusal`` tells which answer it was)."""
        label = self.location.endpoint_label()
        try:
            return request(self.location, label, what, fn)
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"{what} failed at {label}: {error_code(exc) or exc}") from exc

    # --- reading --------------------------------------------------------------------------------------------

    def list(self, prefix: str, *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (and sorts after ``start_after``), in S3's (byte)
        order of keys."""

        def list_page(kwargs: dict) -> dict:
            return self.call(f"list {self.location.location()}", lambda: self._client.list_objects_v2(**kwargs))

        for page in pages(list_page, self.name, prefix, start_after=start_after):
            for obj in page.get("Contents", ()):
                yield ObjectInfo(obj["Key"], int(obj["Size"]), obj.get("ETag", ""), obj["LastModified"])

    def head(self, key: str, what: str | None = None) -> ObjectInfo | None:
        """The object ``key``; None if there is none."""
        try:
            head = self.call(
                what or f"look up s3://{self.name}/{key}", lambda: self._client.head_object(Bucket=self.name, Key=key)
            )
        except StorageError as exc:
            if refusal(exc) == NOT_FOUND:
                return None
            raise
        return ObjectInfo(key, int(head["ContentLength"]), head.get("ETag", ""), head["LastModified"])

    def check_exists(self, what: str) -> None:
        """One HEAD of the bucket: a missing bucket is a ``StorageError`` whose ``refusal`` is ``NOT_FOUND``."""
        self.call(what, lambda: self._client.head_bucket(Bucket=self.name))

    def open(self, key: str, *, etag: str, size: int) -> ObjectReader:
        """The version ``etag`` (as listed) of the object ``key``, as a stream; see ``ObjectReader``."""
        return ObjectReader(self, key, etag, size)

    # --- writing --------------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, md5: str, if_match: str | None = None, create_only: bool = False) -> None:
        """One PUT of ``data`` (``md5``: its Content-MD5), conditional with ``if_match`` (the object must still
        be that version) or ``create_only`` (the key must be free); a failed condition is a ``StorageError``
        whose ``refusal`` is ``PRECONDITION_FAILED``.  Repeating it is harmless: same key, same bytes."""
        kwargs = {"Bucket": self.name, "Key": key, "Body": data, "ContentMD5": md5, **_condition(if_match, create_only)}
        self.call(f"write s3://{self.name}/{key}", lambda: self._client.put_object(**kwargs))

    def upload(self, key: str) -> ObjectUpload:
        """A multipart upload of ``key``, started with its first part."""
        return ObjectUpload(self, key)


def _condition(if_match: str | None, create_only: bool) -> dict[str, str]:
    if if_match is not None:
        return {"IfMatch": if_match}
    return {"IfNoneMatch": "*"} if create_only else {}


class ObjectReader:
    """The body of one object as a stream of exactly the bytes of one version.

    Every GET carries ``If-Match`` with the listed ETag.  If the object was replaced between the listing
    and the first GET, the current version is read instead: ``replaced`` is then the ``ObjectInfo`` of what
    is read.  A connection that breaks mid-object is resumed with a ranged GET (``s3/stream.py``) under the
    retry policy, counted as ``resumed``; a version change in the middle of a read fails the read with a
    ``StorageError`` whose ``refusal`` is ``PRECONDITION_FAILED``.  The first GET is made when it is opened
    (not for an empty object), so a replaced object is known before anything is read.
    """

    def __init__(self, bucket: Bucket, key: str, etag: str, size: int):
        self._bucket = bucket
        self.key = key
        self.etag = etag
        self.size = size
        self.replaced: ObjectInfo | None = None
        self._what = f"read s3://{bucket.name}/{key}"
        body = None
        if size > 0:
            try:
                response = self._get(0, size - 1, if_match=True, whole=True)
            except StorageError as exc:
                if refusal(exc) != PRECONDITION_FAILED:
                    raise
                response = self._get(0, None, if_match=False, whole=True)
                self.etag = response.get("ETag", "")
                self.size = int(response.get("ContentLength", 0))
                self.replaced = ObjectInfo(key, self.size, self.etag, response.get("LastModified"))
            body = response["Body"]
        requests = bucket._requests
        self._stream = RangeStream(
            lambda first, last: self._get(first, last, if_match=True)["Body"],
            lambda fn: bucket.call(self._what, fn),
            0,
            self.size,
            lambda n: requests.add("bytes_down", n),
            body=body,
            on_resume=lambda: requests.add("resumed"),
        )

    def _get(self, first: int, last: int | None, *, if_match: bool, whole: bool = False) -> dict:
        """A GET from byte ``first`` (the whole object when ``whole`` and ``first`` is 0)."""
        kwargs = {"Bucket": self._bucket.name, "Key": self.key}
        if if_match and self.etag:
            kwargs["IfMatch"] = self.etag
        if first or not whole:
            kwargs["Range"] = f"bytes={first}-" if last is None else f"bytes={first}-{last}"
        client = self._bucket._client
        if whole:  # the first GET: under the retry policy itself; later ones run inside the stream's retries
            return self._bucket.call(self._what, lambda: client.get_object(**kwargs))
        return client.get_object(**kwargs)

    def read(self, n: int) -> bytes:
        """Exactly the next ``n`` bytes (fewer only at the end of the object)."""
        return self._stream.read(n)

    def close(self) -> None:
        self._stream.close()


class ObjectUpload:
    """One multipart upload, part after part in the caller's order (one part in memory at a time); aborted,
    never completed, when the caller gives up on the object."""

    def __init__(self, bucket: Bucket, key: str):
        self._bucket = bucket
        self.key = key
        self._what = f"write s3://{bucket.name}/{key}"
        self._upload_id: str | None = None
        self._parts: list[dict] = []

    def add_part(self, data: bytes, md5: str) -> None:
        """Upload the next part (``md5``: its Content-MD5); the first part starts the upload."""
        client = self._bucket._client
        name = self._bucket.name
        if self._upload_id is None:
            response = self._bucket.call(self._what, lambda: client.create_multipart_upload(Bucket=name, Key=self.key))
            self._upload_id = response["UploadId"]
        number = len(self._parts) + 1
        upload_id = self._upload_id
        response = self._bucket.call(
            self._what,
            lambda: client.upload_part(
                Bucket=name, Key=self.key, UploadId=upload_id, PartNumber=number, Body=data, ContentMD5=md5
            ),
        )
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    @property
    def started(self) -> bool:
        return self._upload_id is not None

    def complete(self, *, if_match: str | None = None, create_only: bool = False) -> None:
        """Make the object from the parts, with the same conditions as ``Bucket.put``."""
        client = self._bucket._client
        kwargs = {
            "Bucket": self._bucket.name,
            "Key": self.key,
            "UploadId": self._upload_id,
            "MultipartUpload": {"Parts": self._parts},
            **_condition(if_match, create_only),
        }
        self._bucket.call(self._what, lambda: client.complete_multipart_upload(**kwargs))
        self._upload_id = None

    def abort(self) -> None:
        """Drop the parts (one request, not retried: a bucket lifecycle rule removes what a failure leaves)."""
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        self._bucket._client.abort_multipart_upload(Bucket=self._bucket.name, Key=self.key, UploadId=upload_id)
