"""ArchiveMeta is the one schema of the archive metadata object: what it encodes, it decodes; what it does not
know, it keeps; what every archive has, it requires."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from packvault.archive.archive import META_DAMAGE, ArchiveMeta, IncompleteArchiveMeta
from packvault.errors import IntegrityError

META = ArchiveMeta(
    id=b"\1" * 32,
    name="nightly",
    time="2026-11-20T01:00:00+00:00",
    end="2026-11-20T01:02:00+00:00",
    host="h",
    user="u",
    item_ids=[b"\2" * 32],
    nitems=3,
    paths=["/srv"],
    stats={"nfiles": 2},
)


def test_round_trip():
    assert ArchiveMeta.decode(META.encode(), META.id) == META


def test_keys_of_a_newer_version_survive_a_rewrite():
    record = msgpack.unpackb(META.encode())
    record["labels"] = ["x"]
    decoded = ArchiveMeta.decode(msgpack.packb(record), META.id)
    rewritten = dataclasses.replace(decoded, nitems=4).encode()
    assert msgpack.unpackb(rewritten)["labels"] == ["x"]


def test_damage_is_written_only_when_there_is_some():
    assert META_DAMAGE not in msgpack.unpackb(META.encode())
    damaged = dataclasses.replace(META, damage={"files": 1}, repaired="2026-11-21T00:00:00+00:00")
    record = msgpack.unpackb(damaged.encode())
    assert record[META_DAMAGE] == {"files": 1} and record["repaired"] == "2026-11-21T00:00:00+00:00"


@pytest.mark.parametrize("key", ArchiveMeta.REQUIRED)
def test_a_missing_key_is_named(key):
    record = msgpack.unpackb(META.encode())
    del record[key]
    with pytest.raises(IncompleteArchiveMeta) as caught:
        ArchiveMeta.decode(msgpack.packb(record), META.id)
    assert caught.value.missing == [key]


@pytest.mark.parametrize("data", [b"\xc1", msgpack.packb([1, 2]), b""])
def test_bytes_that_are_no_metadata_are_an_integrity_error(data):
    with pytest.raises(IntegrityError):
        ArchiveMeta.decode(data, META.id)
    assert ArchiveMeta.name_of(data) == "?"
