"""The exit-code contract of every command (README "Exit codes"), and expected failures as one line.

0 done; 1 done, with warnings (the result is committed; how many and where is said); 2 not done, with one
line on stderr saying what is wrong and what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("packvault: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def repo(pv, tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    (src / "b.bin").write_bytes(os.urandom(50_000))
    location = tmp_path / "repo"
    pv("init", location)
    pv("create", f"{location}::one", src)
    (src / "a.txt").write_text("alpha changed")
    pv("create", f"{location}::two", src)
    return location


def _archives(pv, repo, *extra) -> list[str]:
    return [a["name"] for a in json.loads(pv("list", repo, "--json", *extra).out)["archives"]]


# --- init ------------------------------------------------------------------------------------------------


def test_init(pv, tmp_path) -> None:
    assert pv("init", tmp_path / "new").rc == 0
    line = _one_line(pv("init", tmp_path / "new", expect=2).err)
    assert "not empty" in line


def test_init_on_a_file(pv, tmp_path) -> None:
    (tmp_path / "afile").write_text("x")
    line = _one_line(pv("init", tmp_path / "afile", expect=2).err)
    assert "exists and is not a directory" in line
    assert (tmp_path / "afile").read_text() == "x"


def test_init_under_a_file(pv, tmp_path) -> None:
    (tmp_path / "afile").write_text("x")
    line = _one_line(pv("init", tmp_path / "afile" / "deeper" / "repo", expect=2).err)
    assert f"{tmp_path / 'afile'} is a file" in line


# --- list / info / diff -------------------------------------------------------------------------------------


def test_list(pv, repo, tmp_path) -> None:
    assert pv("list", repo).rc == 0
    assert pv("list", f"{repo}::one").rc == 0
    assert "'nope' not found" in _one_line(pv("list", f"{repo}::nope", expect=2).err)
    (tmp_path / "empty").mkdir()
    assert "not a Packvault repository" in _one_line(pv("list", tmp_path / "empty", expect=2).err)
    assert "no repository" in _one_line(pv("list", tmp_path / "missing", expect=2).err)


def test_info(pv, repo) -> None:
    assert pv("info", repo).rc == 0
    assert pv("info", f"{repo}::two").rc == 0
    _one_line(pv("info", f"{repo}::nope", expect=2).err)


def test_diff(pv, repo) -> None:
    out = pv("diff", f"{repo}::one", "two").out
    assert "modified" in out and "a.txt" in out
    assert "'nope' not found" in _one_line(pv("diff", f"{repo}::one", "nope", expect=2).err)


def test_wrong_passphrase(pv, repo, monkeypatch) -> None:
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "wrong")
    assert "passphrase" in _one_line(pv("list", repo, expect=2).err).lower()


# --- delete / undelete: all or nothing -------------------------------------------------------------------


def test_delete(pv, repo) -> None:
    line = _one_line(pv("delete", f"{repo}::one", "nope", expect=2).err)
    assert "'nope' not found" in line and "nothing was deleted" in line
    assert _archives(pv, repo) == ["one", "two"]  # "one" was not deleted either
    assert pv("delete", f"{repo}::one").rc == 0
    assert _archives(pv, repo) == ["two"]


def test_undelete(pv, repo) -> None:
    pv("delete", f"{repo}::one", "two")
    line = _one_line(pv("undelete", f"{repo}::one", "nope", expect=2).err)
    assert "'nope'" in line and "nothing was restored" in line
    assert _archives(pv, repo) == []
    assert pv("undelete", f"{repo}::one", "two").rc == 0
    assert _archives(pv, repo) == ["one", "two"]


# --- maintenance ---------------------------------------------------------------------------------------


def test_prune(pv, repo) -> None:
    assert pv("prune", repo, "--keep-last", "1").rc == 0
    assert _archives(pv, repo) == ["two"]
    assert "empty retention policy" in _one_line(pv("prune", repo, expect=2).err)
    _one_line(pv("prune", repo, "--keep-last", "1", "--group-by", "colour", expect=2).err)


def test_compact(pv, repo) -> None:
    assert pv("compact", repo, "--min-age", "0").rc == 0
    _one_line(pv("compact", repo, "--min-age", "soon", expect=2).err)


def test_check(pv, repo) -> None:
    assert pv("check", repo).rc == 0
    # damage one data pack: check finishes (exit 1) and says what it found on stdout
    packs = sorted(p for p in (repo / "packs").rglob("*") if p.is_file() and p.stat().st_size > 40_000)
    data = bytearray(packs[0].read_bytes())
    data[len(data) // 2] ^= 0xFF
    packs[0].write_bytes(bytes(data))
    result = pv("check", repo, "--verify-data", expect=1)
    assert result.out.strip()
    _one_line(pv("check", repo.parent / "missing", expect=2).err)


def test_break_lock(pv, repo, tmp_path) -> None:
    assert "Removed 0 lock(s)" in pv("break-lock", repo).out
    _one_line(pv("break-lock", tmp_path / "missing", expect=2).err)


# --- key -------------------------------------------------------------------------------------------------


def test_key_export_and_import(pv, repo, tmp_path) -> None:
    assert pv("key", "export", repo, tmp_path / "key.txt").rc == 0
    assert pv("key", "import", repo, tmp_path / "key.txt").rc == 0
    (tmp_path / "garbage.txt").write_text("not a key\n")
    assert "not an exported Packvault key" in _one_line(
        pv("key", "import", repo, tmp_path / "garbage.txt", expect=2).err
    )
    _one_line(pv("key", "import", repo, tmp_path / "missing.txt", expect=2).err)
    _one_line(pv("key", "export", tmp_path / "missing", expect=2).err)


def test_key_change_passphrase(pv, repo, monkeypatch) -> None:
    monkeypatch.delenv("PACKVAULT_NEW_PASSPHRASE", raising=False)
    _one_line(pv("key", "change-passphrase", repo, expect=2).err)  # no new passphrase, no terminal
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", "second")
    assert pv("key", "change-passphrase", repo).rc == 0


# --- the contract is written down ---------------------------------------------------------------------------


def test_readme_has_the_exit_code_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = readme[readme.index("## Exit codes") :]
    for row in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |", "| 143 |"):
        assert row in table, row


def test_an_internal_error_is_not_done(pv, tmp_path, monkeypatch) -> None:
    """A bug (an exception no layer expects) must not end ``create`` with Python's exit code 1, which says
    "done, with warnings": an archive committed.  It is 2, with the traceback to report."""
    from packvault.archive.create import ArchiveCreator

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    location = tmp_path / "repo"
    pv("init", location)

    def broken(self, *args, **kwargs):
        raise RuntimeError("a bug")

    with monkeypatch.context() as patched:
        patched.setattr(ArchiveCreator, "run", broken)
        result = pv("create", f"{location}::one", src, expect=2)
    assert "Traceback" in result.err and "RuntimeError: a bug" in result.err
    assert result.err.strip().splitlines()[-1].startswith("packvault: error: internal error"), result.err
    assert _archives(pv, location) == []
