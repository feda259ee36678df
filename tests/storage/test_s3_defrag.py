"""Server-side copy-forward: the same bytes as borgstore's default defrag, far fewer bytes downloaded."""

from __future__ import annotations

import hashlib
import os

import pytest
from borgstore.backends._base import BackendBase
from borgstore.backends.errors import ObjectNotFound, ReadRangeError

from packvault.errors import ConflictError, IntegrityError
from packvault.storage.s3.plan import MIN_PART, CopyPart, DataPart, plan_copy_parts
from tests.support.s3servers import s3_client

MiB = 1024 * 1024


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    return request.getfixturevalue(f"{request.param}_endpoint")


def test_plan_keeps_every_part_but_the_last_at_least_5_mib():
    runs = [("a", 0, 100), ("b", 0, 12 * MiB), ("a", 500, 200), ("b", 20 * MiB, 6 * MiB), ("a", 900, 50)]
    parts = plan_copy_parts(runs)
    assert all(p.size >= MIN_PART for p in parts[:-1])
    assert sum(p.size for p in parts) == sum(size for _, _, size in runs)
    assert [type(p) for p in parts] == [DataPart, CopyPart, DataPart]
    assert parts[0].ranges == [("a", 0, 100), ("b", 0, MIN_PART - 100)]
    # the small run between the copies borrowed the whole next run, which became too small to copy
    assert parts[2].ranges == [("a", 500, 200), ("b", 20 * MiB, 6 * MiB), ("a", 900, 50)]


def test_server_side_defrag_same_bytes_fewer_downloads(endpoint, open_s3):
    be = open_s3(endpoint, storage_class="STANDARD_IA")
    pack1 = os.urandom(24 * MiB)
    pack2 = os.urandom(3 * MiB)
    be.store("packs/data/01/0101", pack1)
    be.store("packs/data/02/0202", pack2)
    sources = [
        ("packs/data/01/0101", 0, 8 * MiB),  # big run: copied in S3
        ("packs/data/02/0202", 1000, 100_000),  # small: downloaded (and topped up)
        ("packs/data/01/0101", 12 * MiB, 6 * MiB),
        ("packs/data/01/0101", 18 * MiB, 5 * MiB),  # continues the previous source: one run of 11 MiB
        ("packs/data/02/0202", -4000, 4000),  # negative offset, last part may be small
    ]
    expected = b"".join(
        (pack1 if n.endswith("0101") else pack2)[o if o >= 0 else len(pack2) + o :][:s] for n, o, s in sources
    )
    be.reset_request_stats()
    target = be.defrag(sources, target="packs/data/ff/ff00")
    server_side = be.request_stats()
    assert target == "packs/data/ff/ff00"
    assert be.load(target) == expected
    assert server_side["COPY"] >= 2
    assert server_side["bytes_down"] < 6 * MiB  # only the small runs and their top-up
    assert server_side["bytes_up"] < 6 * MiB

    # borgstore's default client-side defrag of the same sources: identical bytes, everything downloaded
    be.reset_request_stats()
    default = BackendBase.defrag(be, sources, target="packs/data/ee/ee00")
    client_side = be.request_stats()
    assert be.load(default) == be.load(target)
    assert client_side["bytes_down"] >= len(expected)
    assert server_side["bytes_down"] * 3 < client_side["bytes_down"]

    # repeating the server-side defrag converges (create-only target exists with the same bytes), compared by
    # the multipart ETag: nothing but the small runs is downloaded again
    be.reset_request_stats()
    be.defrag(sources, target="packs/data/ff/ff00")
    assert be.request_stats()["converged"] == 1
    assert be.request_stats()["bytes_down"] == server_side["bytes_down"]


def test_defrag_by_algorithm_names_like_default(endpoint, open_s3):
    be = open_s3(endpoint)
    pack = os.urandom(7 * MiB)
    be.store("packs/meta/aa", pack)
    sources = [("packs/meta/aa", 0, 6 * MiB), ("packs/meta/aa", 6 * MiB + 10, 1000)]
    name = be.defrag(sources, algorithm="sha256", namespace="packs/meta")
    content = pack[: 6 * MiB] + pack[6 * MiB + 10 : 6 * MiB + 1010]
    assert name == "packs/meta/" + hashlib.sha256(content).hexdigest()
    assert BackendBase.defrag(be, sources, algorithm="sha256", namespace="packs/meta") == name
    assert be.load(name) == content


