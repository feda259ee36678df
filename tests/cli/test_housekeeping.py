"""rename, tag and the --tag selection of list, prune and find (issue 19)."""

# ruff: noqa: F811

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from packvault.errors import ConflictError
from packvault.repository.catalogue import ArchiveCatalogue, ArchiveEntry
from packvault.repository.repository import Repository
from tests.support.cli import pv, pv_env, run_process  # noqa: F401  (fixtures)
from tests.support.settings import env_settings


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.slow)])
def url(request, tmp_path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    request.getfixturevalue("s3_env")
    return request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f.txt").write_bytes(b"hello")
    return root


def _archives(pv, url: str, *args: str) -> list[dict]:
    return json.loads(pv("list", "--json", url, *args).out)["archives"]


def _names(pv, url: str, *args: str) -> list[str]:
    return [a["name"] for a in _archives(pv, url, *args)]


def _open(url: str) -> Repository:
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock=None)
    return repo


def test_rename_keeps_the_archive_under_the_new_name_only(pv, url, src, tmp_path):
    pv("init", url)
    pv("create", f"{url}::old", src)
    before = _archives(pv, url)[0]
    out = json.loads(pv("rename", "--json", f"{url}::old", "new").out)
    assert (out["renamed"], out["name"], out["id"]) == ("old", "new", before["id"])
    after = _archives(pv, url)
    assert [a["name"] for a in after] == ["new"]
    assert after[0]["id"] == before["id"] and after[0]["time"] == before["time"]
    assert json.loads(pv("info", "--json", f"{url}::new").out)["archive"]["name"] == "new"
    pv("extract", f"{url}::new", "--target", tmp_path / "out")
    assert (tmp_path / "out" / str(src).lstrip("/") / "d" / "f.txt").read_bytes() == b"hello"
    assert pv("list", f"{url}::old", expect=2).err.count("\n") == 1
    assert "Renamed archive new to back" in pv("rename", f"{url}::new", "back").out
    assert _names(pv, url) == ["back"]


def test_rename_to_an_existing_name_is_refused_and_changes_nothing(pv, url, src):
    pv("init", url)
    pv("create", f"{url}::a", src)
    pv("create", f"{url}::b", src)
    before = _archives(pv, url)
    result = pv("rename", f"{url}::a", "b", expect=2)
    assert "already exists" in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert _archives(pv, url) == before
    assert "not found" in pv("rename", f"{url}::nope", "c", expect=2).err
    assert "invalid archive name" in pv("rename", f"{url}::a", "x/y", expect=2).err
    assert _archives(pv, url) == before


def test_the_old_name_is_free_again_after_a_rename(pv, url, src):
    pv("init", url)
    pv("create", f"{url}::daily", src)
    pv("rename", f"{url}::daily", "kept")
    pv("create", f"{url}::daily", src)  # the old name's claim belongs to an archive that has another name now
    assert sorted(_names(pv, url)) == ["daily", "kept"]
    pv("delete", f"{url}::daily")
    pv("rename", f"{url}::kept", "daily")  # back to a name this archive once had, now free again
    assert _names(pv, url) == ["daily"]


def test_a_rename_cut_off_between_its_writes_leaves_both_names(pv, url, src, monkeypatch):
    pv("init", url)
    pv("create", f"{url}::old", src)

    def crash(self, key):
        raise KeyboardInterrupt

    repo = _open(url)
    try:
        entry = repo.find_archive("old")
        with monkeypatch.context() as m:
            m.setattr(ArchiveCatalogue, "soft_delete_entry", crash)
            with pytest.raises(KeyboardInterrupt):
                repo.replace_archive_entry(entry, entry.renamed("new"))
    finally:
        repo.close()
    both = _archives(pv, url)
    assert sorted(a["name"] for a in both) == ["new", "old"] and len({a["id"] for a in both}) == 1
    pv("delete", f"{url}::old")  # exactly that entry, not the other entry of the same archive
    assert _names(pv, url) == ["new"]
    assert _names(pv, url, "--deleted") == ["old"]


def test_two_entries_of_one_archive_are_deleted_and_undeleted_one_by_one(pv, url, src):
    """Delete and undelete address an entry, not an archive id that several entries may share."""
    pv("init", url)
    pv("create", f"{url}::a", src)
    repo = _open(url)
    try:
        entry = repo.find_archive("a")
        for name in ("b", "c", "d"):
            repo.put_archive_entry(dataclasses.replace(entry, name=name))
    finally:
        repo.close()
    for name in ("a", "b", "c"):
        pv("delete", f"{url}::{name}")
        assert name not in _names(pv, url)
    assert _names(pv, url) == ["d"]
    pv("undelete", f"{url}::b")
    assert sorted(_names(pv, url)) == ["b", "d"]


def test_compact_after_a_rename_keeps_the_archive_and_writes_no_tombstone_for_it(pv, url, src, tmp_path):
    pv("init", url)
    pv("create", f"{url}::old", src)
    pv("rename", f"{url}::old", "new")
    pv("compact", url, "--min-age", "0")
    assert _names(pv, url) == ["new"]
    rc = pv("check", url, expect=None)
    assert rc.rc == 0, rc.out + rc.err
    pv("extract", f"{url}::new", "--target", tmp_path / "out")
    repo = _open(url)
    try:
        assert repo.find_archive("new").id not in repo.tombstones()
    finally:
        repo.close()


def test_entries_without_tags_decode_as_untagged():
    entry = ArchiveEntry(id=b"\1" * 32, name="a", time="t", end="e", host="h", user="u", stats={})
    assert b"tags" not in entry.encode()  # entries stay as they were for archives that have none
    assert ArchiveEntry.decode(entry.encode()).tags == ()
    tagged = entry.retagged({"weekly", "daily"})
    assert ArchiveEntry.decode(tagged.encode()) == tagged and tagged.tags == ("daily", "weekly")


