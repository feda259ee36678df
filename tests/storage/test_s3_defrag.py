"""Server-side copy-forward: the same bytes as borgstore's default defrag, far fewer bytes downloaded."""

from __future__ import annotations

import hashlib
import os

import pytest
from borgstore.backends._base import BackendBase

from packvault.storage.s3_plan import MIN_PART, CopyPart, DataPart, plan_copy_parts

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

    # repeating the server-side defrag converges (create-only target exists with the same bytes)
    be.defrag(sources, target="packs/data/ff/ff00")


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
