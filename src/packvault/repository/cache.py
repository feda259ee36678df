"""The local cache directory of one repository: ``<Settings.cache_dir>/<repository id>``.

Everything here can be rebuilt from the repository; losing it costs time, never data.  Files are
replaced atomically (write to a temp file, then rename), so a crash leaves the old or the new version.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


class RepositoryCache:
    def __init__(self, root: Path, repository_id: bytes):
        self.path = root / repository_id.hex()

    @classmethod
    def at(cls, path: Path) -> RepositoryCache:
        """The same atomic files in another directory (hints kept by location, ``key_hints.py``)."""
        cache = cls.__new__(cls)
        cache.path = path
        return cache

    def file(self, name: str) -> Path:
        return self.path / name

    def read(self, name: str) -> bytes | None:
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, self.path / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def temp_path(self, name: str) -> Path:
        """A temp file path next to ``name``, for writers that stream (the index table)."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        return Path(tmp)

    def commit(self, tmp: Path, name: str) -> None:
        os.replace(tmp, self.path / name)

    def remove(self, name: str) -> None:
        (self.path / name).unlink(missing_ok=True)
