"""Output people and scripts can trust: one JSON document, lossless names, escaped terminal output."""

from __future__ import annotations

import base64
import json
import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EVIL = "evil\n\x1b[31mred\tname"


@pytest.fixture
def odd_names(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "plain.txt").write_text("plain")
    (src / EVIL).write_text("evil")
    raw_dir = os.fsencode(src)
    with open(os.path.join(raw_dir, b"latin1-\xe9t\xe9"), "wb") as f:  # not UTF-8
        f.write(b"latin")
    os.symlink(b"target-\xff", os.path.join(raw_dir, b"link"))
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::one", src)
    return repo, src


def test_list_json_of_an_archive_is_one_document(pv, odd_names) -> None:
    repo, src = odd_names
    document = json.loads(pv("list", f"{repo}::one", "--json").out)
    assert document["archive"]["name"] == "one"
    paths = [item["path"] for item in document["items"]]
    prefix = str(src).lstrip("/")
    assert paths[0] == prefix and f"{prefix}/plain.txt" in paths
    assert "requests" in document
    # --json-lines stays one object per line
    lines = pv("list", f"{repo}::one", "--json-lines").out.splitlines()
    assert [json.loads(line)["path"] for line in lines] == paths


def test_names_that_are_not_utf8_are_carried_losslessly(pv, odd_names) -> None:
    repo, src = odd_names
    items = json.loads(pv("list", f"{repo}::one", "--json").out)["items"]
    by_bytes = {base64.b64decode(i["path_bytes"]): i for i in items if "path_bytes" in i}
    wanted = os.fsencode(src).lstrip(b"/") + b"/latin1-\xe9t\xe9"
    assert list(by_bytes) == [wanted]
    assert by_bytes[wanted]["path"].endswith("latin1-\\xe9t\\xe9")
    utf8 = [i for i in items if "path_bytes" not in i]
    assert any(i["path"].endswith(EVIL) for i in utf8)  # valid UTF-8: exact in "path", control characters and all
    (link,) = [i for i in items if i["type"] == "l"]
    assert base64.b64decode(link["target_bytes"]) == b"target-\xff"


def test_plain_list_escapes_control_characters(pv, odd_names) -> None:
    repo, _ = odd_names
    out = pv("list", f"{repo}::one").out
    assert "\x1b" not in out and "\t" not in out
    lines = out.splitlines()
    assert len(lines) == 5  # the directory, three files, the link: the newline in a name does not add a line
    assert any(line.endswith("evil\\n\\x1b[31mred\\tname") for line in lines)
    assert any(line.endswith("latin1-\\xe9t\\xe9") for line in lines)
    assert any(line.endswith("link -> target-\\xff") for line in lines)


def test_diff_escapes_and_carries_names(pv, odd_names) -> None:
    repo, src = odd_names
    (src / EVIL).write_text("changed")
    pv("create", f"{repo}::two", src)
    out = pv("diff", f"{repo}::one", "two").out
    assert "\x1b" not in out and out.count("\n") == 1 and "evil\\n\\x1b[31mred\\tname" in out
    changes = json.loads(pv("diff", f"{repo}::one", "two", "--json").out)["changes"]
    assert [c["path"].endswith(EVIL) for c in changes] == [True]


@pytest.mark.parametrize("name", ["bad\nname", "esc\x1b[2J", "tab\there", "del\x7f", "c1\x85", "rtl\u202eexe.txt"])
def test_archive_names_with_control_characters_are_refused(pv, tmp_path, name) -> None:
    src = tmp_path / "src"
    src.mkdir()
    repo = tmp_path / "repo"
    pv("init", repo)
    result = pv("create", f"{repo}::{name}", src, expect=2)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "control characters" in lines[0]
    assert json.loads(pv("list", repo, "--json").out)["archives"] == []


def test_archive_names_may_hold_other_characters(pv, tmp_path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::über\\back slash", src)
    assert [a["name"] for a in json.loads(pv("list", repo, "--json").out)["archives"]] == ["über\\back slash"]
    assert "über\\\\back slash" in pv("list", repo).out  # a backslash prints doubled: unambiguous


def test_license_is_an_spdx_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "BSD-3-Clause"
