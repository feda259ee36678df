"""The Object Lock policy in the repository config: recorded, checksummed, absent from older records."""

from __future__ import annotations

import msgpack
import pytest

from packvault.errors import IntegrityError
from packvault.repository.config import RepoConfig


def test_lock_round_trips_and_is_covered_by_the_checksum():
    config = RepoConfig(repository_id=b"\x01" * 32, encryption="repokey", object_lock="COMPLIANCE",
                        retention_seconds=30 * 86400)
    decoded = RepoConfig.decode(config.encode())
    assert (decoded.object_lock, decoded.retention_seconds) == ("COMPLIANCE", 30 * 86400)
    tampered = msgpack.unpackb(config.encode())
    tampered["object_lock"] = "GOVERNANCE"
    with pytest.raises(IntegrityError):
        RepoConfig.decode(msgpack.packb(tampered))


def test_a_config_without_lock_encodes_as_before_and_older_records_decode():
    config = RepoConfig(repository_id=b"\x02" * 32, encryption="repokey", created="2026-01-01T00:00:00+00:00")
    fields = msgpack.unpackb(config.encode())
    assert "object_lock" not in fields and "retention_seconds" not in fields
    decoded = RepoConfig.decode(config.encode())
    assert decoded.object_lock is None and decoded.retention_seconds == 0
    fields.pop("check")  # a record from before checksums
    assert RepoConfig.decode(msgpack.packb(fields)).object_lock is None
