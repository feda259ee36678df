"""Passphrase -> key-encryption key with Argon2id.

The cost parameters travel with the sealed key, so they can be raised later without breaking old
repositories.  ``PACKVAULT_KDF_MEMORY_KIB`` lowers the memory cost for new keys: the test suite uses it
to keep hundreds of ``init`` calls fast; it never weakens an existing key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

# 32 MiB x 4 passes: above OWASP's Argon2id minimums (19 MiB x 2), while keeping the KDF's memory below the
# backup pipeline's own peak, so small machines and serverless functions are not sized by the passphrase.
DEFAULT_MEMORY_KIB = 32 * 1024
DEFAULT_ITERATIONS = 4
DEFAULT_LANES = 4


@dataclass(frozen=True)
class KdfParams:
    salt: bytes
    memory_kib: int = DEFAULT_MEMORY_KIB
    iterations: int = DEFAULT_ITERATIONS
    lanes: int = DEFAULT_LANES

    @classmethod
    def new(cls) -> KdfParams:
        memory = int(os.environ.get("PACKVAULT_KDF_MEMORY_KIB", DEFAULT_MEMORY_KIB))
        return cls(salt=os.urandom(16), memory_kib=max(memory, 8 * DEFAULT_LANES))

    def to_dict(self) -> dict:
        return {"salt": self.salt, "m": self.memory_kib, "t": self.iterations, "p": self.lanes}

    @classmethod
    def from_dict(cls, d: dict) -> KdfParams:
        return cls(salt=d["salt"], memory_kib=d["m"], iterations=d["t"], lanes=d["p"])


def derive_key(passphrase: str, params: KdfParams) -> bytes:
    kdf = Argon2id(
        salt=params.salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(passphrase.encode("utf-8"))
