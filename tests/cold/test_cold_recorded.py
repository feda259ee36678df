"""The storage classes are the repository's, not the client's URL's (issue 18): ``init`` records the data
packs' class and the hot class in the config, and every client that opens the repository writes and reads
by them, whatever its location says.
"""

from __future__ import annotations

import json

import pytest

from packvault.repository.config import RepoConfig
from tests.cold.helpers import cold_backends, objects_of, source_tree
from tests.support.cli import tree_snapshot

moto_only = pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)


@pytest.fixture
def deep_archive_repo(pv, tmp_path, any_backend_url):
    """A repository initialised with data packs in DEEP_ARCHIVE, written to through a URL without the class:
    (init's URL, the plain URL, the source tree)."""
    init_url = any_backend_url + "&storage_class=DEEP_ARCHIVE"
    src = source_tree(tmp_path / "src")
    pv("init", init_url, "--pack-size", "256K")
    pv("create", f"{any_backend_url}::a", src)
    return init_url, any_backend_url, src


@cold_backends
def test_a_client_without_storage_class_writes_cold_data_packs(deep_archive_repo):
    _, url, _ = deep_archive_repo
    objects = objects_of(url)
    data = {k: v for k, v in objects.items() if "/packs/data/" in k}
    assert len(data) >= 2
    assert {v["class"] for v in data.values()} == {"DEEP_ARCHIVE"}
    assert {v["class"] for k, v in objects.items() if k not in data} == {"STANDARD"}


@cold_backends
def test_extract_through_a_url_without_storage_class_restores(pv, deep_archive_repo, tmp_path):
    _, url, src = deep_archive_repo
    out = tmp_path / "out"
    first = pv("extract", f"{url}::a", "--target", out, expect=3)
    assert "restore requested for" in first.err and "Traceback" not in first.err
    assert all(v["restore"] for k, v in objects_of(url).items() if "/packs/data/" in k)
    pv("extract", f"{url}::a", "--target", out)  # moto finishes restores at once
    assert tree_snapshot(out / str(src).lstrip("/")) == tree_snapshot(src)


@moto_only
def test_info_shows_the_recorded_classes(pv, deep_archive_repo):
    _, url, _ = deep_archive_repo
    info = json.loads(pv("info", "--json", url).out)["repository"]
    assert info["recorded_classes"] == {"data": "DEEP_ARCHIVE", "hot": "STANDARD"}
    assert info["storage_classes"]["DEEP_ARCHIVE"] > 0
    assert "data packs DEEP_ARCHIVE, the rest STANDARD (recorded at init)" in pv("info", url).out


@moto_only
def test_check_through_a_url_without_storage_class_knows_data_is_cold(pv, deep_archive_repo):
    _, url, _ = deep_archive_repo
    pv("check", url)  # repository and archive levels read only hot objects
    refused = pv("check", "--verify-data", url, expect=2)
    assert "cold" in refused.err and "--restore-tier" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    assert not any(v["restore"] for v in objects_of(url).values())


@moto_only
def test_a_url_class_that_disagrees_with_the_record_is_refused(pv, deep_archive_repo, tmp_path):
    _, url, src = deep_archive_repo
    before = objects_of(url)
    result = pv("create", f"{url}&storage_class=STANDARD_IA::b", src, expect=2)
    assert "storage_class=STANDARD_IA disagrees with the repository's DEEP_ARCHIVE" in result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert objects_of(url).keys() == before.keys()
    pv("create", f"{url}&storage_class=deep_archive::c", src)  # the same class, named, is fine


