"""The repository master key: creation, sealing under a passphrase, and the keys derived from it.

One random 256-bit master key per repository.  Everything else is derived from it with HKDF under
distinct labels, so the sealed key blob stays tiny and no derived key can be used to compute another:

- object subkeys (per writer session, see ``aead``),
- the chunk-id MAC key (keyed BLAKE3: ids do not reveal content hashes to the storage provider),
- the chunker seed (FastCDC gear table: cut points do not reveal content either).

The blob carries an xxh64 of its own bytes, so a damaged key object is reported as damage, and only an
authentication failure with an intact blob is reported as a wrong passphrase.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import blake3
import msgpack
import xxhash
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import IntegrityError, WrongPassphrase
from .aead import CIPHER_AES_GCM, SessionSealer, hkdf
from .kdf import DEFAULT_MEMORY_KIB, KdfParams, Passphrase, as_passphrase

KEY_BLOB_VERSION = 1


@dataclass(frozen=True)
class KeyMaterial:
    """The master key, and optionally the chunk-id key and chunker seed of another repository.

    A repository made with ``init --copy-crypt-from`` carries the source's id key and chunker seed (sealed
    with its master key), so a chunk gets the same id in both and ``copy`` need not re-cut anything; its
    own master key still seals its objects.  Without them (every other key) both are derived as usual."""

    repository_id: bytes
    master_key: bytes
    cipher: int
    shared_id_key: bytes | None = None
    shared_chunker_seed: int | None = None

    @property
    def id_key(self) -> bytes:
        if self.shared_id_key is not None:
            return self.shared_id_key
        return hkdf(self.master_key, salt=self.repository_id, info=b"packvault chunk id key v1")

    @property
    def chunker_seed(self) -> int:
        if self.shared_chunker_seed is not None:
            return self.shared_chunker_seed
        raw = hkdf(self.master_key, salt=self.repository_id, info=b"packvault chunker seed v1", length=8)
        # pyfastcdc wants a non-zero seed below 2**63 (0 means its built-in table).
        return (int.from_bytes(raw, "little") & (2**62 - 1)) | 1

    def config_mac(self, data: bytes) -> bytes:
        """A MAC of the plaintext repository config: it is read before the key is known, so it cannot be
        sealed, but once the key is open a flipped or forged field (encryption mode, pack size) shows."""
        key = hkdf(self.master_key, salt=self.repository_id, info=b"packvault config mac v1")
        return hmac.new(key, data, hashlib.sha256).digest()

    def new_session(self) -> SessionSealer:
        return SessionSealer(self.master_key, self.cipher)

    def chunk_id_hasher(self) -> ChunkIdHasher:
        return self._chunk_id_hasher

    @cached_property
    def _chunk_id_hasher(self) -> ChunkIdHasher:
        # derived once: an HKDF per chunk is measurable time on the backup's busiest thread
        return ChunkIdHasher(self.id_key)


class ChunkIdHasher:
    """Keyed BLAKE3 MAC of a chunk's plaintext: the chunk id."""

    def __init__(self, key: bytes):
        self._key = key

    def __call__(self, data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=self._key, max_threads=1).digest()


def write_key_file(path: Path, data: bytes) -> None:
    """Write a sealed key (or its export) readable by the owner only, from the first byte on.

    Created 0600 through ``os.open`` rather than chmod'ed after writing: in between, anyone could have opened
    it.  Written to a temporary name and renamed, so an interrupted write never leaves half a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def new_key_material(
    repository_id: bytes, cipher: int = CIPHER_AES_GCM, *, share_ids_from: KeyMaterial | None = None
) -> KeyMaterial:
    """A new random master key; ``share_ids_from``: take that key's chunk-id key and chunker seed."""
    if share_ids_from is None:
        return KeyMaterial(repository_id=repository_id, master_key=os.urandom(32), cipher=cipher)
    return KeyMaterial(
        repository_id=repository_id,
        master_key=os.urandom(32),
        cipher=cipher,
        shared_id_key=share_ids_from.id_key,
        shared_chunker_seed=share_ids_from.chunker_seed,
    )


def _aad(repository_id: bytes) -> bytes:
    return b"packvault key v1" + repository_id


