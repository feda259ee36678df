"""Cold data packs on real S3 servers (issue 18): metadata stays hot, extract restores what it needs.

moto refuses a GET of a DEEP_ARCHIVE object (``InvalidObjectState``) until RestoreObject, and by default
finishes a restore at once: the first extract only asks for the restores (exit 3), the next one reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cold.helpers import cold_backends, objects_of, source_tree
from tests.support.cli import tree_snapshot


@cold_backends
def test_only_data_packs_are_cold(cold_repo):
    url, _ = cold_repo
    objects = objects_of(url)
    data = {k: v for k, v in objects.items() if "/packs/data/" in k}
    assert len(data) >= 2
    assert {v["class"] for v in data.values()} == {"DEEP_ARCHIVE"}
    assert {v["class"] for k, v in objects.items() if k not in data} == {"STANDARD"}


@cold_backends
def test_extract_requests_restores_exits_3_and_resumes(pv, cold_repo, tmp_path):
    url, src = cold_repo
    out = tmp_path / "out"
    first = pv("extract", f"{url}::a", "--target", out, "--restore-tier", "bulk", "--restore-days", "2", expect=3)
    assert "restore requested for" in first.err and "rerun" in first.err
    assert "Traceback" not in first.err and len(first.err.strip().splitlines()) == 1
    objects = objects_of(url)
    data = [v for k, v in objects.items() if "/packs/data/" in k]
    assert all(v["restore"] for v in data)  # every pack of the archive (both archives share them all)
    assert not any(v["restore"] for k, v in objects.items() if "/packs/data/" not in k)
    pv("extract", f"{url}::a", "--target", out)
    assert tree_snapshot(out / str(src).lstrip("/")) == tree_snapshot(src)


@pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)
def test_extract_of_a_path_restores_only_its_packs(pv, cold_repo, tmp_path):
    url, src = cold_repo
    pv("extract", f"{url}::a", str(src / "note.txt").lstrip("/"), "--target", tmp_path / "out", expect=3)
    objects = objects_of(url)
    data = [v for k, v in objects.items() if "/packs/data/" in k]
    assert len(data) >= 2
    assert len([v for v in data if v["restore"]]) == 1


@pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)
def test_extract_wait_finishes_in_one_run(pv, cold_repo, tmp_path):
    url, src = cold_repo
    pv("extract", f"{url}::a", "--target", tmp_path / "out", "--wait", "--poll-interval", "0.1")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)


@pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)
def test_verify_data_refuses_cold_packs_in_one_line(pv, cold_repo):
    url, _ = cold_repo
    result = pv("check", "--verify-data", url, expect=2)
    assert "cold" in result.err and "--restore-tier" in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not any(v["restore"] for v in objects_of(url).values())  # refused before asking for anything


@pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)
def test_verify_data_with_a_restore_tier_restores_then_verifies(pv, cold_repo):
    url, _ = cold_repo
    first = pv("check", "--verify-data", "--restore-tier", "bulk", url, expect=3)
    assert "restore requested for" in first.err
    assert all(v["restore"] for k, v in objects_of(url).items() if "/packs/data/" in k)
    report = json.loads(pv("check", "--json", "--verify-data", "--restore-tier", "bulk", url).out)
    assert report["stats"]["data_packs_read"] == report["stats"]["packs_data"] >= 2
    assert not report["problems"]


@pytest.mark.parametrize("any_backend_url", ["file"], indirect=True)
def test_local_repository_extract_is_unchanged(pv, tmp_path, any_backend_url):
    src = source_tree(tmp_path / "src")
    pv("init", any_backend_url)
    pv("create", f"{any_backend_url}::a", src)
    pv("extract", f"{any_backend_url}::a", "--target", tmp_path / "out", "--restore-tier", "bulk")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)


@pytest.fixture
def slow_restores(moto_endpoint):
    """moto's restores finish only after a few looks at the object, not at once.

    moto counts every read of a key (HEAD, GET, RestoreObject) and moves the restore one step (none ->
    in progress -> done) per ``times`` reads: 5 keeps it in progress through the first two extracts and
    done within a few polls of the third."""
    import requests

    api = f"{moto_endpoint}/moto-api/state-manager"
    requests.post(
        f"{api}/set-transition",
        json={"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": 5}},
        timeout=10,
    ).raise_for_status()
    try:
        yield
    finally:
        requests.post(f"{api}/unset-transition", json={"model_name": "s3::keyrestore"}, timeout=10)


@pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)
def test_rerun_while_restoring_asks_nothing_again_then_wait_finishes(pv, pv_env, cold_repo, tmp_path, slow_restores):
    url, src = cold_repo
    out = tmp_path / "out"
    pv("extract", f"{url}::a", "--target", out, expect=3)
    records = list(Path(pv_env["PACKVAULT_CACHE_DIR"]).glob("*/cold-restores.json"))
    assert len(records) == 1
    first = json.loads(records[0].read_text())
    assert first and all(v["tier"] == "standard" for v in first.values())
    assert all('ongoing-request="true"' in v["restore"] for k, v in objects_of(url).items() if "/packs/data/" in k)
    again = pv("extract", f"{url}::a", "--target", out, expect=3)  # still restoring: no new RestoreObject
    assert "restore requested for" in again.err
    assert json.loads(records[0].read_text()) == first
    waited = pv("extract", f"{url}::a", "--target", out, "--wait", "--poll-interval", "0.05")
    assert "waiting for the restores of" in waited.err
    assert tree_snapshot(out / str(src).lstrip("/")) == tree_snapshot(src)
    assert json.loads(records[0].read_text()) == {}