@cold_backends
def test_hot_storage_class_applies_to_everything_but_data_packs_and_locks(pv, tmp_path, any_backend_url):
    src = source_tree(tmp_path / "src")
    init = pv("init", "--json", any_backend_url + "&hot_storage_class=standard_ia&storage_class=GLACIER_IR")
    recorded = json.loads(init.out)["repository"]
    assert (recorded["data_storage_class"], recorded["hot_storage_class"]) == ("GLACIER_IR", "STANDARD_IA")
    pv("create", f"{any_backend_url}::a", src)  # a later client, without either option
    pv("delete", f"{any_backend_url}::a")  # a soft-deleted archive entry (a server-side copy) too
    pv("create", f"{any_backend_url}::b", src)
    objects = objects_of(any_backend_url)
    data = {k: v["class"] for k, v in objects.items() if "/packs/data/" in k}
    hot = {k: v["class"] for k, v in objects.items() if k not in data}
    assert data and set(data.values()) == {"GLACIER_IR"}
    for prefix in ("config/", "keys/", "archives/", "index/", "packs/meta/"):
        assert any(f"/{prefix}" in k for k in hot), prefix
    assert any(k.endswith(".del") for k in hot)
    assert set(hot.values()) == {"STANDARD_IA"}
    assert not any("/locks/" in k for k in objects)  # released: nothing left to look at here


@pytest.mark.parametrize("value", ["GLACIER", "deep_archive"])
def test_a_hot_class_that_needs_a_restore_is_refused(pv, moto_endpoint, make_s3_url, value):
    url = make_s3_url(moto_endpoint) + f"&hot_storage_class={value}"
    result = pv("init", url, expect=2)
    assert "hot_storage_class" in result.err and "restore" in result.err and "Traceback" not in result.err


def test_a_record_without_classes_encodes_as_before_and_decodes_as_unrecorded():
    plain = RepoConfig(repository_id=b"\0" * 32, encryption="repokey", created="2026-01-01T00:00:00+00:00")
    assert b"storage_class" not in plain.encode()
    decoded = RepoConfig.decode(plain.encode())
    assert decoded.data_storage_class is None and decoded.hot_storage_class is None
    cold = RepoConfig(
        repository_id=b"\0" * 32, encryption="repokey", data_storage_class="DEEP_ARCHIVE", hot_storage_class="STANDARD"
    )
    assert RepoConfig.decode(cold.encode()) == cold


@moto_only
def test_a_repository_without_recorded_classes_follows_the_url(pv, pv_env, tmp_path, any_backend_url):
    """A config written before the classes were recorded: the location's storage_class decides, as before."""
    from dataclasses import replace

    from packvault.repository.repository import Repository
    from packvault.settings import Settings

    cold_url = any_backend_url + "&storage_class=DEEP_ARCHIVE"
    src = source_tree(tmp_path / "src")
    pv("init", cold_url, "--pack-size", "256K")
    pv("create", f"{cold_url}::a", src)
    repo = Repository(any_backend_url, settings=Settings.from_environ(pv_env))
    repo.open(lambda: pv_env["PACKVAULT_PASSPHRASE"], lock=None)
    try:
        old = replace(repo.config, data_storage_class=None, hot_storage_class=None)
        repo.write_config(old, repo.key)
    finally:
        repo.close()
    # the URL says nothing: no restore is planned, and each cold GET is refused (files not restored, exit 1)
    refused = pv("extract", f"{any_backend_url}::a", "--target", tmp_path / "plain", expect=1)
    assert "cold storage class and not restored" in refused.err and "Traceback" not in refused.err
    pv("extract", f"{cold_url}::a", "--target", tmp_path / "out", expect=3)  # the URL says cold: restores
    pv("extract", f"{cold_url}::a", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)
    pv("create", f"{any_backend_url}&storage_class=STANDARD_IA::b", src)  # nothing recorded: nothing refused


@moto_only
def test_init_options_record_the_classes_and_a_disagreeing_hot_class_is_refused(pv, tmp_path, any_backend_url):
    src = source_tree(tmp_path / "src")
    init = pv(
        "init", "--json", any_backend_url, "--s3-storage-class", "glacier", "--s3-hot-storage-class", "GLACIER_IR"
    )
    recorded = json.loads(init.out)["repository"]
    assert (recorded["data_storage_class"], recorded["hot_storage_class"]) == ("GLACIER", "GLACIER_IR")
    refused = pv("create", f"{any_backend_url}::a", src, "--s3-hot-storage-class", "STANDARD", expect=2)
    assert "hot_storage_class=STANDARD disagrees with the repository's GLACIER_IR" in refused.err
    pv("create", f"{any_backend_url}::a", src)
    classes = {v["class"] for k, v in objects_of(any_backend_url).items() if "/archives/" in k}
    assert classes == {"GLACIER_IR"}
