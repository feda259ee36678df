"""compact over cold data packs (issue 18): dead ones dropped only after the class's minimum storage
duration, partly dead ones never copied forward (moto refuses reads and copies of DEEP_ARCHIVE objects)."""

from __future__ import annotations

import json
import random

import pytest

from tests.cold.helpers import objects_of

KiB = 1024


def _data_packs(url: str) -> set[str]:
    return {key for key in objects_of(url) if "/packs/data/" in key}


@pytest.fixture
def pruned_cold_repo(pv, tmp_path, any_backend_url):
    url = any_backend_url + "&storage_class=DEEP_ARCHIVE"
    rnd = random.Random(3)
    both, kept = tmp_path / "both", tmp_path / "kept"
    both.mkdir()
    kept.mkdir()
    shared = rnd.randbytes(300 * KiB)
    (both / "shared.bin").write_bytes(shared)
    (kept / "shared.bin").write_bytes(shared)
    for i in range(4):
        (both / f"gone{i}.bin").write_bytes(rnd.randbytes(300 * KiB))
    pv("init", url, "--pack-size", "256K")
    pv("create", f"{url}::gone", both)
    pv("create", f"{url}::kept", kept)
    pv("delete", f"{url}::gone")
    return url


@pytest.mark.parametrize(
    "any_backend_url", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)], indirect=True
)
def test_compact_keeps_cold_packs_for_their_minimum_storage_duration(pv, pruned_cold_repo):
    before = _data_packs(pruned_cold_repo)
    report = json.loads(pv("compact", "--json", "--min-age", "0", pruned_cold_repo).out)["compact"]
    assert report["packs_too_young"] == len(before) >= 2  # every data pack: younger than DEEP_ARCHIVE's 180 days
    assert _data_packs(pruned_cold_repo) == before


@pytest.mark.parametrize(
    "any_backend_url", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)], indirect=True
)
def test_compact_drops_dead_cold_packs_and_never_copies_them(pv, pruned_cold_repo):
    url = pruned_cold_repo
    before = _data_packs(url)
    result = pv("compact", "--json", "--min-age", "0", "--cold-min-age", "0", "--threshold", "0", url)
    report = json.loads(result.out)["compact"]
    after = _data_packs(url)
    assert after < before  # fully dead ones dropped, and no data pack written: nothing copied forward
    assert report["packs_cold_kept"] >= 1
    check = json.loads(pv("check", "--json", url).out)
    assert not check["problems"]