@dataclass(frozen=True)
class KeyNote:
    """When a key blob was made and what it is for (``key list``).  Sealed under the master key rather than
    the blob's passphrase, so that whoever opened the repository with any one passphrase can read the notes
    of all its keys, and the bucket holds no label in the clear."""

    added: str  # ISO 8601 UTC
    label: str = ""


def _note_key(material: KeyMaterial) -> bytes:
    return hkdf(material.master_key, salt=material.repository_id, info=b"packvault key note v1")


def seal_key(
    material: KeyMaterial,
    passphrase: Passphrase | str,
    *,
    memory_kib: int = DEFAULT_MEMORY_KIB,
    note: KeyNote | None = None,
) -> bytes:
    """The key blob stored in ``keys/`` (repokey) or in a local key file (keyfile); ``memory_kib`` is the
    Argon2id memory cost of the new blob."""
    params = KdfParams.new(memory_kib)
    kek = as_passphrase(passphrase).derive(params)
    nonce = os.urandom(12)
    fields = {"master": material.master_key, "cipher": material.cipher}
    if material.shared_id_key is not None:
        fields["id_key"] = material.shared_id_key
    if material.shared_chunker_seed is not None:
        fields["chunker_seed"] = material.shared_chunker_seed
    secret = msgpack.packb(fields)
    sealed = AESGCM(kek).encrypt(nonce, secret, _aad(material.repository_id))
    fields = {
        "v": KEY_BLOB_VERSION,
        "repo": material.repository_id,
        "kdf": params.to_dict(),
        "nonce": nonce,
        "sealed": sealed,
    }
    if note is not None:
        note_nonce = os.urandom(12)
        plain = msgpack.packb({"added": note.added, "label": note.label})
        fields["note"] = note_nonce + AESGCM(_note_key(material)).encrypt(
            note_nonce, plain, _aad(material.repository_id)
        )
    body = msgpack.packb(fields)
    return msgpack.packb({"body": body, "xxh64": xxhash.xxh64_intdigest(body)})


def key_blob_repository_id(blob: bytes) -> bytes:
    return _parse_blob(blob)["repo"]


def key_blob_params(blob: bytes) -> KdfParams:
    """The (non-secret) KDF parameters a key blob was sealed with."""
    return KdfParams.from_dict(_parse_blob(blob)["kdf"])


def key_blob_note(blob: bytes, material: KeyMaterial) -> KeyNote | None:
    """The note of a key blob of this repository; None for a blob made before notes existed."""
    sealed = _parse_blob(blob).get("note")
    if sealed is None:
        return None
    try:
        plain = AESGCM(_note_key(material)).decrypt(sealed[:12], sealed[12:], _aad(material.repository_id))
        fields = msgpack.unpackb(plain)
        return KeyNote(added=fields["added"], label=fields.get("label", ""))
    except (InvalidTag, ValueError, KeyError, TypeError, msgpack.UnpackException):
        raise IntegrityError("the note of a key blob does not authenticate under the repository key") from None


def _parse_blob(blob: bytes) -> dict:
    try:
        outer = msgpack.unpackb(blob)
        body = outer["body"]
        if xxhash.xxh64_intdigest(body) != outer["xxh64"]:
            raise ValueError("checksum mismatch")
        inner = msgpack.unpackb(body)
        if inner["v"] != KEY_BLOB_VERSION:
            raise ValueError(f"unknown key version {inner['v']}")
        return inner
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise IntegrityError(
            f"the repository key is damaged ({exc})", hint="restore it with 'packvault key import'"
        ) from None


def unseal_key(blob: bytes, passphrase: Passphrase | str) -> KeyMaterial:
    inner = _parse_blob(blob)
    kek = as_passphrase(passphrase).derive(KdfParams.from_dict(inner["kdf"]))
    try:
        secret = msgpack.unpackb(AESGCM(kek).decrypt(inner["nonce"], inner["sealed"], _aad(inner["repo"])))
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase for this repository") from None
    return KeyMaterial(
        repository_id=inner["repo"],
        master_key=secret["master"],
        cipher=secret["cipher"],
        shared_id_key=secret.get("id_key"),
        shared_chunker_seed=secret.get("chunker_seed"),
    )
