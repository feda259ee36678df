"""What kind of source the PATH arguments of ``create`` name, decided without importing the sources
themselves: the command line decides it before anything heavy is loaded (``cli/early_readers.py``)."""

from __future__ import annotations


def reads_local_files(paths: list[str], *, stdin_command: bool = False) -> bool:
    """Whether the source ``sources.build_source`` makes of these arguments walks the local file system (the
    one kind whose files reader processes read)."""
    return not stdin_command and "-" not in paths and not any(p.startswith("s3://") for p in paths)
