"""Uploads from payloads (a memory view, a spool file) without whole-object copies, also across retries.

Every upload attempt must get a body that starts at offset 0: a reused, already consumed reader would send
an empty or short body.  These tests go through the fault proxy to a real moto server, so a retried attempt
really re-sends its body.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os

import pytest

from packvault.errors import IntegrityError
from packvault.storage.payload import BufferPayload, Payload, PayloadReader
from packvault.storage.spool import SpoolFile
from tests.support.s3servers import s3_client

MiB = 1024 * 1024


def proxied(url: str, upstream: str, proxy) -> str:
    return url.replace(upstream, proxy.endpoint)


def spooled(directory, data: bytes, piece: int = 300_000) -> SpoolFile:
    spool = SpoolFile(directory)
    for start in range(0, len(data), piece):
        spool.write(data[start : start + piece])
    return spool


def sent_bodies(be) -> list[tuple[str, type]]:
    """(operation, type of the request body) of every upload attempt the client sends from now on."""
    seen: list[tuple[str, type]] = []

    def hook(request=None, event_name: str = "", **_kwargs) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if operation in ("PutObject", "UploadPart"):
            seen.append((operation, type(request.body)))

    be.client.meta.events.register("before-send.s3", hook)
    return seen


# --- the reader botocore gets -------------------------------------------------------------------------------


@pytest.fixture(params=["buffer", "file"])
def ten_bytes(request, tmp_path) -> Payload:
    if request.param == "buffer":
        return BufferPayload(b"0123456789")
    spool = spooled(tmp_path, b"0123456789", piece=3)
    request.addfinalizer(spool.close)
    return spool.payload()


def test_reader_reads_seeks_and_tells_within_its_range(ten_bytes):
    reader = ten_bytes.reader(2, 5)  # "23456"
    assert isinstance(reader, io.IOBase) and reader.seekable() and reader.readable() and not reader.writable()
    assert reader.read(2) == b"23"
    assert reader.tell() == 2
    assert reader.read() == b"456"
    assert reader.read(10) == b""
    assert reader.seek(0, io.SEEK_END) == 5  # how botocore learns the length
    assert reader.seek(-4, io.SEEK_CUR) == 1
    assert reader.read(100) == b"3456"
    reader.seek(0)
    buffer = bytearray(3)
    assert reader.readinto(buffer) == 3 and buffer == b"234"
    reader.seek(7)
    assert reader.read(1) == b""
    with pytest.raises(ValueError):
        reader.seek(-1)
    reader.close()
    with pytest.raises(ValueError):
        reader.read(1)


def test_each_reader_starts_at_its_beginning(ten_bytes):
    first = ten_bytes.reader()
    assert first.read() == b"0123456789"
    assert ten_bytes.reader().read() == b"0123456789"  # a fresh reader for every attempt
    assert ten_bytes.reader(8).read() == b"89"
    with pytest.raises(ValueError):
        ten_bytes.reader(5, 6)


def test_payload_compares_and_hashes_ranges(ten_bytes):
    assert ten_bytes.md5 == hashlib.md5(b"0123456789").digest()
    assert ten_bytes.range_md5(3, 4) == hashlib.md5(b"3456").digest()
    assert ten_bytes.same_bytes(b"0123456789")
    assert not ten_bytes.same_bytes(b"0123456780")
    assert not ten_bytes.same_bytes(b"012345678")


# --- uploads through the real client --------------------------------------------------------------------------


def test_store_sends_a_reader_not_a_copy(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    bodies = sent_bodies(be)
    big = os.urandom(3 * MiB + 17)
    pack = bytearray(os.urandom(1000))
    be.store("packs/data/aa/aa01", memoryview(big))
    be.store("packs/meta/bb", memoryview(pack)[10:])
    be.store("config/x", b"")
    assert bodies == [("PutObject", PayloadReader)] * 3
    assert be.load("packs/data/aa/aa01") == big
    assert be.load("packs/meta/bb") == pack[10:]
    assert be.load("config/x") == b""
    assert be.request_stats()["bytes_up"] == len(big) + len(pack) - 10


def _text(value: str | bytes | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def test_uploads_are_not_hashed_twice_but_still_checked_by_the_service(moto_endpoint, open_s3):
    """Every upload carries Content-MD5, which the service checks and the signature covers: botocore's SHA-256
    of the body for the signature (its default on plain http endpoints, where LocalStack, MinIO and moto run)
    would be a second pass over every pack byte, ~0.3 CPU-seconds per 300 MiB on the backup's busiest
    process, for no integrity the MD5 does not give."""
    be = open_s3(moto_endpoint)
    sent: list[tuple[str, str | None, str | None]] = []

    def hook(request=None, event_name: str = "", **_kwargs) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if operation in ("PutObject", "UploadPart"):
            sent.append(
                (
                    operation,
                    _text(request.headers.get("X-Amz-Content-SHA256")),
                    _text(request.headers.get("Content-MD5")),
                )
            )

    be.client.meta.events.register("before-send.s3", hook)
    data = os.urandom(2 * MiB + 1)
    be.store("packs/data/ee/ee01", memoryview(data))
    assert moto_endpoint.startswith("http://")
    ((operation, content_sha256, content_md5),) = sent
    assert content_sha256 == "UNSIGNED-PAYLOAD"
    assert content_md5 == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert be.load("packs/data/ee/ee01") == data


def test_spooled_payload_uploads_identical_object(moto_endpoint, open_s3, tmp_path):
    be = open_s3(moto_endpoint)
    data = os.urandom(5 * MiB + 3)
    with spooled(tmp_path, data) as spool:
        be.store_payload("packs/data/cc/cc01", spool.payload())
    assert be.load("packs/data/cc/cc01") == data
    head = s3_client(moto_endpoint).head_object(Bucket=be.bucket, Key=be._key("packs/data/cc/cc01"))
    assert head["Metadata"]["pv-md5"] == hashlib.md5(data).hexdigest()
    assert head["ETag"].strip('"') == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("kind", ["drop", "500", "503"])
def test_retried_upload_resends_the_whole_spooled_body(
    kind, moto_endpoint, open_s3, make_s3_url, fault_proxy, tmp_path
):
    """The first two attempts fail after (or while) sending the body; the third must send it all again."""
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=[kind], methods=["PUT"], max_faults=2)
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy))
    bodies = sent_bodies(be)
    data = os.urandom(4 * MiB + 5)
    with spooled(tmp_path, data) as spool:
        be.store_payload("packs/data/dd/dd01", spool.payload())
    assert proxy.faults[kind] == 2
    assert be.request_stats()["retries"] == 2
    assert bodies == [("PutObject", PayloadReader)] * 3
    assert be.load("packs/data/dd/dd01") == data


def test_lost_response_to_spooled_upload_converges(moto_endpoint, open_s3, make_s3_url, fault_proxy, tmp_path):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["lost_response"], methods=["PUT"], max_faults=1)
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy))
    data = os.urandom(2 * MiB)
    with spooled(tmp_path, data) as spool:
        be.store_payload("packs/data/ee/ee01", spool.payload())
    stats = be.request_stats()
    assert proxy.faults["lost_response"] == 1
    assert stats["converged"] == 1 and stats["PUT"] == 2
    assert be.load("packs/data/ee/ee01") == data


@pytest.mark.parametrize("source", ["buffer", "spool"])
def test_multipart_parts_are_ranges_of_the_payload_and_retry_from_their_start(
    source, moto_endpoint, open_s3, make_s3_url, fault_proxy, tmp_path
):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(
        moto_endpoint, fault_rate=1.0, kinds=["drop", "500"], methods=["PUT"], path_contains="partNumber", max_faults=3
    )
    be = open_s3(
        moto_endpoint, url=proxied(url, moto_endpoint, proxy), multipart_threshold="5M", multipart_part_size="5M"
    )
    bodies = sent_bodies(be)
    data = os.urandom(12 * MiB + 1)
    if source == "buffer":
        be.store("packs/data/ff/ff01", memoryview(data))
    else:
        with spooled(tmp_path, data) as spool:
            be.store_payload("packs/data/ff/ff01", spool.payload())
    assert proxy.total_faults == 3
    assert bodies == [("UploadPart", PayloadReader)] * (3 + 3)  # 3 parts, 3 of their attempts failed
    assert be.load("packs/data/ff/ff01") == data
    head = s3_client(moto_endpoint).head_object(Bucket=be.bucket, Key=be._key("packs/data/ff/ff01"))
    assert head["Metadata"]["pv-md5"] == hashlib.md5(data).hexdigest()


def _store_without_md5(endpoint: str, be, name: str, data: bytes) -> None:
    """Write ``name`` behind the backend's back as a multipart object without our MD5 (ETag is not an MD5)."""
    client = s3_client(endpoint)
    key = be._key(name)
    upload = client.create_multipart_upload(Bucket=be.bucket, Key=key)["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(data), 5 * MiB), 1):
        part = client.upload_part(
            Bucket=be.bucket, Key=key, UploadId=upload, PartNumber=number, Body=data[start : start + 5 * MiB]
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    client.complete_multipart_upload(Bucket=be.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


def test_existing_object_without_md5_is_compared_with_the_spool_bytes(moto_endpoint, open_s3, tmp_path):
    be = open_s3(moto_endpoint)
    data = os.urandom(6 * MiB)
    _store_without_md5(moto_endpoint, be, "packs/data/ab/ab01", data)
    with spooled(tmp_path, data) as spool:
        be.store_payload("packs/data/ab/ab01", spool.payload())  # equal bytes: converges
    assert be.request_stats()["converged"] == 1
    other = data[:-1] + bytes([data[-1] ^ 1])
    with spooled(tmp_path, other) as spool, pytest.raises(IntegrityError):
        be.store_payload("packs/data/ab/ab01", spool.payload())
    assert be.load("packs/data/ab/ab01") == data  # never overwritten
