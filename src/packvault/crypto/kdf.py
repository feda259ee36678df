"""Passphrase -> key-encryption key with Argon2id.

The cost parameters travel with the sealed key, so they can be raised later without breaking old
repositories.  The memory cost of new keys is a parameter (``Settings.kdf_memory_kib``, from
``PACKVAULT_KDF_MEMORY_KIB``): the test suite lowers it to keep hundreds of ``init`` calls fast; it never
weakens an existing key.

A ``Passphrase`` carries the keys derived from it in this process.  The CLI derives the key of the
repository it is about to open before it loads the S3 client (``cli/early_unlock.py``), so the KDF's 32 MiB
and the S3 client's memory are never resident at the same time; it hands that same object to
``Repository.open``, whose unlock then finds the key already derived.  Nothing is remembered in a module.
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
    def new(cls, memory_kib: int = DEFAULT_MEMORY_KIB) -> KdfParams:
        """Parameters for a new key: a fresh salt, and never less memory than Argon2id accepts."""
        return cls(salt=os.urandom(16), memory_kib=max(memory_kib, 8 * DEFAULT_LANES))

    def to_dict(self) -> dict:
        return {"salt": self.salt, "m": self.memory_kib, "t": self.iterations, "p": self.lanes}

    @classmethod
    def from_dict(cls, d: dict) -> KdfParams:
        return cls(salt=d["salt"], memory_kib=d["m"], iterations=d["t"], lanes=d["p"])


class Passphrase:
    """A passphrase and the key-encryption keys derived from it so far, by their parameters.

    ``used`` lists the parameters a key was asked for (``derive``), in order: after a command the CLI learns
    from it which key the repository uses, to derive it early next time.  ``prederive`` derives a key that
    is probably about to be asked for, without counting as a use."""

    def __init__(self, text: str):
        self.text = text
        self._derived: dict[KdfParams, bytes] = {}
        self.used: list[KdfParams] = []

    def derive(self, params: KdfParams) -> bytes:
        self.used.append(params)
        kek = self._derived.get(params)
        if kek is None:
            kek = self._derived[params] = derive_key(self.text, params)
        return kek

    def prederive(self, params: KdfParams) -> None:
        if params not in self._derived:
            self._derived[params] = derive_key(self.text, params)

    def has_derived(self, params: KdfParams) -> bool:
        return params in self._derived

    def forget_use(self, params: KdfParams) -> None:
        """Not a use after all: the key sealed under ``params`` is another passphrase's (a repository with
        several keys), so these parameters predict nothing about the next run."""
        self.used = [used for used in self.used if used != params]

    def used_params(self) -> list[KdfParams]:
        """The distinct parameters ``derive`` was asked for, first use first."""
        return list(dict.fromkeys(self.used))


def as_passphrase(passphrase: Passphrase | str) -> Passphrase:
    return passphrase if isinstance(passphrase, Passphrase) else Passphrase(passphrase)


def derive_key(passphrase: str, params: KdfParams) -> bytes:
    """The key-encryption key of ``passphrase`` under ``params`` (Argon2id; deterministic)."""
    return _argon2id(passphrase, params)


def _argon2id(passphrase: str, params: KdfParams) -> bytes:
    kdf = Argon2id(
        salt=params.salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(passphrase.encode("utf-8"))
