"""Defaults that used to surprise: prune's grouping, compact's safety margin (issue 15)."""

from __future__ import annotations

import dataclasses
import json
import re

import msgpack
import pytest

from packvault.repository.repository import ArchiveEntry, Repository
from tests.support.settings import env_settings


@pytest.fixture
def four_archives(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    repo = tmp_path / "repo"
    pv("init", repo)
    for n in range(1, 5):
        (src / "f.txt").write_text(f"version {n}")
        pv("create", f"{repo}::a{n}", src)
    return repo, src


def _names(pv, repo) -> list[str]:
    return [a["name"] for a in json.loads(pv("list", repo, "--json").out)["archives"]]


def test_keep_last_over_names_without_dates(pv, four_archives) -> None:
    repo, _ = four_archives
    out = pv("prune", repo, "--keep-last", "2", "--list").out
    assert _names(pv, repo) == ["a3", "a4"]
    assert "Pruned 2 of 4 archives in 1 group(s) by host, paths" in out
    # --list names the grouping and shows each archive's group
    header = out.splitlines()[0]
    assert "Group (host, paths)" in header
    rows = [line for line in out.splitlines()[1:] if re.match(r"(keep|pruned) ", line)]
    assert len(rows) == 4 and all('["' in row and "src" in row for row in rows)


def test_group_by_prefix_and_json_show_the_groups(pv, four_archives, tmp_path) -> None:
    repo, src = four_archives
    report = json.loads(pv("prune", repo, "--keep-last", "1", "--group-by", "prefix", "--dry-run", "--json").out)
    assert report["group_by"] == ["prefix"]
    assert sorted(d["group"][0] for d in report["decisions"]) == ["a1", "a2", "a3", "a4"]
    assert all(d["keep"] for d in report["decisions"])
    report = json.loads(pv("prune", repo, "--keep-last", "1", "--dry-run", "--json").out)
    assert {tuple(d["group"]) for d in report["decisions"]} == {
        (report["decisions"][0]["host"], json.dumps([str(src)]))
    }
    assert [d["paths"] for d in report["decisions"]] == [[str(src)]] * 4


def test_entries_written_before_paths_were_recorded_still_group_by_paths(pv, four_archives, tmp_path) -> None:
    repo, src = four_archives
    # rewrite every entry as older versions wrote them: without "paths"
    with Repository(str(repo), settings=env_settings()) as r:
        r.open(lambda: "correct horse battery staple", lock="exclusive")
        for entry in r.archive_entries():
            r.soft_delete_archive(entry)
            r.put_archive_entry(dataclasses.replace(entry, paths=None))
        r.purge_deleted_archives()
    assert all(a["paths"] is None for a in json.loads(pv("list", repo, "--json").out)["archives"])
    pv("prune", repo, "--keep-last", "2")
    assert _names(pv, repo) == ["a3", "a4"]


def test_old_entry_records_decode() -> None:
    old = msgpack.packb(
        {"id": b"\1" * 32, "name": "x", "time": "t", "end": "e", "host": "h", "user": "u", "comment": "", "stats": {}}
    )
    entry = ArchiveEntry.decode(old)
    assert entry.paths is None
    assert ArchiveEntry.decode(entry.encode()) == entry
    assert "paths" not in msgpack.unpackb(entry.encode())  # re-encoded as it was, not with an invented value
    new = dataclasses.replace(entry, paths=("/a", "b"))
    assert ArchiveEntry.decode(new.encode()).paths == ("/a", "b")


def test_compact_right_after_prune_says_why_it_freed_little(pv, four_archives) -> None:
    repo, _ = four_archives
    pv("prune", repo, "--keep-last", "1")
    out = pv("compact", repo).out
    match = re.search(r"(\d+) pack\(s\) younger than --min-age 2h were left alone", out)
    assert match and int(match.group(1)) > 0, out
    assert "--min-age 0" in out
    # with the margin lowered nothing is too young, and the note is gone
    out = pv("compact", repo, "--min-age", "0").out
    assert "0 too young" in out and "left alone" not in out
