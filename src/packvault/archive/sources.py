"""Choosing the source of a backup from the PATH arguments of ``create``."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, BinaryIO

from ..errors import UsageError
from ..storage.settings import StorageSettings
from .patterns import ExcludeMatcher
from .walker import FilesystemSource, Selection, Warn

if TYPE_CHECKING:
    from .s3source import KeyRange


def build_source(
    paths: list[str],
    excludes: ExcludeMatcher,
    one_file_system: bool,
    warn: Warn,
    *,
    note: Warn | None = None,
    skip_dirs: Mapping[str, str] | None = None,
    stdin: BinaryIO | None = None,
    stdin_name: str | None = None,
    stdin_command: bool = False,
    selection: Selection | None = None,
    storage_settings: StorageSettings | None = None,
    key_range: KeyRange | None = None,
):
    """(source, files cache name): local paths, ``s3://bucket/prefix`` objects (not both at once), standard
    input (PATH ``-``) or, with ``stdin_command``, the output of the command the PATHs spell out.
    ``note`` and ``skip_dirs``: see ``FilesystemSource``; ``key_range``: only these keys of one s3:// source
    (a part of a scale-out backup)."""
    if key_range is not None and not (len(paths) == 1 and paths[0].startswith("s3://")):
        raise UsageError("--source-range needs exactly one s3:// source", hint="the one the plan was made of")
    if stdin_command or paths == ["-"]:
        from .stream_source import command_source, stdin_source

        name = stdin_name or "stdin"
        if stdin_command:
            return command_source(name, list(paths)), "files-stdin"
        if stdin is None:
            raise UsageError("standard input is not available")
        return stdin_source(name, stdin), "files-stdin"
    if "-" in paths:
        raise UsageError("'-' (standard input) must be the only PATH", hint="back up files in another archive")
    if stdin_name is not None:
        raise UsageError("--stdin-name needs the PATH '-' or --stdin-from-command")
    remote = [p for p in paths if p.startswith("s3://")]
    if remote and len(remote) != len(paths):
        raise UsageError("cannot mix local paths and s3:// sources in one archive")
    if remote:
        from .s3source import S3Source

        source = S3Source(remote, excludes=excludes, warn=warn, settings=storage_settings, key_range=key_range)
        return source, "files-s3"
    source = FilesystemSource(
        paths,
        excludes=excludes,
        one_file_system=one_file_system,
        warn=warn,
        note=note,
        skip_dirs=skip_dirs,
        selection=selection,
    )
    return source, "files"


def read_path_list(path: str, *, nul: bool = False) -> list[str]:
    """PATHs from a file (``--files-from``: one per line; ``--files-from0``: NUL-separated, for names with
    newlines); ``-`` reads standard input.  Empty entries are skipped; in line mode so are lines starting with
    ``#``.  Names are kept byte for byte (undecodable bytes as surrogate escapes)."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                data = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read the list of paths {path}: {exc.strerror}") from None
    entries = data.split(b"\0") if nul else [line for line in data.splitlines() if not line.startswith(b"#")]
    return [os.fsdecode(entry) for entry in entries if entry]
