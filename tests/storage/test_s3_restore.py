"""Cold objects on S3 (issue 18): the restore state from HEAD, RestoreObject, and a GET refused in one line."""

from __future__ import annotations

import pytest
from borgstore.backends.errors import ObjectNotFound

from packvault.errors import ColdObject, UsageError
from packvault.storage.backend import COLD, READABLE, RESTORING, PackvaultBackend
from packvault.storage.s3.restore import state_of


@pytest.mark.parametrize(
    ("head", "state"),
    [
        ({}, READABLE),
        ({"StorageClass": "STANDARD_IA"}, READABLE),
        ({"StorageClass": "GLACIER_IR"}, READABLE),
        ({"StorageClass": "DEEP_ARCHIVE"}, COLD),
        ({"StorageClass": "GLACIER", "Restore": 'ongoing-request="true"'}, RESTORING),
        (
            {
                "StorageClass": "DEEP_ARCHIVE",
                "Restore": 'ongoing-request="false", expiry-date="Fri, 4 Dec 2026 00:00:00 GMT"',
            },
            READABLE,
        ),
    ],
)
def test_state_from_head(head, state):
    assert state_of(head) == state


@pytest.mark.parametrize("endpoint", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def test_cold_data_object_is_refused_until_restored(open_s3, request, endpoint):
    backend = open_s3(request.getfixturevalue(f"{endpoint}_endpoint"), storage_class="DEEP_ARCHIVE")
    assert backend.cold_data and backend.data_storage_class == "DEEP_ARCHIVE"
    backend.store("packs/data/aa/aabb", b"cold bytes")
    backend.store("index/ff", b"hot bytes")
    assert backend.restore_status("index/ff") == (READABLE, 9)
    assert backend.restore_status("packs/data/aa/aabb") == (COLD, 10)
    with pytest.raises(ColdObject):
        backend.load("packs/data/aa/aabb")
    before = backend.request_stats().get("RESTORE", 0)
    assert backend.restore("packs/data/aa/aabb", days=1, tier="bulk") in (RESTORING, READABLE)
    assert backend.request_stats()["RESTORE"] == before + 1
    assert backend.restore_status("packs/data/aa/aabb")[0] in (RESTORING, READABLE)
    assert backend.restore("index/ff", days=1, tier="bulk") == READABLE  # nothing to restore in STANDARD
    with pytest.raises(ObjectNotFound):
        backend.restore_status("packs/data/aa/nope")
    with pytest.raises(UsageError):
        backend.restore("packs/data/aa/aabb", days=1, tier="fast")
    classes = backend.bytes_by_class("packs/data")
    assert classes == {"DEEP_ARCHIVE": 10}


@pytest.mark.parametrize("endpoint", ["moto"])
def test_restored_object_reads(open_s3, request, endpoint):
    backend = open_s3(request.getfixturevalue(f"{endpoint}_endpoint"), storage_class="GLACIER")
    backend.store("packs/data/aa/aacc", b"glacier bytes")
    backend.restore("packs/data/aa/aacc", days=1, tier="standard")
    assert backend.restore_status("packs/data/aa/aacc")[0] == READABLE  # moto finishes a restore at once
    assert backend.load("packs/data/aa/aacc") == b"glacier bytes"


class Plain(PackvaultBackend):
    """A backend without storage classes: the declared defaults."""

    create = destroy = open = close = mkdir = rmdir = load = store = delete = move = list = None

    def info(self, name):
        from borgstore.backends._base import ItemInfo

        return ItemInfo(name=name, exists=True, directory=False, size=5)


def test_default_restore_operations_say_not_needed():
    backend = Plain()
    assert not backend.cold_data and backend.data_storage_class is None
    assert backend.restore_status("packs/data/x") == (READABLE, 5)
    assert backend.restore("packs/data/x", days=1, tier="bulk") == READABLE
