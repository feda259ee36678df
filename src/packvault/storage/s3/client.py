"""One shared botocore S3 client per backend, configured for our retry and integrity model, and counted.

- botocore's own retry layer makes exactly one attempt: retries live in ``retry.py`` (tenacity), which
  knows which writes are safe to repeat; two layers would multiply attempts and blow the time bound.
- flexible checksums are only computed where S3 requires them: we send ``Content-MD5`` ourselves on
  uploads (every S3 implementation understands it; AWS and LocalStack verify it) and verify downloads
  against the MD5 we store in the object metadata.  That avoids aws-chunked encodings and double hashing.
  For the same reason bodies are not SHA-256-hashed for the signature (``UNSIGNED-PAYLOAD``), which botocore
  does by default on plain http endpoints (LocalStack, MinIO, moto): the signed Content-MD5 already lets
  the service refuse a body that changed on the way, and a second hash of every pack byte cost ~0.3
  CPU-seconds per 300 MiB uploaded.
- every HTTP attempt is counted through botocore's ``before-send`` event, so the request table shows what a
  provider would bill, retries included.
- the client comes from botocore's session, not boto3's: boto3 adds resources and the transfer manager
  (which Packvault does not use) and cost ~0.12 s more per start, a tenth of an unchanged re-run.
- its data loader confirms S3 without a listing and is shared by every client of the process: building an
  S3 client otherwise starts with botocore listing every service directory it ships (~400) just to confirm
  that ``s3`` is one, then parses the S3 models, a noticeable part of an unchanged re-run.  A second client in the
  same process (a backup from an S3 source into an S3 repository, a warm serverless container) parses
  nothing again.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import botocore
import botocore.session
import msgpack
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.loaders import Loader

from ...errors import CredentialsUnavailable
from ..accounting import RequestCounter
from .config import S3Settings
from .errors import short

# operation name -> request kind of the accounting table (billing classes of S3)
_KIND_BY_OPERATION = {
    "GetObject": "GET",
    "GetObjectLockConfiguration": "GET",
    "HeadObject": "HEAD",
    "HeadBucket": "HEAD",
    "ListObjectsV2": "LIST",
    "ListObjects": "LIST",
    "ListMultipartUploads": "LIST",
    "ListParts": "LIST",
    "ListBuckets": "LIST",
    "DeleteObject": "DELETE",
    "DeleteObjects": "DELETE",
    "AbortMultipartUpload": "DELETE",
    "CopyObject": "COPY",
    "UploadPartCopy": "COPY",
    "RestoreObject": "RESTORE",  # billed per request by the restore tier (docs/s3-backend.md)
}
_UPLOADS = {"PutObject", "UploadPart"}


class S3DataLoader(Loader):
    """A loader that confirms S3 without scanning every service directory; any other service (STS for a
    profile that assumes a role or for web identity, SSO) is looked up in the full listing.

    With ``table_cache`` (a file in Packvault's cache directory, set by ``shared_loader``) it also keeps
    botocore's endpoint table there, cut to the services an S3 client and its credentials use.  Every
    client's session parses that table (~600 KB of JSON for ~400 services, 39 ms, more than the S3 model
    itself); the cut table is 16 KB.  A service left out still resolves: botocore then uses its partition's
    default endpoint, as for a service it does not know."""

    def __init__(self) -> None:
        super().__init__()
        self.table_cache: Path | None = None
        self._endpoints: tuple[dict, str] | None = None

    def list_available_services(self, type_name: str) -> _ServiceNames:
        return _ServiceNames(lambda: Loader.list_available_services(self, type_name))

    def load_data_with_path(self, name: str) -> tuple[dict, str]:
        if name != "endpoints" or self.table_cache is None:
            return super().load_data_with_path(name)
        if self._endpoints is None:
            self._endpoints = self._cut_endpoint_table(self.table_cache)
        return self._endpoints

    def _cut_endpoint_table(self, cache: Path) -> tuple[dict, str]:
        """The endpoint table from ``cache`` if it was cut from the file botocore would read now, else cut
        from that file and written to ``cache`` for the next run."""
        found = next(
            (path for path in self._potential_locations("endpoints") if self.file_loader.exists(path)), None
        )
        if found is None:
            return super().load_data_with_path("endpoints")  # raises botocore's own error
        key = _source_key(found)
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, msgpack.UnpackException):
            cached = msgpack.unpackb(cache.read_bytes())
            if cached["key"] == key:
                return cached["table"], found
        table, path = super().load_data_with_path("endpoints")
        table = _cut(table)
        with contextlib.suppress(OSError):  # a cache that can't be written costs the parsing next time
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            tmp.write_bytes(msgpack.packb({"key": key, "table": table}))
            os.replace(tmp, cache)
        return table, path


# Services whose endpoints an S3 client and botocore's credential providers look up (assumed roles and web
# identity: STS; SSO profiles: SSO and its OIDC service; console logins: signin).
_ENDPOINT_SERVICES = frozenset({"s3", "sts", "sso", "sso-oidc", "signin"})


def _cut(table: dict) -> dict:
    partitions = [
        {**partition, "services": {k: v for k, v in partition.get("services", {}).items() if k in _ENDPOINT_SERVICES}}
        for partition in table.get("partitions", [])
    ]
    return {**table, "partitions": partitions}


def _source_key(path: str) -> str:
    """What the cut table was made from: botocore's version and the file's identity (a file of the user's
    own in ~/.aws/models may come first in the search path, and change)."""
    stats = []
    for ext in (".json", ".json.gz"):
        with contextlib.suppress(OSError):
            st = os.stat(path + ext)
            stats.append(f"{ext}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join([botocore.__version__, path, *stats])


class _ServiceNames:
    """The service names ``Loader.load_service_model`` checks a name against, listed only for a name other
    than ``s3`` (the full listing is then cached by the loader)."""

    def __init__(self, list_all: Callable[[], list[str]]):
        self._list_all = list_all

    def __contains__(self, name: object) -> bool:
        return name == "s3" or name in self._list_all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._list_all())

    def __len__(self) -> int:
        return len(self._list_all())


ENDPOINT_TABLE_CACHE = "s3-endpoint-table"
_shared: S3DataLoader | None = None
_shared_lock = threading.Lock()


def shared_loader(cache_dir: str | os.PathLike | None = None) -> S3DataLoader:
    """The process-wide loader (its caches hold the parsed models); the first ``cache_dir`` given is where it
    keeps the cut endpoint table."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = S3DataLoader()
        if _shared.table_cache is None and cache_dir is not None:
            _shared.table_cache = Path(cache_dir) / ENDPOINT_TABLE_CACHE
        return _shared


