"""The S3 backend's storage classes by namespace: data packs, lock records, and the hot class of the rest."""

from __future__ import annotations


def test_lock_records_stay_standard(open_s3, moto_endpoint):
    backend = open_s3(moto_endpoint, storage_class="DEEP_ARCHIVE", hot_storage_class="STANDARD_IA")
    backend.store("locks/holder", b"lock")
    backend.store("archives/abc", b"entry")
    backend.store("packs/data/aa/aabb", b"data")
    classes = {
        obj["Key"].rsplit("/", 2)[-2] + "/" + obj["Key"].rsplit("/", 1)[-1]: obj.get("StorageClass", "STANDARD")
        for obj in backend.client.list_objects_v2(Bucket=backend.bucket)["Contents"]
    }
    assert classes == {"locks/holder": "STANDARD", "archives/abc": "STANDARD_IA", "aa/aabb": "DEEP_ARCHIVE"}
