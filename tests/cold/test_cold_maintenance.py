"""Cold data packs (issue 18): list, diff, info, check and prune never read a cold object."""

from __future__ import annotations

import json

from tests.cold.helpers import cold_backends, objects_of


@cold_backends
def test_maintenance_commands_never_read_cold_objects(pv, cold_repo, tmp_path):
    url, _ = cold_repo
    listed = json.loads(pv("list", "--json", url).out)
    assert len(listed["archives"]) == 2
    pv("list", f"{url}::a")
    pv("diff", f"{url}::a", "b")
    pv("info", url)
    pv("check", url)
    pv("check", "--archives-only", url)
    pv("prune", url, "--keep-last", "1")
    objects = objects_of(url)
    assert not any(v["restore"] for v in objects.values())  # nothing asked for a restore either


@cold_backends
def test_info_shows_bytes_per_storage_class(pv, cold_repo):
    url, _ = cold_repo
    classes = json.loads(pv("info", "--json", url).out)["repository"]["storage_classes"]
    assert set(classes) == {"DEEP_ARCHIVE", "STANDARD"}
    assert classes["DEEP_ARCHIVE"] > 0 and classes["STANDARD"] > 0
    assert "DEEP_ARCHIVE" in pv("info", url).out


@cold_backends
def test_check_lists_cold_packs_and_says_so(pv, cold_repo):
    url, _ = cold_repo
    report = json.loads(pv("check", "--json", url).out)
    print(report)
    assert report["stats"]["data_packs_read"] == 0
    assert report["stats"]["packs_data"] >= 2
    assert any("cold storage class" in note for note in report["notes"])
