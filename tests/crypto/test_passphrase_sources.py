"""Where the passphrase comes from, driven through the CLI as a user would (issue 17).

PACKVAULT_PASSPHRASE first, then PACKVAULT_PASSCOMMAND (its stdout, one trailing newline dropped), then the
terminal; without any of them and without a terminal, one line and exit 2.
"""

# ruff: noqa: F811

from __future__ import annotations

import sys

from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)


def test_passcommand_supplies_the_passphrase(pv, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.delenv("PACKVAULT_PASSPHRASE")
    script = tmp_path / "pass.py"
    script.write_text("print('correct horse battery staple')\n")
    monkeypatch.setenv("PACKVAULT_PASSCOMMAND", f"{sys.executable} {script}")
    pv("list", repo)


def test_environment_wins_over_passcommand(pv, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.setenv("PACKVAULT_PASSCOMMAND", "false")  # would fail if it were asked
    pv("list", repo)


def test_failing_passcommand_is_one_line(pv, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.delenv("PACKVAULT_PASSPHRASE")
    monkeypatch.setenv("PACKVAULT_PASSCOMMAND", "false")
    result = pv("list", repo, expect=2)
    assert "PACKVAULT_PASSCOMMAND" in result.err and len(result.err.strip().splitlines()) == 1


def test_wrong_passphrase_from_passcommand(pv, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.delenv("PACKVAULT_PASSPHRASE")
    monkeypatch.setenv("PACKVAULT_PASSCOMMAND", "echo not-it")
    result = pv("list", repo, expect=2)
    assert "passphrase" in result.err.lower() and len(result.err.strip().splitlines()) == 1


def test_no_source_and_no_terminal_is_one_line(pv, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.delenv("PACKVAULT_PASSPHRASE")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    result = pv("list", repo, expect=2)
    assert "PACKVAULT_PASSPHRASE" in result.err
