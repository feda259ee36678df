"""The repository's plaintext configuration (``config/repository``) and index epoch (``config/epoch``).

Nothing secret lives here: it is what a client needs before it has the key (format version, encryption
mode) and what every writer must agree on (pack size, chunker parameters, default compression).
``config/repository`` is written last by ``init``, so its presence marks a complete repository.
"""

from __future__ import annotations

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
EPOCH_NAME = "config/epoch"


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

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "version": self.version,
                "id": self.repository_id,
                "encryption": self.encryption,
                "cipher": self.cipher,
                "pack_size": self.pack_size,
                "compression": self.compression,
                "chunker": self.chunker.to_dict(),
                "created": self.created,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> RepoConfig:
        try:
            d = msgpack.unpackb(data)
            version = d["version"]
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise IntegrityError(f"repository config is damaged: {exc}") from None
        if version != FORMAT_VERSION:
            raise UnsupportedRepository(f"repository format version {version} is not supported by this Packvault")
        return cls(
            repository_id=d["id"],
            encryption=d["encryption"],
            cipher=d["cipher"],
            pack_size=d["pack_size"],
            compression=d["compression"],
            chunker=ChunkerParams.from_dict(d["chunker"]),
            created=d["created"],
            version=version,
        )

