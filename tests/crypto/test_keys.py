"""The master key: sealing under a passphrase, the keys derived from it, and the key file (issue 17)."""

from __future__ import annotations

import os

import msgpack
import pytest

from packvault.crypto.kdf import KdfParams, Passphrase, derive_key
from packvault.crypto.keys import (
    KeyMaterial,
    key_blob_repository_id,
    new_key_material,
    seal_key,
    unseal_key,
)
from packvault.errors import IntegrityError, WrongPassphrase

REPO_ID = bytes(range(32))


CHEAP = 1024  # KiB of Argon2id memory: enough to test with, quick to derive


def test_seal_and_unseal_round_trip():
    material = new_key_material(REPO_ID)
    blob = seal_key(material, "a passphrase", memory_kib=CHEAP)
    opened = unseal_key(blob, "a passphrase")
    assert opened == material
    assert key_blob_repository_id(blob) == REPO_ID
    assert material.master_key not in blob, "the master key is never stored in the clear"


def test_wrong_passphrase_is_told_from_damage():
    blob = seal_key(new_key_material(REPO_ID), "right", memory_kib=CHEAP)
    with pytest.raises(WrongPassphrase):
        unseal_key(blob, "wrong")
    damaged = bytearray(blob)
    damaged[len(damaged) // 2] ^= 0x01
    with pytest.raises(IntegrityError) as caught:
        unseal_key(bytes(damaged), "right")
    assert not isinstance(caught.value, WrongPassphrase)


def test_two_seals_of_one_key_differ_but_open_alike():
    material = new_key_material(REPO_ID)
    first, second = seal_key(material, "p", memory_kib=CHEAP), seal_key(material, "p", memory_kib=CHEAP)
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


def test_kdf_parameters_travel_with_the_key_and_bound_the_memory():
    params = KdfParams.new(2048)
    assert params.memory_kib == 2048 and len(params.salt) == 16
    assert KdfParams.from_dict(params.to_dict()) == params
    assert KdfParams.new(1).memory_kib >= 8 * params.lanes  # never below what Argon2id accepts
    blob = seal_key(new_key_material(REPO_ID), "p", memory_kib=1)
    body = msgpack.unpackb(msgpack.unpackb(blob)["body"])
    assert KdfParams.from_dict(body["kdf"]).memory_kib == KdfParams.new(1).memory_kib


def test_derive_key_is_deterministic_and_memoised():
    params = KdfParams(salt=os.urandom(16), memory_kib=1024, iterations=1, lanes=1)
    first = derive_key("p", params)
    assert derive_key("p", params) == first
    assert derive_key("q", params) != first
    assert derive_key("p", KdfParams(salt=os.urandom(16), memory_kib=1024, iterations=1, lanes=1)) != first
    assert len(first) == 32


def test_a_passphrase_derives_each_key_once_and_remembers_its_uses(monkeypatch):
    from packvault.crypto import kdf

    runs = []
    real = kdf._argon2id
    monkeypatch.setattr(kdf, "_argon2id", lambda *a: runs.append(a[1]) or real(*a))
    material = new_key_material(REPO_ID)
    blob = seal_key(material, "p", memory_kib=CHEAP)
    runs.clear()
    params = KdfParams.from_dict(msgpack.unpackb(msgpack.unpackb(blob)["body"])["kdf"])
    passphrase = Passphrase("p")
    passphrase.prederive(params)  # what the CLI's early unlock does
    assert passphrase.used_params() == [] and len(runs) == 1
    assert unseal_key(blob, passphrase) == material
    assert unseal_key(blob, passphrase) == material
    assert len(runs) == 1, "the key derived early is reused, never derived again"
    assert passphrase.used_params() == [params]
    assert unseal_key(blob, Passphrase("p")) == material and len(runs) == 2  # nothing shared between objects


def test_shared_id_key_and_chunker_seed_survive_sealing():
    source = new_key_material(REPO_ID)
    other_id = b"\x02" * 32
    shared = new_key_material(other_id, share_ids_from=source)
    assert shared.master_key != source.master_key
    assert (shared.id_key, shared.chunker_seed) == (source.id_key, source.chunker_seed)
    opened = unseal_key(seal_key(shared, "p", memory_kib=CHEAP), "p")
    assert (opened.id_key, opened.chunker_seed) == (source.id_key, source.chunker_seed)
    plain = unseal_key(seal_key(new_key_material(other_id), "p", memory_kib=CHEAP), "p")
    assert plain.id_key != source.id_key  # a key without shared ids still derives its own
