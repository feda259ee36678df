"""The master key: sealing under a passphrase, the keys derived from it, and the key file (issue 17)."""

from __future__ import annotations

import os

import msgpack
import pytest

from packvault.crypto.kdf import KdfParams, derive_key
from packvault.crypto.keys import (
    KeyMaterial,
    key_blob_repository_id,
    new_key_material,
    seal_key,
    unseal_key,
)
from packvault.errors import IntegrityError, WrongPassphrase

REPO_ID = bytes(range(32))


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch):
    monkeypatch.setenv("PACKVAULT_KDF_MEMORY_KIB", "1024")


def test_seal_and_unseal_round_trip():
    material = new_key_material(REPO_ID)
    blob = seal_key(material, "a passphrase")
    opened = unseal_key(blob, "a passphrase")
    assert opened == material
    assert key_blob_repository_id(blob) == REPO_ID
    assert material.master_key not in blob, "the master key is never stored in the clear"


def test_wrong_passphrase_is_told_from_damage():
    blob = seal_key(new_key_material(REPO_ID), "right")
    with pytest.raises(WrongPassphrase):
        unseal_key(blob, "wrong")
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0x01
    with pytest.raises(IntegrityError) as caught:
        unseal_key(bytes(damaged), "right")
    assert not isinstance(caught.value, WrongPassphrase)


def test_two_seals_of_one_key_differ_but_open_alike():
    material = new_key_material(REPO_ID)
    first, second = seal_key(material, "p"), seal_key(material, "p")
    assert first != second  # fresh salt and nonce each time
    assert unseal_key(first, "p") == unseal_key(second, "p") == material


def test_derived_keys_are_distinct_and_stable():
    material = KeyMaterial(repository_id=REPO_ID, master_key=b"\x07" * 32, cipher=material_cipher())
    again = KeyMaterial(repository_id=REPO_ID, master_key=b"\x07" * 32, cipher=material_cipher())
    other = KeyMaterial(repository_id=REPO_ID, master_key=b"\x08" * 32, cipher=material_cipher())
    assert material.id_key == again.id_key != other.id_key
    assert material.chunker_seed == again.chunker_seed != other.chunker_seed
    assert material.chunk_id_hasher()(b"data") == again.chunk_id_hasher()(b"data")
    assert material.chunk_id_hasher()(b"data") != other.chunk_id_hasher()(b"data")
    assert material.config_mac(b"config") == again.config_mac(b"config") != other.config_mac(b"config")
    assert material.config_mac(b"config") != material.config_mac(b"config!")
    assert material.id_key not in (material.master_key, material.config_mac(b""))


def material_cipher() -> int:
    return new_key_material(REPO_ID).cipher


def test_kdf_parameters_travel_with_the_key_and_bound_the_memory(monkeypatch):
    monkeypatch.setenv("PACKVAULT_KDF_MEMORY_KIB", "2048")
    params = KdfParams.new()
    assert params.memory_kib == 2048 and len(params.salt) == 16
    assert KdfParams.from_dict(params.to_dict()) == params
    monkeypatch.setenv("PACKVAULT_KDF_MEMORY_KIB", "1")
    assert KdfParams.new().memory_kib >= 8 * params.lanes  # never below what Argon2id accepts
    blob = seal_key(new_key_material(REPO_ID), "p")
    body = msgpack.unpackb(msgpack.unpackb(blob)["body"])
    assert KdfParams.from_dict(body["kdf"]).memory_kib == KdfParams.new().memory_kib


def test_derive_key_is_deterministic_and_memoised():
    params = KdfParams(salt=os.urandom(16), memory_kib=1024, iterations=1, lanes=1)
    first = derive_key("p", params)
    assert derive_key("p", params) == first
    assert derive_key("q", params) != first
    assert derive_key("p", KdfParams(salt=os.urandom(16), memory_kib=1024, iterations=1, lanes=1)) != first
    assert len(first) == 32
