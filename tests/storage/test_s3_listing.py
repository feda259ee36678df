"""Listing stays complete and sorted across pages, including pages made only of sub-directories."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.s3servers import s3_client


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
