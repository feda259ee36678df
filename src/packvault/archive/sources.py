"""Choosing the source of a backup from the PATH arguments of ``create``."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import UsageError
from .patterns import ExcludeMatcher
from .walker import FilesystemSource, Warn


def build_source(
    paths: list[str],
    excludes: ExcludeMatcher,
    one_file_system: bool,
    warn: Warn,
    *,
    note: Warn | None = None,
    skip_dirs: Mapping[str, str] | None = None,
):
    """(source, files cache name): local paths, or ``s3://bucket/prefix`` objects (not both at once).
    ``note`` and ``skip_dirs``: see ``FilesystemSource``."""
    remote = [p for p in paths if p.startswith("s3://")]
    if remote and len(remote) != len(paths):
        raise UsageError("cannot mix local paths and s3:// sources in one archive")
    if remote:
        from .s3source import S3Source

        return S3Source(remote, excludes=excludes, warn=warn), "files-s3"
    source = FilesystemSource(
        paths, excludes=excludes, one_file_system=one_file_system, warn=warn, note=note, skip_dirs=skip_dirs
    )
    return source, "files"
