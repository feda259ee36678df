"""find across archives, and the one pattern grammar on the reading side (issue 19)."""

# ruff: noqa: F811

from __future__ import annotations

import json

import pytest

from packvault.archive.patterns import ArchivePatterns, ExcludeMatcher
from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.slow)])
def url(request, tmp_path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    request.getfixturevalue("s3_env")
    return request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("*.tmp", "/a/b/c.tmp", True),
        ("*.tmp", "/a/b/c.tmpx", False),
        ("/home/*/.cache", "/home/me/.cache", True),
        ("/home/*/.cache", "/srv/home/me/.cache", False),
        ("node_modules", "/x/node_modules", True),
        ("node_modules", "/x/node_modules/y/z.js", False),  # the path alone; items below: item_matches
        ("home/me/docs", "/home/me/docs/a.txt", True),
        ("home/me/docs", "/home/me/docsx", False),
        ("home/me/docs/", "/home/me/docs", True),
    ],
)
def test_one_grammar_on_archive_paths(pattern, path, hit):
    assert ArchivePatterns([pattern]).matches(path) is hit


def test_items_below_a_matching_directory_match_too():
    patterns = ArchivePatterns(["node_modules", "/srv/*/tmp"])
    assert patterns.item_matches({"p": b"x/node_modules/y/z.js"})
    assert patterns.item_matches({"p": b"srv/a/tmp/f"})
    assert not patterns.item_matches({"p": b"srv/a/tmpx/f"})


def test_create_side_takes_relative_paths_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    matcher = ExcludeMatcher(["sub/dir"])
    assert matcher.excluded(str(tmp_path / "sub" / "dir" / "f").encode())
    assert not matcher.excluded(b"/sub/dir/f")


def test_find_lists_every_archive_holding_a_match(pv, url, tmp_path):
    pv("init", url)
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    (src / "docs" / "report.odt").write_bytes(b"v1")
    (src / "notes.txt").write_bytes(b"n")
    pv("create", f"{url}::day1", src)
    (src / "docs" / "report.odt").write_bytes(b"version 2")
    pv("create", f"{url}::day2", src)
    (src / "docs" / "report.odt").unlink()
    pv("create", f"{url}::day3", src)
    lines = pv("find", url, "*.odt", "--json-lines").out.splitlines()
    hits = [json.loads(line) for line in lines]
    assert [(h["archive"], h["size"]) for h in hits] == [("day1", 2), ("day2", 9)]
    assert all(h["path"].endswith("docs/report.odt") and h["mtime_ns"] for h in hits)
    text = pv("find", url, "report.odt", "--archive", "day2").out
    assert "day2" in text and "day1" not in text
    assert pv("find", url, "*.pdf", expect=1).rc == 1
    pv("find", url, "*", "--archive", "nope-*", expect=2)


def test_extract_list_and_export_exclude_with_the_same_grammar(pv, url, tmp_path):
    pv("init", url)
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.txt").write_bytes(b"a")
    (src / "keep" / "b.bak").write_bytes(b"b")
    (src / "cache").mkdir()
    (src / "cache" / "c").write_bytes(b"c")
    pv("create", f"{url}::a", src)
    rel = str(src).lstrip("/")
    listed = {
        i["path"] for i in json.loads(pv("list", f"{url}::a", "--json", "-e", "*.bak", "-e", "cache").out)["items"]
    }
    assert f"{rel}/keep/a.txt" in listed and not {f"{rel}/keep/b.bak", f"{rel}/cache", f"{rel}/cache/c"} & listed
    target = tmp_path / "out"
    pv("extract", f"{url}::a", "--target", target, "--exclude", "*.bak")
    assert (target / rel / "keep" / "a.txt").exists() and not (target / rel / "keep" / "b.bak").exists()
