"""Which S3 failures are worth retrying, and what the others mean to a user.

Kept apart from the backend so that the classification can be read (and reviewed) in one place: a
wrong "transient" verdict either hides a real error behind minutes of retries or gives up on a blip.
"""

from __future__ import annotations

import http.client

import botocore.exceptions as bex
import urllib3.exceptions as u3ex

from ...errors import (
    AccessDenied,
    BucketNotFound,
    ColdObject,
    EndpointUnreachable,
    NoCredentials,
    ServiceUnavailable,
    StorageError,
)

TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "BadGateway",
    "GatewayTimeout",
    "OperationAborted",
}
TRANSIENT_STATUS = {500, 502, 503, 504}
ACCESS_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}


# What S3 answers to a write with Object Lock headers into a bucket without Object Lock (InvalidRequest,
# "Bucket is missing Object Lock Configuration"), or a service without the feature (NotImplemented).
OBJECT_LOCK_REFUSED_CODES = {
    "InvalidRequest",
    "InvalidBucketState",
    "NotImplemented",
    "ObjectLockConfigurationNotFoundError",
}


class ObjectLockUnavailable(StorageError):
    """The repository asks for Object Lock retention and the bucket or the service cannot give it."""

    hint = "use a bucket created with Object Lock enabled (terraform: object_lock_enabled) on a service that has it"


def is_object_lock_refused(exc: BaseException) -> bool:
    return error_code(exc) in OBJECT_LOCK_REFUSED_CODES


class TransientError(Exception):
    """A failure of our own detection that a repeat can fix (short read, checksum mismatch in transit)."""


def error_code(exc: BaseException) -> str:
    if isinstance(exc, bex.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int:
    if isinstance(exc, bex.ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_not_found(exc: BaseException) -> bool:
    return isinstance(exc, bex.ClientError) and (error_code(exc) in NOT_FOUND_CODES or http_status(exc) == 404)


def is_precondition_failed(exc: BaseException) -> bool:
    return isinstance(exc, bex.ClientError) and (error_code(exc) == "PreconditionFailed" or http_status(exc) == 412)


def is_conflict(exc: BaseException) -> bool:
    """409 ConditionalRequestConflict: conditional writes to one key raced and this one was not applied.

    A PutObject may simply be sent again; a CompleteMultipartUpload cannot, its upload must start over.
    """
    return isinstance(exc, bex.ClientError) and error_code(exc) == "ConditionalRequestConflict"


def is_transient_or_conflict(exc: BaseException) -> bool:
    """``is_transient`` for requests that may be repeated after a lost race (PutObject)."""
    return is_transient(exc) or is_conflict(exc)


def is_not_implemented(exc: BaseException) -> bool:
    return isinstance(exc, bex.ClientError) and (error_code(exc) == "NotImplemented" or http_status(exc) == 501)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | bex.ConnectionError | bex.HTTPClientError | bex.IncompleteReadError):
        return True
    if isinstance(exc, u3ex.ProtocolError | u3ex.ReadTimeoutError | http.client.IncompleteRead | ConnectionError):
        return True
    if isinstance(exc, bex.ClientError):
        return error_code(exc) in TRANSIENT_CODES or http_status(exc) in TRANSIENT_STATUS
    return False


def is_unreachable(exc: BaseException) -> bool:
    """Could not even connect (refused, DNS, connect timeout): the endpoint itself is the problem."""
    return isinstance(exc, bex.ConnectionError) and not isinstance(exc, bex.SSLError)


def give_up_error(endpoint: str, what: str):
    """A factory for ``RetryPolicy.call(give_up=...)`` naming the endpoint and the operation attempted."""

    def make(exc: BaseException, attempts: int, elapsed: float) -> StorageError:
        detail = f"after {attempts} attempt(s) in {elapsed:.1f}s: {short(exc)}"
        if is_unreachable(exc):
            return EndpointUnreachable(f"S3 endpoint {endpoint} is unreachable ({what}) {detail}")
        if isinstance(exc, StorageError):
            return exc
        return ServiceUnavailable(f"S3 endpoint {endpoint} kept failing ({what}) {detail}")

    return make


def short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 300 else text[:297] + "..."


def translate(exc: BaseException, *, bucket: str, endpoint: str, what: str) -> BaseException:
    """Map a non-transient boto error to a Packvault error; return ``exc`` itself when there is no mapping."""
    if isinstance(exc, bex.NoCredentialsError | bex.PartialCredentialsError):
        return NoCredentials(f"no AWS credentials found for {what} at {endpoint}")
    if isinstance(exc, bex.ProfileNotFound):
        return NoCredentials(f"AWS profile not found: {short(exc)}")
    if isinstance(exc, bex.ClientError):
        code = error_code(exc)
        if code == "NoSuchBucket":
            return BucketNotFound(f"S3 bucket {bucket!r} does not exist at {endpoint}")
        if code == "InvalidObjectState":  # a 403 too: a GET of a GLACIER/DEEP_ARCHIVE object not restored
            return ColdObject(f"{what}: the object is in a cold storage class and not restored")
        if code in ACCESS_CODES or http_status(exc) == 403:
            return AccessDenied(f"access denied by {endpoint} for {what}: {code or 403}")
    return exc
