"""Repository location string -> borgstore ``Store``.

Accepted forms:

- a plain path (``/srv/backup``, ``./repo``): a local directory repository (the embedded default);
- ``file:///absolute/path``;
- ``s3://bucket[/prefix][?endpoint=URL&region=R&profile=P&path_style=1&storage_class=CLASS]``.

The S3 backend is imported only for ``s3://`` locations: boto3 alone costs a noticeable fraction of a
second at start-up, which a local backup should not pay.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

from ..errors import InvalidRepositoryURL
from .backend import PackvaultBackend
from .layout import STORE_CONFIG, WRITE_POLICY
from .settings import StorageSettings
from .store import Store


def is_s3_url(location: str) -> bool:
    return location.startswith("s3://")


def local_path(location: str) -> str | None:
    """The absolute directory path of a local repository location, or None for a remote one."""
    if location.startswith("file://"):
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise InvalidRepositoryURL(f"file: URL with a host is not supported: {location!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise InvalidRepositoryURL(f"file: URL needs an absolute path: {location!r}")
        return path
    if "://" in location:
        return None
    if not location:
        raise InvalidRepositoryURL("empty repository location")
    return os.path.abspath(os.path.expanduser(location))


def backend_from_location(
    location: str,
    s3_options: Mapping[str, str] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    settings: StorageSettings | None = None,
) -> PackvaultBackend:
    """Build the (not yet opened) backend for ``location``, wrapped so that it counts its requests.

    An S3 backend gets the repository's namespace write policy (``layout.WRITE_POLICY``) and ``cache_dir``,
    the local cache directory where it remembers per-location facts (whether the service honours
    conditional writes); without one it probes nothing.  ``settings`` carries the environment's defaults
    (``storage.settings.from_environment()``, read by the caller); without, none are used.
    """
    from .accounting import CountingBackend

    if is_s3_url(location):
        from .s3 import open_s3_backend

        return open_s3_backend(
            location, dict(s3_options or {}), policy=WRITE_POLICY, cache_dir=cache_dir, settings=settings
        )
    path = local_path(location)
    if path is None:
        scheme = location.split("://", 1)[0]
        raise InvalidRepositoryURL(f"unsupported repository URL scheme {scheme!r}: {location!r}")
    from .local import LocalBackend

    # fsync every object: packs are large, so the cost is small, and a power cut must not leave an empty pack
    # behind a name the index already points at.
    return CountingBackend(LocalBackend(path, do_fsync=True))


def store_from_location(
    location: str,
    s3_options: Mapping[str, str] | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    settings: StorageSettings | None = None,
) -> Store:
    """A ``Store`` with Packvault's namespace layout (and write policy) over the backend for ``location``."""
    backend = backend_from_location(location, s3_options, cache_dir=cache_dir, settings=settings)
    return Store(backend=backend, config=STORE_CONFIG)
