"""compact over cold data packs (issue 18): dead ones dropped only after the class's minimum storage
duration, partly dead ones never copied forward (moto refuses reads and copies of DEEP_ARCHIVE objects)."""

from __future__ import annotations

import json
import random

import pytest

from tests.cold.helpers import finish, objects_of, start

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


@pytest.fixture
def half_dead_cold_repo(pv, tmp_path, any_backend_url):
    """DEEP_ARCHIVE data packs that are each about half dead: small files, every other one deleted."""
    url = any_backend_url + "&storage_class=DEEP_ARCHIVE"
    rnd = random.Random(5)
    both, kept = tmp_path / "both", tmp_path / "kept"
    both.mkdir()
    kept.mkdir()
    for i in range(24):
        data = rnd.randbytes(30 * KiB)
        (both / f"f{i:02d}.bin").write_bytes(data)
        if i % 2:
            (kept / f"f{i:02d}.bin").write_bytes(data)
    pv("init", url, "--pack-size", "256K")
    pv("create", f"{url}::gone", both)
    pv("create", f"{url}::kept", kept)
    pv("delete", f"{url}::gone")
    return url


@pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)
def test_compact_restore_tier_restores_partly_dead_cold_packs_and_copies_them(
    pv, half_dead_cold_repo, manual_restores, tmp_path
):
    url = half_dead_cold_repo
    args = ["compact", "--json", "--min-age", "0", "--cold-min-age", "0", url]
    plain = json.loads(pv(*args).out)["compact"]  # without a restore option: nothing restored or copied
    assert plain["packs_cold_kept"] >= 2 and plain["packs_restored"] == plain["packs_rewritten"] == 0
    assert not any(v["restore"] for v in objects_of(url).values())
    kept = _data_packs(url)
    first = pv(*args, "--restore-tier", "bulk", "--restore-days", "1", expect=3)
    assert "restore requested for" in first.err and "rerun compact" in first.err
    assert len(first.err.strip().splitlines()) == 1 and "Traceback" not in first.err
    report = json.loads(first.out)["compact"]
    assert report["packs_restore_pending"] == plain["packs_cold_kept"] and report["packs_restored"] == 0
    restoring = sorted(k for k, v in objects_of(url).items() if v["restore"])
    assert len(restoring) == report["packs_restore_pending"]
    start(url, restoring)
    assert _data_packs(url) == kept  # nothing copied while the restores run
    finish(url, restoring)
    second = json.loads(pv(*args, "--restore-tier", "bulk").out)["compact"]
    assert second["packs_restored"] == second["packs_rewritten"] == report["packs_restore_pending"]
    assert second["packs_restore_pending"] == 0 and second["bytes_copied"] > 0
    after = _data_packs(url)
    assert not set(restoring) & after  # the restored packs are gone, their live data copied forward
    new = after - kept
    assert new and {objects_of(url)[k]["class"] for k in new} == {"DEEP_ARCHIVE"}
    assert not json.loads(pv("check", "--json", url).out)["problems"]
    out = tmp_path / "out"
    pv("extract", f"{url}::kept", "--target", out, "--wait", "--poll-interval", "0.01")
    restored = {p.name: p.read_bytes() for p in out.rglob("*.bin")}
    assert restored == {p.name: p.read_bytes() for p in (tmp_path / "kept").iterdir()}


@pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)
def test_compact_with_a_restore_already_done_copies_in_one_run(pv, half_dead_cold_repo, tmp_path):
    url = half_dead_cold_repo  # moto finishes a restore at once unless told otherwise
    args = ["compact", "--json", "--min-age", "0", "--cold-min-age", "0", url]
    report = json.loads(pv(*args, "--restore-tier", "standard", "--wait", "--poll-interval", "0.01").out)["compact"]
    assert report["packs_restored"] >= 2 and report["packs_restore_pending"] == report["packs_cold_kept"] == 0
    assert not json.loads(pv("check", "--json", url).out)["problems"]
    again = json.loads(pv(*args).out)["compact"]  # the new packs hold live data only: nothing left to do
    assert again["packs_cold_kept"] >= 1 and again["bytes_freed"] == 0
