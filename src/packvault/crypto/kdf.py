"""Passphrase -> key-encryption key with Argon2id.

The cost parameters travel with the sealed key, so they can be raised later without breaking old
repositories.  ``PACKVAULT_KDF_MEMORY_KIB`` lowers the memory cost for new keys: the test suite uses it
to keep hundreds of ``init`` calls fast; it never weakens an existing key.
"""

from __future__ import annotations

import hashlib
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


# Keys derived in this process, by (salt, cost parameters, passphrase digest).  The CLI derives the key of
# the repository it is about to open before it loads the rest of the program (see cli/early_unlock.py), so
# the KDF's 32 MiB and the S3 client's memory are never resident at the same time; the derivation that
# opening the repository asks for later is then answered from here.
_derived: dict[tuple, bytes] = {}
_used: list[tuple] = []  # memo keys in the order derive_key was asked for them


def _memo_key(passphrase: str, params: KdfParams) -> tuple:
    digest = hashlib.blake2b(passphrase.encode("utf-8"), digest_size=32).digest()
    return (params.salt, params.memory_kib, params.iterations, params.lanes, digest)


def usage_mark() -> int:
    """A mark for ``used_params``: call it before a command to learn afterwards which keys it used."""
    return len(_used)


def used_params(since: int = 0) -> list[KdfParams]:
    """The distinct parameters derive_key was asked for since ``since``, first use first."""
    distinct = list(dict.fromkeys(_used[since:]))
    return [KdfParams(salt=k[0], memory_kib=k[1], iterations=k[2], lanes=k[3]) for k in distinct]


def derive_key(passphrase: str, params: KdfParams) -> bytes:
    key = _memo_key(passphrase, params)
    _used.append(key)
    kek = _derived.get(key)
    if kek is None:
        kek = _derived[key] = _argon2id(passphrase, params)
    return kek


def prederive(passphrase: str, params: KdfParams) -> None:
    """Derive a key that is probably about to be asked for; not a use (see ``used_params``)."""
    key = _memo_key(passphrase, params)
    if key not in _derived:
        _derived[key] = _argon2id(passphrase, params)


def _argon2id(passphrase: str, params: KdfParams) -> bytes:
    kdf = Argon2id(
        salt=params.salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(passphrase.encode("utf-8"))
