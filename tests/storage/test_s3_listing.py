"""Listing stays complete and sorted across pages, including pages made only of sub-directories."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.s3servers import s3_client


@pytest.fixture(params=["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def endpoint(request) -> str:
    return request.getfixturevalue(f"{request.param}_endpoint")


@pytest.mark.slow
@pytest.mark.parametrize("upstream", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def test_list_2500_objects_and_1200_subdirectories(upstream, request, open_s3):
    endpoint = request.getfixturevalue(f"{upstream}_endpoint")
    be = open_s3(endpoint)
    client = s3_client(endpoint)
    objects = [f"o{i:05d}" for i in range(2500)]
    subdirs = [f"d{i:05d}" for i in range(1200)]
    keys = [be._key(f"index/{n}") for n in objects] + [be._key(f"index/{d}/x") for d in subdirs]
    # written behind the backend's back (faster), with a little thread pool
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=be.bucket, Key=k, Body=b"v"), keys))
    be.reset_request_stats()
    listed = list(be.list("index"))
    names = [i.name for i in listed]
    assert names == sorted(objects + subdirs)
    assert len(set(names)) == len(names) == 3700
    assert {i.name for i in listed if i.directory} == set(subdirs)
    assert be.request_stats()["LIST"] == 4  # 1000 entries per page


@pytest.mark.slow
@pytest.mark.parametrize("upstream", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def test_pages_of_only_directories_advance(upstream, request, open_s3):
    """1001 sub-directories and no objects: the first page holds prefixes only."""
    endpoint = request.getfixturevalue(f"{upstream}_endpoint")
    be = open_s3(endpoint)
    client = s3_client(endpoint)
    dirs = [f"{i:04x}" for i in range(1001)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda d: client.put_object(Bucket=be.bucket, Key=be._key(f"packs/data/{d}/y"), Body=b""), dirs))
    names = [i.name for i in be.list("packs/data")]
    assert names == dirs


def _put(client, bucket: str, keys: list[str]) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=b"v"), keys))


def test_sorted_across_small_pages(endpoint, open_s3):
    """S3 orders 'b-1' and 'b.del' before the directory 'b/', but by name 'b' comes first: a page boundary
    between them must not leave them in S3's order.  Pages of 2 put boundaries everywhere."""
    be = open_s3(endpoint)
    client = s3_client(endpoint)
    names = ["a", "b-1", "b-2", "b.del", "b0", "c", "c-x.del"]
    dirs = ["b", "c", "c-x"]
    _put(client, be.bucket, [be._key(f"index/{n}") for n in names] + [be._key(f"index/{d}/y") for d in dirs])
    be.list_page_size = 2
    be.reset_request_stats()
    listed = [(i.name, i.directory) for i in be.list("index")]
    assert [n for n, _ in listed] == sorted(names + dirs)
    assert sorted(n for n, is_dir in listed if is_dir) == dirs
    assert be.request_stats()["LIST"] == 5  # 10 entries, 2 per page


@pytest.mark.slow
def test_sorted_across_a_1000_entry_page_boundary(endpoint, open_s3):
    """The same at S3's own page size: 'b-1' and 'b.del' end the first page, 'b/' starts the second."""
    be = open_s3(endpoint)
    client = s3_client(endpoint)
    filler = [f"a{i:04d}" for i in range(998)]
    _put(client, be.bucket, [be._key(f"index/{n}") for n in filler + ["b-1", "b.del", "c"]] + [be._key("index/b/x")])
    names = [i.name for i in be.list("index")]
    assert names[-4:] == ["b", "b-1", "b.del", "c"]
    assert names == sorted(filler + ["b", "b-1", "b.del", "c"])


def test_sorted_level_matches_a_full_sort_for_any_page_split():
    """The merge against a plain sort of the whole level, over random names made of the characters that
    cause inversions ('-', '.', and ones above '/'), split into pages at random."""
    import random

    from borgstore.backends._base import ItemInfo

    from packvault.storage.s3.listing import held_until, sorted_level

    assert held_until("b-1") == "b/" and held_until("ab.x-y") == "ab/" and held_until("abc") is None
    rng = random.Random(7)
    for _ in range(300):
        names = {"".join(rng.choice("ab-.0") for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(0, 30))}
        entries = [(n, False) for n in names if rng.random() < 0.6] + [(n, True) for n in names if rng.random() < 0.4]
        keyed = sorted(entries, key=lambda e: e[0] + "/" if e[1] else e[0])  # S3's order of the keys
        pages, start = [], 0
        while start < len(keyed):
            size = rng.randint(1, 4)
            chunk = keyed[start : start + size]
            infos = [ItemInfo(name=n, exists=True, size=0, directory=d) for n, d in chunk]
            pages.append((infos, max(n + "/" if d else n for n, d in chunk)))
            start += size
        merged = [(i.name, i.directory) for i in sorted_level(iter(pages))]
        assert [n for n, _ in merged] == sorted(n for n, _ in entries)
        assert sorted(merged) == sorted(entries)
