"""Multipart uploads above the threshold: parts in parallel, aborted on failure."""

from __future__ import annotations

import os

import pytest

from packvault.errors import ServiceUnavailable
from tests.support.s3servers import s3_client

MiB = 1024 * 1024


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    return request.getfixturevalue(f"{request.param}_endpoint")


def test_multipart_above_threshold(endpoint, open_s3):
    be = open_s3(endpoint, multipart_threshold="6M", multipart_part_size="5M", storage_class="STANDARD_IA")
    small = os.urandom(6 * MiB)  # at the threshold: one PUT
    be.store("packs/data/aa/aa01", small)
    assert be.request_stats()["PUT"] == 1
    be.reset_request_stats()
    big = os.urandom(12 * MiB + 123)
    be.store("packs/data/bb/bb01", big)
    stats = be.request_stats()
    assert stats["PUT"] == 1 + 3 + 1  # create, three parts, complete
    assert stats["bytes_up"] == len(big)
    assert be.load("packs/data/bb/bb01") == big
    assert be.load("packs/data/bb/bb01", offset=5 * MiB - 10, size=20) == big[5 * MiB - 10 : 5 * MiB + 10]
    head = s3_client(endpoint).head_object(Bucket=be.bucket, Key=be._key("packs/data/bb/bb01"))
    assert head["ETag"].strip('"').endswith("-3")
    if "moto" in endpoint or head.get("StorageClass"):
        assert head.get("StorageClass") == "STANDARD_IA"
    be.store("packs/data/bb/bb01", big)  # convergent repeat of a multipart object
    assert be.request_stats()["converged"] == 1


def test_failed_part_aborts_the_upload(endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(endpoint)
    proxy = fault_proxy(endpoint, fault_rate=1.0, kinds=["503"], methods=["PUT"], path_contains="partNumber=2")
    be = open_s3(
        endpoint,
        url=url.replace(endpoint, proxy.endpoint),
        multipart_threshold="5M",
        multipart_part_size="5M",
        retry_attempts="2",
        retry_max_seconds="5",
    )
    with pytest.raises(ServiceUnavailable) as info:
        be.store("packs/data/cc/cc01", os.urandom(11 * MiB))
    assert "UploadPart 2" in str(info.value)
    client = s3_client(endpoint)
    assert client.list_multipart_uploads(Bucket=be.bucket).get("Uploads", []) == []
    assert not be.info("packs/data/cc/cc01").exists