def _no_uploads_left(endpoint: str, bucket: str) -> bool:
    return s3_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_server_side_defrag_checks_every_range_against_its_source(endpoint, open_s3):
    """Runs >= 5 MiB are copied by the service, which does not check the ranges the same way everywhere
    (moto copies what exists, LocalStack answers InvalidArgument): ReadRangeError before anything is written."""
    be = open_s3(endpoint)
    source = "packs/data/01/0101"
    be.store(source, os.urandom(4 * MiB))
    target = "packs/data/ff/ff01"
    bad = [
        [(source, 0, 6 * MiB)],  # 4 of the 6 MiB exist
        [(source, 5 * MiB, 6 * MiB)],  # starts past the end
        [(source, 0, 4 * MiB), (source, 4 * MiB, 2 * MiB)],  # one run, its second half missing
        [(source, -5 * MiB, 5 * MiB)],  # starts before the start
    ]
    for sources in bad:
        with pytest.raises(ReadRangeError):
            be.defrag(sources, target=target)
        assert not be.info(target).exists
    assert _no_uploads_left(endpoint, be.bucket)


def test_server_side_defrag_of_a_missing_source(endpoint, open_s3):
    be = open_s3(endpoint)
    be.store("packs/data/01/0101", os.urandom(6 * MiB))
    sources = [("packs/data/01/0101", 0, 6 * MiB), ("packs/data/02/0202", 0, 6 * MiB)]
    with pytest.raises(ObjectNotFound):
        be.defrag(sources, target="packs/data/ff/ff02")
    assert not be.info("packs/data/ff/ff02").exists
    assert _no_uploads_left(endpoint, be.bucket)


def test_defrag_onto_an_existing_target_follows_the_write_policy(endpoint, open_s3, make_s3_url):
    """Like store(): create-only targets are never overwritten, compare-and-swap ones are replaced by the
    client that saw them last, and names outside the policy are overwritten."""
    url = make_s3_url(endpoint)
    be = open_s3(endpoint, url=url)
    pack = os.urandom(7 * MiB)
    be.store("packs/data/01/0101", pack)
    sources = [("packs/data/01/0101", 0, 6 * MiB), ("packs/data/01/0101", 6 * MiB + 100, 1000)]
    expected = pack[: 6 * MiB] + pack[6 * MiB + 100 : 6 * MiB + 1100]

    be.store("scratch/target", b"old")
    assert be.defrag(sources, target="scratch/target") == "scratch/target"
    assert be.load("scratch/target") == expected

    be.store("config/target", b"old")
    be.defrag(sources, target="config/target")  # this client wrote it: If-Match succeeds
    assert be.load("config/target") == expected
    be.store("config/target", b"newer")  # and it remembered the ETag of the copy
    assert be.load("config/target") == b"newer"

    be.store("packs/data/ee/ee01", b"other content")
    with pytest.raises(IntegrityError):
        be.defrag(sources, target="packs/data/ee/ee01")
    assert be.load("packs/data/ee/ee01") == b"other content"
    assert _no_uploads_left(endpoint, be.bucket)


@pytest.mark.localstack
def test_defrag_onto_a_changed_compare_and_swap_target_is_a_conflict(localstack_endpoint, open_s3, make_s3_url):
    """LocalStack only: moto ignores If-Match on CompleteMultipartUpload (it completes over a changed
    object), so it cannot show a lost compare-and-swap race of a server-side copy (docs/s3-backend.md)."""
    url = make_s3_url(localstack_endpoint)
    be = open_s3(localstack_endpoint, url=url)
    other = open_s3(localstack_endpoint, url=url, create=False)
    be.store("packs/data/01/0101", os.urandom(6 * MiB))
    other.store("config/other", b"v1")
    be.store("config/other", b"v1")  # be never saw it: If-None-Match meets the same content, converges
    other.store("config/other", b"v2")
    with pytest.raises(ConflictError):
        be.defrag([("packs/data/01/0101", 0, 6 * MiB)], target="config/other")  # be's view of it is stale
    assert be.load("config/other") == b"v2"
    assert _no_uploads_left(localstack_endpoint, be.bucket)


def test_409_on_a_server_side_copy_starts_it_again(endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(endpoint)
    proxy = fault_proxy(endpoint, fault_rate=0.0, kinds=["409"], methods=["POST"], path_contains="uploadId")
    be = open_s3(endpoint, url=url.replace(endpoint, proxy.endpoint))
    pack = os.urandom(6 * MiB)
    be.store("packs/data/01/0101", pack)
    proxy.fault_rate, proxy.max_faults = 1.0, 1
    be.reset_request_stats()
    be.defrag([("packs/data/01/0101", 0, 6 * MiB)], target="packs/data/ff/ff03")
    assert proxy.faults["409"] == 1
    assert be.request_stats()["COPY"] == 2  # the copy, and the copy of the upload started again
    assert be.load("packs/data/ff/ff03") == pack
    assert _no_uploads_left(endpoint, be.bucket)
