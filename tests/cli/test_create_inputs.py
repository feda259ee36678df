"""``create`` with inputs that used to surprise: a repository (and the cache) inside the source tree,
overlapping PATHs, only missing PATHs, sockets.  Exit 0/1 only when the archive's entry exists."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from packvault.cli.main import main


def _archives(pv, location) -> list[str]:
    return [a["name"] for a in json.loads(pv("list", "--json", location).out)["archives"]]


def _paths(pv, location: str) -> list[str]:
    out = pv("list", "--json-lines", location).out
    return [json.loads(line)["path"] for line in out.splitlines()]


def _tree(root: Path) -> Path:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "b.txt").write_text("b\n")
    (root / "sub" / "deep" / "c.txt").write_text("c\n")
    return root


def test_repository_and_cache_inside_the_source_are_not_backed_up(pv, tmp_path, monkeypatch):
    src = _tree(tmp_path / "src")
    repo = src / "backups" / "repo"
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(src / ".cache"))
    pv("init", repo, "--pack-size", "64K")
    pv("create", f"{repo}::a", src)  # fills the cache, and the repository, inside the tree
    result = pv("create", "--json", f"{repo}::b", src)

    created = json.loads(result.out)
    assert created["warnings"] == []
    notes = "\n".join(created["notes"])
    assert str(repo) in notes and "repository" in notes
    assert str(src / ".cache") in notes and "cache" in notes
    stored = _paths(pv, f"{repo}::b")
    rel = str(src).lstrip("/")
    assert f"{rel}/backups" in stored  # the directory holding the repository is still there
    assert not any(p.startswith((f"{rel}/backups/repo", f"{rel}/.cache")) for p in stored), stored
    assert f"{rel}/sub/deep/c.txt" in stored


def test_overlapping_paths_are_stored_once(pv, tmp_path):
    src = _tree(tmp_path / "src")
    repo = tmp_path / "repo"
    pv("init", repo)
    result = pv("create", "--json", f"{repo}::a", src / "sub", src, src / "sub" / "deep", src)

    stored = _paths(pv, f"{repo}::a")
    assert len(stored) == len(set(stored)), stored
    rel = str(src).lstrip("/")
    assert sorted(stored) == sorted(
        [rel, f"{rel}/a.txt", f"{rel}/sub", f"{rel}/sub/b.txt", f"{rel}/sub/deep", f"{rel}/sub/deep/c.txt"]
    )
    created = json.loads(result.out)
    assert created["warnings"] == [] and len(created["notes"]) == 3  # sub, sub/deep, and src given twice
    assert created["stats"]["nfiles"] == 3


def test_only_missing_paths_exit_2_and_commit_nothing(pv, tmp_path):
    repo = tmp_path / "repo"
    pv("init", repo)
    result = pv("create", f"{repo}::a", tmp_path / "nope", tmp_path / "neither", expect=2)

    assert result.err.count("No such file or directory") == 2
    errors = [line for line in result.err.splitlines() if line.startswith("packvault: error:")]
    assert len(errors) == 1 and "nothing to back up" in errors[0]
    assert "Traceback" not in result.err
    assert _archives(pv, repo) == []


def test_socket_is_warned_about_once_and_the_archive_exists(pv, tmp_path):
    src = _tree(tmp_path / "src")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock_path = src / "sub" / "app.sock"
    sock.bind(str(sock_path))
    try:
        repo = tmp_path / "repo"
        pv("init", repo)
        result = pv("create", f"{repo}::a", src, expect=1)
    finally:
        sock.close()
    warnings = [line for line in result.err.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: {sock_path}: not backed up: a socket"]
    assert _archives(pv, repo) == ["a"]  # exit 1: done with warnings, the archive exists
    assert f"{str(src).lstrip('/')}/sub/b.txt" in _paths(pv, f"{repo}::a")


def test_exit_0_or_1_always_means_the_archive_exists(pv_env, tmp_path, capsys):
    """Every way this file drives create: whatever the exit code, 0/1 come with an archives/ entry."""
    src = _tree(tmp_path / "src")
    repo = tmp_path / "repo"
    assert main(["init", str(repo)]) == 0
    cases = {
        "plain": [str(src)],
        "missing": [str(tmp_path / "nope")],
        "some-missing": [str(src), str(tmp_path / "nope")],
        "excluded": [str(src), "--exclude", str(src)],
    }
    for name, args in cases.items():
        rc = main(["create", f"{repo}::{name}", *args])
        capsys.readouterr()
        listed = main(["list", "--json", str(repo)])
        names = [a["name"] for a in json.loads(capsys.readouterr().out)["archives"]]
        assert listed == 0
        assert (rc in (0, 1)) == (name in names), (name, rc, names)
        assert rc in (0, 1, 2)
    assert os.path.isdir(repo / "archives")
