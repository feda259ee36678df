"""The repository's plaintext configuration (``config/repository``) and index epoch (``config/epoch``).

Nothing secret lives here: it is what a client needs before it has the key (format version, encryption
mode) and what every writer must agree on (pack size, chunker parameters, default compression).
``config/repository`` is written last by ``init``, so its presence marks a complete repository.

It cannot be sealed (it is needed to find the key), so it is protected in three layers:

- a checksum inside the record (``check``, BLAKE2b over the other fields), which any reader verifies
  without the key: one flipped bit must not silently switch ``repokey`` to ``keyfile``;
- a copy (``config/repository.copy``), used when the checksum of the first fails, and
- a MAC under the master key (``config/repository.mac``), verified right after unlocking, which catches
  a config rewritten on purpose (a consistent record with a valid checksum).

Records written before these existed have no ``check``; they are accepted, and ``check --repair`` adds the
checksum, the copy and the MAC.

The S3 Object Lock policy (``object_lock``, ``retention_seconds``) is recorded so that every client writes
with it, whatever its URL says.  Only a repository that has one carries the two fields: every other record
encodes (and checksums) exactly as before, and a record without them decodes as "no lock".

The storage classes of an S3 repository (``data_storage_class`` for data packs, ``hot_storage_class`` for
everything else but lock records) are recorded at ``init`` for the same reason: whether data packs may be
cold (GLACIER, DEEP_ARCHIVE: a restore before every read) is a property of the repository, and a client
that opens it without ``storage_class=`` in its URL must still know it.  A local repository records none,
and a record without them (written before they existed) leaves the classes to the client's URL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgpack

from ..chunking.chunker import ChunkerParams
from ..errors import IntegrityError, UnsupportedRepository

FORMAT_VERSION = 1
DEFAULT_PACK_SIZE = 32 * 1024 * 1024
MIN_PACK_SIZE = 64 * 1024
MAX_PACK_SIZE = 1024 * 1024 * 1024

CONFIG_NAME = "config/repository"
CONFIG_COPY_NAME = "config/repository.copy"
CONFIG_MAC_NAME = "config/repository.mac"
EPOCH_NAME = "config/epoch"
CHECK_FIELD = "check"


def _checksum(fields: dict) -> bytes:
    return hashlib.blake2b(msgpack.packb(fields), digest_size=16).digest()


@dataclass(frozen=True)
class RepoConfig:
    repository_id: bytes
    encryption: str  # "repokey" | "keyfile"
    cipher: str = "aes-256-gcm"
    pack_size: int = DEFAULT_PACK_SIZE
    compression: str = "auto,zstd,3"
    chunker: ChunkerParams = field(default_factory=ChunkerParams)
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    version: int = FORMAT_VERSION
    object_lock: str | None = None  # "GOVERNANCE" | "COMPLIANCE": S3 Object Lock retention of every write
    retention_seconds: int = 0  # with ``object_lock``: how long from its write (or extension) an object is kept
    data_storage_class: str | None = None  # S3 storage class of data packs; None: not recorded (module doc)
    hot_storage_class: str | None = None  # S3 storage class of all else but lock records; None: not recorded

    def encode(self) -> bytes:
        fields = {
            "version": self.version,
            "id": self.repository_id,
            "encryption": self.encryption,
            "cipher": self.cipher,
            "pack_size": self.pack_size,
            "compression": self.compression,
            "chunker": self.chunker.to_dict(),
            "created": self.created,
        }
        if self.object_lock:
            fields["object_lock"] = self.object_lock
            fields["retention_seconds"] = self.retention_seconds
        if self.data_storage_class:
            fields["data_storage_class"] = self.data_storage_class
        if self.hot_storage_class:
            fields["hot_storage_class"] = self.hot_storage_class
        return msgpack.packb({**fields, CHECK_FIELD: _checksum(fields)})

    @staticmethod
    def has_checksum(data: bytes) -> bool:
        try:
            d = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException):
            return False
        return isinstance(d, dict) and CHECK_FIELD in d

    @classmethod
    def decode(cls, data: bytes) -> RepoConfig:
        try:
            d = msgpack.unpackb(data)
            version = d["version"]
            check = d.pop(CHECK_FIELD, None)
        except (ValueError, KeyError, TypeError, AttributeError, msgpack.UnpackException) as exc:
            raise IntegrityError(f"repository config is damaged: {exc}") from None
        if check is not None and check != _checksum(d):
            raise IntegrityError("repository config is damaged: checksum mismatch")
        if version != FORMAT_VERSION:
            raise UnsupportedRepository(f"repository format version {version} is not supported by this Packvault")
        try:
            return cls(
                repository_id=d["id"],
                encryption=d["encryption"],
                cipher=d["cipher"],
                pack_size=d["pack_size"],
                compression=d["compression"],
                chunker=ChunkerParams.from_dict(d["chunker"]),
                created=d["created"],
                version=version,
                object_lock=d.get("object_lock"),
                retention_seconds=int(d.get("retention_seconds", 0)),
                data_storage_class=d.get("data_storage_class"),
                hot_storage_class=d.get("hot_storage_class"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"repository config is damaged: {exc}") from None

