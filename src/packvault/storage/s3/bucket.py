"""One bucket (and key prefix) behind one counted client: every request the S3 backend sends goes through here.

The backend's reads, writes, listings and server-side copies each need the same few things and nothing of
each other: the key of a name, one request run under the retry policy with its errors translated, a HEAD
that answers None for a missing object, the paged listing, and the request counter.  They share this object
instead of reaching into one another.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import botocore.exceptions as bex
from borgstore.backends.errors import ObjectNotFound

from ...errors import BucketNotFound, IntegrityError
from ..accounting import RequestCounter
from ..backend import DELETE_BATCH
from ..layout import WriteMode, WritePolicy
from .client import make_client
from .config import S3Settings
from .errors import TransientError, error_code, give_up_error, is_not_found, is_transient, translate
from .listing import PAGE_SIZE, pages

T = TypeVar("T")

MD5_META = "pv-md5"  # user metadata key: the MD5 of the whole content, for full-download checks and 412s


class DownloadChecksumMismatch(TransientError):
    """A full download did not match the MD5 stored with the object (repeated: it may be transit damage)."""


def request(
    settings: S3Settings,
    endpoint: str,
    what: str,
    fn: Callable[[], T],
    *,
    transient: Callable[[BaseException], bool] = is_transient,
    give_up: Callable[[BaseException, int, float], BaseException] | None = None,
    on_retry: Callable[[BaseException], None] | None = None,
) -> T:
    """Run one request of ``settings``' bucket under its retry policy; map auth / missing-bucket errors to
    Packvault errors.  A failure without a Packvault meaning is raised as botocore raised it, for the caller
    to interpret (404, 412, ...).  ``give_up``: the error when the bounds are reached (default: the endpoint
    is unreachable or kept failing)."""
    try:
        return settings.retry.call(
            fn,
            is_transient=transient,
            give_up=give_up if give_up is not None else give_up_error(endpoint, what),
            on_retry=on_retry,
        )
    except (bex.BotoCoreError, bex.ClientError) as exc:
        mapped = translate(exc, bucket=settings.bucket, endpoint=endpoint, what=what)
        if mapped is exc:
            raise
        raise mapped from exc


class EtagMemory:
    """The ETag last loaded or stored of each compare-and-swap key: what the next write of it expects."""

    def __init__(self, policy: WritePolicy):
        self.policy = policy
        self._etags: dict[str, str] = {}
        self._lock = threading.Lock()

    def remember(self, name: str, etag: str | None) -> None:
        if self.policy.mode(name) is WriteMode.COMPARE_AND_SWAP:
            with self._lock:
                if etag:
                    self._etags[name] = etag
                else:
                    self._etags.pop(name, None)

    def condition(self, name: str) -> dict[str, str]:
        with self._lock:
            etag = self._etags.get(name)
        return {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}


def key_error(error: dict) -> tuple[str, bex.ClientError]:
    """One ``Errors`` entry of a DeleteObjects answer as the key and the error a DELETE of it would have
    raised (the status a refused DELETE gets: 403 for AccessDenied, 503 for SlowDown, ...)."""
    code = str(error.get("Code", ""))
    status = {"AccessDenied": 403, "SlowDown": 503, "InternalError": 500, "ServiceUnavailable": 503}.get(code, 400)
    response = {
        "Error": {"Code": code, "Message": error.get("Message", "")},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return str(error.get("Key", "")), bex.ClientError(response, "DeleteObject")  # type: ignore[arg-type]


class ListedSizes:
    """The size a listing showed of each create-only object (packs): such an object is never rewritten, only
    deleted, so while it exists that is its size, and a range check before a server-side copy needs no HEAD
    (compact lists every pack, then copies ranges of some).  An object deleted through this backend is
    forgotten; one deleted by another client makes the copy itself fail (404, ``ObjectNotFound``).  One entry
    per listed create-only object: a name and an int each, the size of the listing that produced them."""

    def __init__(self, policy: WritePolicy):
        self.policy = policy
        self._sizes: dict[str, int] = {}
        self._lock = threading.Lock()

    def remember(self, name: str, size: int) -> None:
        if self.policy.mode(name) is WriteMode.CREATE_ONLY:
            with self._lock:
                self._sizes[name] = size

    def forget(self, name: str) -> None:
        with self._lock:
            self._sizes.pop(name, None)

    def get(self, name: str) -> int | None:
        with self._lock:
            return self._sizes.get(name)


class S3Bucket:
    """``settings.bucket`` under ``settings.prefix``; requests counted in ``counter`` (HTTP attempts,
    ``retries``, ``converged``)."""

    def __init__(self, settings: S3Settings, cache_dir: str | os.PathLike | None = None):
        self.settings = settings
        self.name = settings.bucket
        self.base = settings.prefix + "/" if settings.prefix else ""
        self.counter = RequestCounter(extra_keys=("retries", "converged"))
        try:
            self.client = make_client(settings, self.counter, cache_dir)
        except bex.BotoCoreError as exc:
            raise translate(exc, bucket=self.name, endpoint=settings.endpoint or "S3", what="configure") from exc
        self.endpoint: str = self.client.meta.endpoint_url

    def key(self, name: str) -> str:
        return self.base + name

    def request(
        self, what: str, fn: Callable[[], T], *, transient: Callable[[BaseException], bool] = is_transient
    ) -> T:
        """Run one request with bounded retries (``request``), each retry counted.

        ``transient``: which failures are repeated (``is_transient_or_conflict`` for a PUT, which may be sent
        again after a 409)."""
        return request(
            self.settings,
            self.endpoint,
            what,
            fn,
            transient=transient,
            give_up=self._give_up(what),
            on_retry=lambda _exc: self.counter.add("retries"),
        )

    def _give_up(self, what: str) -> Callable[[BaseException, int, float], BaseException]:
        generic = give_up_error(self.endpoint, what)

        def make(exc: BaseException, attempts: int, elapsed: float) -> BaseException:
            if isinstance(exc, DownloadChecksumMismatch):
                return IntegrityError(f"{what}: {exc} (in {attempts} attempts)")
            return generic(exc, attempts, elapsed)

        return make

    def head(self, name: str) -> dict | None:
        """HEAD of the object ``name``; None if there is none."""
        key = self.key(name)
        try:
            return self.request(f"HEAD {key}", lambda: self.client.head_object(Bucket=self.name, Key=key))
        except bex.ClientError as exc:
            if is_not_found(exc):
                return None
            raise

    def size(self, name: str) -> int:
        head = self.head(name)
        if head is None:
            raise ObjectNotFound(name)
        return head["ContentLength"]

    def head_bucket(self) -> None:
        try:
            self.request(f"HEAD bucket {self.name}", lambda: self.client.head_bucket(Bucket=self.name))
        except bex.ClientError as exc:
            if is_not_found(exc):
                raise BucketNotFound(f"S3 bucket {self.name!r} does not exist at {self.endpoint}") from exc
            raise

    def get(self, name: str, byte_range: str | None, *, verify: bool) -> tuple[bytes, dict]:
        """GET (a range of) an object, read completely inside the retry so broken streams are repeated.

        A missing object is ``ObjectNotFound``; a range S3 cannot serve (416) is empty if the object exists.
        """
        key = self.key(name)
        kwargs = {"Bucket": self.name, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range

        def fetch() -> tuple[bytes, dict]:
            response = self.client.get_object(**kwargs)
            body = response["Body"].read()
            self.counter.add("bytes_down", len(body))
            if len(body) != response.get("ContentLength", len(body)):
                raise TransientError(f"short read of {key}: {len(body)} of {response['ContentLength']} bytes")
            expected = response.get("Metadata", {}).get(MD5_META)
            if verify and expected and hashlib.md5(body).hexdigest() != expected:
                raise DownloadChecksumMismatch(f"{key} does not match its stored MD5")
            return body, response

        try:
            return self.request(f"GET {key}" + (f" {byte_range}" if byte_range else ""), fetch)
        except bex.ClientError as exc:
            if is_not_found(exc):
                raise ObjectNotFound(name) from None
            if error_code(exc) == "InvalidRange":
                if self.head(name) is None:
                    raise ObjectNotFound(name) from None
                return b"", {}
            raise

    def delete(self, key: str) -> None:
        """DELETE of a key (S3 answers success for a missing one too)."""
        self.request(f"DELETE {key}", lambda: self.client.delete_object(Bucket=self.name, Key=key))

    def delete_keys(self, keys: Sequence[str]) -> None:
        """DeleteObjects of ``keys``, ``DELETE_BATCH`` per request, in quiet mode: S3 answers 200 and lists only
        the keys it could not delete, each with its own error code (a missing key is deleted, as for DELETE).

        A key refused for good raises what a refused DELETE of that key raises (``translate``: AccessDenied
        for a policy or Object Lock refusal); a key refused for a passing reason (InternalError, SlowDown) is
        sent again under the retry policy, alone with the others so refused, as a DELETE would be repeated.
        """
        for start in range(0, len(keys), DELETE_BATCH):
            self._delete_batch(list(keys[start : start + DELETE_BATCH]))

    def _delete_batch(self, keys: list[str]) -> None:
        pending = keys
        what = f"DELETE {len(keys)} objects ({keys[0]} ...)"

        def attempt() -> None:
            nonlocal pending
            objects = {"Objects": [{"Key": key} for key in pending], "Quiet": True}
            answer = self.client.delete_objects(Bucket=self.name, Delete=objects)
            refused = [key_error(error) for error in answer.get("Errors", [])]
            final = [(key, exc) for key, exc in refused if not is_transient(exc)]
            if final:
                key, exc = final[0]
                raise translate(exc, bucket=self.name, endpoint=self.endpoint, what=f"DELETE {key}")
            if refused:
                pending = [key for key, _ in refused]
                raise TransientError(f"{len(refused)} key(s) not deleted yet, e.g. {refused[0][0]}: {refused[0][1]}")

        self.request(what, attempt)

    def object_lock_enabled(self) -> bool:
        """GetObjectLockConfiguration: whether the bucket has Object Lock enabled (False when it has none)."""
        try:
            answer = self.request(
                f"GetObjectLockConfiguration {self.name}",
                lambda: self.client.get_object_lock_configuration(Bucket=self.name),
            )
        except bex.ClientError as exc:
            if error_code(exc) == "ObjectLockConfigurationNotFoundError":
                return False
            raise
        return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def put_retention(self, key: str, mode: str, until, *, version_id: str | None = None) -> None:
        """PutObjectRetention: set (or extend) the Object Lock retention of ``key`` (its current version)."""
        kwargs: dict = {"Bucket": self.name, "Key": key, "Retention": {"Mode": mode, "RetainUntilDate": until}}
        if version_id:
            kwargs["VersionId"] = version_id
        self.request(f"PutObjectRetention {key}", lambda: self.client.put_object_retention(**kwargs))

    def pages(self, prefix: str, what: str, *, page_size: int = PAGE_SIZE, delimiter: bool = False) -> Iterator[dict]:
        """Every LIST answer for the key prefix ``prefix`` (``listing.pages``), each request retried."""

        def list_page(kwargs: dict) -> dict:
            return self.request(what, lambda: self.client.list_objects_v2(**kwargs))

        return pages(list_page, self.name, prefix, page_size=page_size, delimiter=delimiter)