def test_tag_add_remove_set_and_show(pv, url, src):
    pv("init", url)
    pv("create", f"{url}::a", src)
    out = json.loads(pv("tag", "--json", f"{url}::a", "--add", "daily", "--add", "db").out)
    assert (out["tags"], out["changed"]) == (["daily", "db"], True)
    assert _archives(pv, url)[0]["tags"] == ["daily", "db"]
    assert "Tags" in pv("list", url).out and "daily,db" in pv("list", url).out
    assert json.loads(pv("info", "--json", f"{url}::a").out)["archive"]["tags"] == ["daily", "db"]
    assert "daily" in pv("tag", f"{url}::a", "--remove", "db").out
    assert _archives(pv, url)[0]["tags"] == ["daily"]
    out = json.loads(pv("tag", "--json", f"{url}::a", "--add", "daily").out)
    assert out["changed"] is False
    pv("tag", f"{url}::a", "--set", "weekly", "--set", "x")
    assert _archives(pv, url)[0]["tags"] == ["weekly", "x"]
    assert "(none)" in pv("tag", f"{url}::a", "--set").out
    assert _archives(pv, url)[0]["tags"] == []
    assert len(_archives(pv, url)) == 1  # each change replaced the entry, never added one
    assert "--set" in pv("tag", f"{url}::a", "--set", "a", "--add", "b", expect=2).err
    assert "invalid tag" in pv("tag", f"{url}::a", "--add", "a b", expect=2).err
    assert _archives(pv, url)[0]["tags"] == []


def test_list_and_find_select_by_tag(pv, url, src):
    pv("init", url)
    for name in ("a", "b", "c"):
        pv("create", f"{url}::{name}", src)
    pv("tag", f"{url}::a", "--add", "daily")
    pv("tag", f"{url}::b", "--add", "daily", "--add", "db")
    assert _names(pv, url, "--tag", "daily") == ["a", "b"]
    assert _names(pv, url, "--tag", "daily", "--tag", "db") == ["b"]
    assert _names(pv, url, "--tag", "none") == []
    lines = pv("find", url, "f.txt", "--tag", "db", "--json-lines").out.splitlines()
    assert [json.loads(line)["archive"] for line in lines] == ["b"]
    result = pv("find", url, "f.txt", "--tag", "none", expect=2)
    assert "tag 'none'" in result.err


def test_prune_with_a_tag_keeps_the_series_apart(pv, url, src):
    pv("init", url)
    for name in ("d1", "d2", "d3", "w1", "w2"):
        pv("create", f"{url}::{name}", src)
    for name in ("d1", "d2", "d3"):
        pv("tag", f"{url}::{name}", "--add", "daily")
    for name in ("w1", "w2"):
        pv("tag", f"{url}::{name}", "--add", "weekly")
    out = json.loads(pv("prune", "--json", url, "--tag", "daily", "--keep-last", "1", "--group-by", "").out)
    assert sorted(out_names(out)) == ["d1", "d2", "d3"]  # only the tagged series was considered
    assert sorted(_names(pv, url)) == ["d3", "w1", "w2"]
    pv("prune", url, "--tag", "weekly", "--keep-last", "1", "--group-by", "")
    assert sorted(_names(pv, url)) == ["d3", "w2"]


def out_names(prune_json: dict) -> list[str]:
    return [d["name"] for d in prune_json["decisions"]]


def test_a_rename_cannot_take_a_name_that_a_backup_is_committing(pv, url, src):
    pv("init", url)
    pv("create", f"{url}::old", src)
    backup = Repository(url, settings=env_settings())
    backup.open(lambda: os.environ["PACKVAULT_PASSPHRASE"])  # holds its lock, like a running create
    try:
        backup.claim_archive_name("new", b"\2" * 32)  # claimed; its entry is not written yet
        result = pv("rename", f"{url}::old", "new", expect=2)
        assert "another backup is committing an archive named 'new'" in result.err
        assert _names(pv, url) == ["old"]
    finally:
        backup.close()


def test_two_changes_of_one_archive_at_the_same_moment_keep_both_and_say_so(pv, url, src, monkeypatch):
    pv("init", url)
    pv("create", f"{url}::a", src)
    repo = _open(url)
    try:
        entry = repo.find_archive("a")
        put = ArchiveCatalogue.put_archive_entry

        def put_while_another_tags(self, new):
            monkeypatch.setattr(ArchiveCatalogue, "put_archive_entry", put)  # once
            pv("tag", f"{url}::a", "--add", "other")  # the other command replaces the same old entry first
            return put(self, new)

        monkeypatch.setattr(ArchiveCatalogue, "put_archive_entry", put_while_another_tags)
        with pytest.raises(ConflictError, match="at the same moment"):
            repo.replace_archive_entry(entry, entry.retagged({"mine"}))
    finally:
        repo.close()
    tags = sorted(tuple(a["tags"]) for a in _archives(pv, url))
    assert tags == [("mine",), ("other",)]


def test_tag_without_an_option_shows_the_tags_and_help_lists_the_commands(pv, pv_env, url, src):
    pv("init", url)
    pv("create", f"{url}::a", src)
    pv("tag", f"{url}::a", "--add", "x")
    assert "Tags of archive a: x (unchanged)" in pv("tag", f"{url}::a").out
    assert len(_archives(pv, url)) == 1
    overview = run_process("--help", env=pv_env).stdout
    assert "rename" in overview and "tag" in overview
    for command in ("list", "prune", "find"):
        assert "--tag TAG" in run_process(command, "--help", env=pv_env).stdout
