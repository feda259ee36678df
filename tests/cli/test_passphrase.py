"""New passphrases: never empty by accident, and a change takes the new one only from where it says."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
from pathlib import Path

import pytest

from tests.support.cli import cli_command

README = Path(__file__).resolve().parents[2] / "README.md"


def test_init_refuses_an_empty_passphrase_from_the_environment(pv, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "")
    result = pv("init", tmp_path / "repo", expect=2)
    assert result.err.startswith("packvault: error: the new passphrase is empty")
    assert "--allow-empty-passphrase" in result.err and len(result.err.splitlines()) == 1
    assert not (tmp_path / "repo").exists()


def test_an_empty_passphrase_when_asked_for(pv, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "")
    pv("init", tmp_path / "repo", "--allow-empty-passphrase")
    pv("list", tmp_path / "repo")
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "not empty")
    assert "passphrase" in pv("list", tmp_path / "repo", expect=2).err


def _run_on_terminal(args: list[str], env: dict[str, str], answers: list[bytes]) -> tuple[int, str]:
    """Run the CLI on a pseudo terminal (so getpass prompts) and type one answer per prompt.

    getpass flushes pending input when it turns echo off, so each answer is typed only once its prompt
    (a line ending in ": ") has appeared.  Returns (exit code, everything the terminal showed).
    """
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        try:
            os.execve(sys.executable, cli_command(*args), env)
        finally:
            os._exit(127)
    output = b""
    pending = list(answers)
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 60)
            if not ready:
                os.kill(pid, signal.SIGKILL)  # the child we forked above
                raise AssertionError(f"no output for 60 s: {output!r}")
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if pending and output.rstrip(b" ").endswith(b":"):
                os.write(fd, pending.pop(0))
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_init_refuses_an_empty_passphrase_typed_at_the_prompt(pv_env, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PACKVAULT_PASSPHRASE"}
    rc, output = _run_on_terminal(["init", str(tmp_path / "repo")], env, [b"\n", b"\n"])
    assert rc == 2, output
    assert "the new passphrase is empty" in output and "Traceback" not in output
    rc, output = _run_on_terminal(["init", str(tmp_path / "repo")], env, [b"typed secret\n", b"typed secret\n"])
    assert rc == 0, output
    os.environ["PACKVAULT_PASSPHRASE"] = "typed secret"
    try:
        rc, output = _run_on_terminal(["list", str(tmp_path / "repo")], dict(os.environ), [])
    finally:
        os.environ["PACKVAULT_PASSPHRASE"] = pv_env["PACKVAULT_PASSPHRASE"]
    assert rc == 0, output


def test_change_passphrase_never_takes_the_new_one_from_the_passcommand(pv, tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    pv("init", repo)
    # the current passphrase comes from a command; no new one is given and there is no terminal
    monkeypatch.delenv("PACKVAULT_PASSPHRASE")
    monkeypatch.setenv("PACKVAULT_PASSCOMMAND", "echo 'correct horse battery staple'")
    monkeypatch.delenv("PACKVAULT_NEW_PASSPHRASE", raising=False)
    result = pv("key", "change-passphrase", repo, expect=2)
    assert "no new passphrase available" in result.err
    assert "PACKVAULT_NEW_PASSPHRASE" in result.err and "PACKVAULT_PASSCOMMAND" not in result.err
    # and the key is unchanged: the old passphrase still opens it
    pv("list", repo)


def test_change_passphrase_refuses_an_empty_new_one(pv, tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", "")
    result = pv("key", "change-passphrase", repo, expect=2)
    assert "the new passphrase is empty" in result.err
    pv("list", repo)  # unchanged
    pv("key", "change-passphrase", repo, "--allow-empty-passphrase")
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "")
    pv("list", repo)


def test_change_passphrase_from_the_documented_variable(pv, tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", "another one")
    pv("key", "change-passphrase", repo)
    assert "passphrase" in pv("list", repo, expect=2).err.lower()
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "another one")
    pv("list", repo)
    assert "PACKVAULT_NEW_PASSPHRASE" in README.read_text()


@pytest.mark.parametrize("command", ["init", "key change-passphrase"])
def test_the_option_is_documented(command) -> None:
    from packvault.cli.main import build_parser

    parser = build_parser()
    for word in command.split():
        parser = next(a for a in parser._actions if hasattr(a, "choices") and a.choices and word in a.choices).choices[
            word
        ]
    assert "--allow-empty-passphrase" in parser.format_help()