def make_client(settings: S3Settings, counter: RequestCounter, cache_dir: str | os.PathLike | None = None):
    """A thread-safe S3 client for ``settings`` whose HTTP attempts are counted in ``counter``; ``cache_dir``:
    Packvault's cache directory (``S3DataLoader``)."""
    session = botocore.session.Session(profile=settings.profile)
    if not session.get_config_variable("data_path"):  # AWS_DATA_PATH or data_path: botocore's own loader
        session.register_component("data_loader", shared_loader(cache_dir))  # shared (module doc)
    region = settings.region or session.get_config_variable("region") or "us-east-1"
    config = Config(
        region_name=region,
        retries={"total_max_attempts": 1, "mode": "standard"},  # exactly one attempt per call
        connect_timeout=min(settings.connect_timeout, settings.retry.max_seconds),
        read_timeout=settings.read_timeout,
        max_pool_connections=max(10, settings.concurrency * 2 + 2),
        s3={"addressing_style": settings.addressing_style(), "payload_signing_enabled": False},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        tcp_keepalive=True,
    )
    _fetch_credentials(session)  # before the client: building it resolves them too, uncaught
    client = session.create_client("s3", endpoint_url=settings.endpoint, config=config)

    def count(request=None, event_name: str = "", **_kwargs) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        counter.add(_KIND_BY_OPERATION.get(operation, "PUT"))
        if operation in _UPLOADS and request is not None:
            length = request.headers.get("Content-Length")
            if length is not None:
                counter.add("bytes_up", int(length))

    client.meta.events.register("before-send.s3", count)
    client.meta.events.register("before-sign.s3.CopyObject", _lock_copy_md5)
    return client


def _fetch_credentials(session: botocore.session.Session) -> None:
    """Resolve the credentials, temporary ones included (an assumed role, web identity, SSO, a
    ``credential_process``), before the client is built and before any S3 request.

    botocore fetches temporary ones on a client's first request otherwise, and a failure then looks like
    that request's: an STS endpoint that cannot be reached read as "S3 endpoint ... is unreachable", retried
    like one; a ``credential_process`` that fails broke building the client.  The client reuses what the
    session resolved here, so static credentials cost nothing more."""
    try:
        credentials = session.get_credentials()
        if credentials is not None:  # None: there are none anywhere, and the first request says so
            credentials.get_frozen_credentials()
    except (ProfileNotFound, NoCredentialsError, PartialCredentialsError):
        raise  # said as what they are by the caller (``errors.translate``)
    except (BotoCoreError, ClientError) as exc:
        source = f"profile {session.profile!r}" if session.profile else "the environment"
        raise CredentialsUnavailable(f"cannot get AWS credentials from {source}: {short(exc)}") from None


# The MD5 of the empty body, base64: a CopyObject has no body, and its Content-MD5 is exactly this.
_EMPTY_MD5 = "1B2M2Y8AsgTpgAmY4PhCfg=="


def _lock_copy_md5(request=None, **_kwargs) -> None:
    """Give a CopyObject with Object Lock headers the Content-MD5 of its (empty) body: S3 wants an integrity
    header on every request that sets a retention, and botocore's CopyObject model has no ContentMD5."""
    if request is not None and "x-amz-object-lock-mode" in request.headers and "Content-MD5" not in request.headers:
        request.headers["Content-MD5"] = _EMPTY_MD5
