"""Tuning that comes from the environment, read once at the edge and carried down as one frozen object.

Only ``cli/`` and ``serverless/`` read the environment (``Settings.from_environ(os.environ)``); the layers
below take a ``Settings`` (``Repository(location, settings=...)``) and never look at ``os.environ``
themselves, so what a run does is decided by what it was handed, and a test can hand it anything.

This module imports nothing of Packvault's layers except the storage layer's own leaf of settings
(``storage/settings.py``, which imports nothing): every layer may import it, and the CLI builds it before it
loads anything heavy (see ``cli/early_unlock.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from .errors import UsageError
from .storage.settings import StorageSettings, from_environment

DEFAULT_LOCK_WAIT = 60.0  # seconds to wait for another operation's lock
DEFAULT_CHECKPOINT_PACKS = 8  # a backup writes an index fragment every this many packs...
DEFAULT_CHECKPOINT_SECONDS = 300.0  # ...or this often, whichever comes first
DEFAULT_KDF_MEMORY_KIB = 32 * 1024  # Argon2id memory cost of new keys (see crypto/kdf.py)


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    """Everything that can be rebuilt from the repository (index cache, files cache, spool files, KDF hints)."""
    config_dir: Path
    """What cannot: the key files of ``keyfile`` repositories."""
    key_file: Path | None = None
    """The key file to use instead of ``<config_dir>/keys/<repository id>``."""
    lock_wait: float = DEFAULT_LOCK_WAIT
    lock_stale_seconds: float | None = None  # None: the lock manager's default
    lock_refresh_seconds: float | None = None
    checkpoint_packs: int = DEFAULT_CHECKPOINT_PACKS
    checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS
    kdf_memory_kib: int = DEFAULT_KDF_MEMORY_KIB
    read_processes: int | None = None
    """Processes that read, cut and seal small files during create (None: one per CPU this process may
    use; 0: read in the backup's own process)."""
    storage: StorageSettings = dataclasses.field(default_factory=StorageSettings)
    """The storage layer's own variables (S3 retry bounds, AWS endpoint variables)."""

    @classmethod
    def defaults(cls) -> Settings:
        """The per-user directories of the platform and the built-in tuning."""
        return cls(
            cache_dir=Path(platformdirs.user_cache_dir("packvault")),
            config_dir=Path(platformdirs.user_config_dir("packvault")),
        )

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> Settings:
        """The defaults, overridden by ``PACKVAULT_*`` variables of ``env``; a value that does not parse is a
        UsageError naming the variable (one line, before anything is opened)."""
        base = cls.defaults()
        changes: dict = {}
        for name, field, parse in _VARIABLES:
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            try:
                changes[field] = parse(raw)
            except ValueError:
                raise UsageError(f"{name}={raw!r} is not valid", hint=_HINTS[parse]) from None
        return dataclasses.replace(base, storage=from_environment(env), **changes)

    def location_hints(self, kind: str, location: str) -> Path:
        """Where the cache directory keeps ``kind`` of hint about a repository location, for what a command
        needs before the config names the repository (whose own cache directory is named by its id)."""
        digest = hashlib.blake2b(location.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        return self.cache_dir / kind / digest

    @property
    def spool_dir(self) -> Path:
        return self.cache_dir / "spool"

    def key_file_for(self, repository_id: bytes) -> Path:
        return self.key_file or self.config_dir / "keys" / repository_id.hex()


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError(raw)
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def _seconds(raw: str) -> float:
    value = float(raw)
    if not value >= 0:  # also NaN
        raise ValueError(raw)
    return value


_HINTS = {
    Path: "give a path",
    _positive_int: "give a positive whole number",
    _count: "give a whole number (0 or more)",
    _seconds: "give a number of seconds",
}

_VARIABLES = (
    ("PACKVAULT_CACHE_DIR", "cache_dir", Path),
    ("PACKVAULT_CONFIG_DIR", "config_dir", Path),
    ("PACKVAULT_KEY_FILE", "key_file", Path),
    ("PACKVAULT_LOCK_WAIT", "lock_wait", _seconds),
    ("PACKVAULT_LOCK_STALE_SECONDS", "lock_stale_seconds", _seconds),
    ("PACKVAULT_LOCK_REFRESH_SECONDS", "lock_refresh_seconds", _seconds),
    ("PACKVAULT_CHECKPOINT_PACKS", "checkpoint_packs", _positive_int),
    ("PACKVAULT_CHECKPOINT_SECONDS", "checkpoint_seconds", _seconds),
    ("PACKVAULT_KDF_MEMORY_KIB", "kdf_memory_kib", _positive_int),
    ("PACKVAULT_READ_PROCESSES", "read_processes", _count),
)
