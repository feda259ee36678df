"""``s3://BUCKET[/PREFIX][?key=value&...]`` -> ``S3Settings``.

Everything the backend can be told comes through one dictionary: the URL query gives the defaults of a
location, and the CLI's options (same keys) win over it.  The process environment comes third, read at the
edge and handed in as ``StorageSettings`` (retry bounds, the endpoint variables).  Anything not given comes
from the standard AWS chain (profile, ``AWS_*`` variables, ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``),
which botocore resolves itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import InvalidRepositoryURL, UsageError
from ...units import parse_duration
from ..retry import RetryPolicy
from ..settings import StorageSettings

MiB = 1024 * 1024

# Multipart only above 64 MiB by default: a default pack (~32 MiB) then costs exactly one PUT, which is what
# keeps a backup at about 32 PUT requests per GiB.  Above it, parts of 16 MiB go up in parallel.
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_PART_SIZE = 16 * MiB
MIN_PART_SIZE = 5 * MiB  # S3's lower bound for every part but the last one
DEFAULT_CONCURRENCY = 4

STORAGE_CLASSES = {
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
    "OUTPOSTS",
    "SNOW",
    "EXPRESS_ONEZONE",
}

# The classes a GET is refused in until a restore (RestoreObject) has finished; GLACIER_IR needs none.
NEEDS_RESTORE = frozenset({"GLACIER", "DEEP_ARCHIVE"})

# S3 Object Lock retention modes: GOVERNANCE can be lifted by a principal allowed to bypass it,
# COMPLIANCE by nobody (not even the account root) until the date has passed.
OBJECT_LOCK_MODES = {"GOVERNANCE", "COMPLIANCE"}

KNOWN_KEYS = {
    "object_lock",
    "retention",
    "endpoint",
    "region",
    "profile",
    "path_style",
    "storage_class",
    "hot_storage_class",
    "retry_attempts",
    "retry_max_seconds",
    "multipart_threshold",
    "multipart_part_size",
    "max_concurrency",
    "connect_timeout",
    "read_timeout",
}

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    prefix: str  # "" or "some/prefix" (no leading or trailing slash)
    endpoint: str | None = None  # explicit endpoint (URL/option); env endpoints are left to botocore
    region: str | None = None
    profile: str | None = None
    path_style: bool | None = None  # None: path style exactly when a custom endpoint is in use
    data_storage_class: str | None = None  # data packs; None: the bucket's default (STANDARD)
    hot_storage_class: str | None = None  # everything else but lock records; None: the bucket's default
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    env_endpoint: str | None = None  # the endpoint botocore takes from the environment (StorageSettings)
    object_lock: str | None = None  # "GOVERNANCE" | "COMPLIANCE": every write (but lock records) is retained
    retention_seconds: int = 0  # how long from its write an object is retained (with ``object_lock``)

    def uses_custom_endpoint(self) -> bool:
        return bool(self.endpoint or self.env_endpoint)

    def endpoint_label(self) -> str:
        """The endpoint requests go to, for messages."""
        return self.endpoint or self.env_endpoint or "AWS S3"

    def addressing_style(self) -> str:
        path_style = self.uses_custom_endpoint() if self.path_style is None else self.path_style
        return "path" if path_style else "auto"

    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def _bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidRepositoryURL(f"{key}={value!r} is not a boolean (use 1 or 0)")


def _size(key: str, value: str) -> int:
    text = value.strip().upper()
    factor = 1
    for suffix, mult in (("KIB", 1024), ("MIB", MiB), ("GIB", 1024 * MiB), ("K", 1024), ("M", MiB), ("G", 1024 * MiB)):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)], mult
            break
    try:
        return int(text) * factor
    except ValueError:
        raise InvalidRepositoryURL(f"{key}={value!r} is not a size (e.g. 16M)") from None


def _number(key: str, value: str, kind=float):
    try:
        result = kind(value)
    except ValueError:
        raise InvalidRepositoryURL(f"{key}={value!r} is not a number") from None
    if result <= 0:
        raise InvalidRepositoryURL(f"{key} must be positive")
    return result


def _storage_class(merged: Mapping[str, str], key: str) -> str | None:
    value = (merged.get(key) or "").strip().upper() or None
    if value is not None and value not in STORAGE_CLASSES:
        raise InvalidRepositoryURL(f"unknown storage class {value!r} ({key}=)")
    return value


def _object_lock(merged: Mapping[str, str]) -> tuple[str | None, int]:
    """The Object Lock mode and retention (seconds) of the options: both or neither."""
    mode = (merged.get("object_lock") or "").strip().upper() or None
    text = (merged.get("retention") or "").strip()
    if mode is None and not text:
        return None, 0
    if mode is None:
        raise InvalidRepositoryURL("retention needs object_lock=governance or object_lock=compliance")
    if mode not in OBJECT_LOCK_MODES:
        raise InvalidRepositoryURL(f"object_lock={mode.lower()!r} is not a mode (use governance or compliance)")
    if not text:
        raise InvalidRepositoryURL("object_lock needs a retention period, e.g. retention=30d")
    try:
        seconds = int(parse_duration(text, what="retention").total_seconds())
    except UsageError as exc:
        raise InvalidRepositoryURL(str(exc)) from None
    return mode, seconds


def parse_s3_url(
    url: str, options: Mapping[str, str | None] | None = None, *, settings: StorageSettings | None = None
) -> S3Settings:
    """Parse the location and merge the option overrides; raise ``InvalidRepositoryURL`` for bad input.

    ``settings``: the environment's defaults (``storage.settings.from_environment``); options and the URL
    query win over them.  Without, nothing comes from the environment but what botocore reads itself.
    """
    settings = settings if settings is not None else StorageSettings()
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise InvalidRepositoryURL(f"not an s3:// URL: {url!r}")
    bucket = parts.netloc
    if "@" in bucket or ":" in bucket:
        raise InvalidRepositoryURL(f"credentials or ports do not belong into the bucket part: {url!r}")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidRepositoryURL(f"invalid bucket name {bucket!r} in {url!r}")
    if parts.fragment:
        raise InvalidRepositoryURL(f"unexpected '#' fragment in {url!r}")
    segments = [s for s in unquote(parts.path).split("/") if s]
    if any(s in (".", "..") for s in segments):
        raise InvalidRepositoryURL(f"'.' and '..' are not allowed in the prefix: {url!r}")
    prefix = "/".join(segments)

    merged: dict[str, str] = {}
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise InvalidRepositoryURL(f"malformed query string in {url!r}") from None
    for key, value in query:
        if key not in KNOWN_KEYS:
            raise InvalidRepositoryURL(
                f"unknown S3 option {key!r} in {url!r}", hint=f"known: {', '.join(sorted(KNOWN_KEYS))}"
            )
        merged[key] = value
    for key, value in (options or {}).items():
        if value is None or value == "":
            continue
        if key not in KNOWN_KEYS:
            raise InvalidRepositoryURL(f"unknown S3 option {key!r}", hint=f"known: {', '.join(sorted(KNOWN_KEYS))}")
        merged[key] = str(value)

    endpoint = merged.get("endpoint") or None
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise InvalidRepositoryURL(f"endpoint must be an http(s):// URL, got {endpoint!r}")
    storage_class = _storage_class(merged, "storage_class")
    hot_storage_class = _storage_class(merged, "hot_storage_class")
    if hot_storage_class in NEEDS_RESTORE:
        raise InvalidRepositoryURL(
            f"hot_storage_class={hot_storage_class} needs a restore before every read",
            hint="metadata, index, archives and keys are read by every command: use a class such as STANDARD, "
            "STANDARD_IA or GLACIER_IR",
        )
    try:
        retry = RetryPolicy.from_options(
            merged.get("retry_attempts") or settings.retry_attempts,
            merged.get("retry_max_seconds") or settings.retry_max_seconds,
        )
    except ValueError as exc:
        raise InvalidRepositoryURL(str(exc)) from None
    threshold = _size("multipart_threshold", merged["multipart_threshold"]) if "multipart_threshold" in merged else None
    part_size = _size("multipart_part_size", merged["multipart_part_size"]) if "multipart_part_size" in merged else None
    if part_size is not None and part_size < MIN_PART_SIZE:
        raise InvalidRepositoryURL(f"multipart_part_size must be at least {MIN_PART_SIZE} bytes")
    if threshold is not None and threshold < MIN_PART_SIZE:
        raise InvalidRepositoryURL(f"multipart_threshold must be at least {MIN_PART_SIZE} bytes")
    object_lock, retention_seconds = _object_lock(merged)
    return S3Settings(
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint.rstrip("/") if endpoint else None,
        region=merged.get("region") or None,
        profile=merged.get("profile") or None,
        path_style=_bool("path_style", merged["path_style"]) if "path_style" in merged else None,
        data_storage_class=storage_class,
        hot_storage_class=hot_storage_class,
        retry=retry,
        multipart_threshold=threshold or DEFAULT_MULTIPART_THRESHOLD,
        part_size=part_size or DEFAULT_PART_SIZE,
        concurrency=_number("max_concurrency", merged["max_concurrency"], int) if "max_concurrency" in merged else 4,
        connect_timeout=_number("connect_timeout", merged["connect_timeout"]) if "connect_timeout" in merged else 10.0,
        read_timeout=_number("read_timeout", merged["read_timeout"]) if "read_timeout" in merged else 60.0,
        env_endpoint=settings.s3_endpoint,
        object_lock=object_lock,
        retention_seconds=retention_seconds,
    )
