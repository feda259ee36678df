"""Shell completion is generated from the argparse definition (issue 19): every command and option of the
parser is completed, so the scripts cannot drift from the CLI."""

# ruff: noqa: F811

from __future__ import annotations

import argparse
import shutil
import subprocess

import pytest

from packvault.cli.main import build_parser
from tests.support.cli import cli_command, pv, pv_env  # noqa: F401  (fixtures)


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _long_options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(o for action in parser._actions for o in action.option_strings if o.startswith("--"))


def _bash_complete(script: str, words: list[str]) -> set[str]:
    line = " ".join(words)
    program = (
        f"{script}\nCOMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
        f"COMP_LINE={line!r}; COMP_POINT=${{#COMP_LINE}}; _shtab_packvault; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    )
    out = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_every_command_and_option(pv):
    script = pv("completion", "bash").out
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    commands = _commands()
    assert _bash_complete(script, ["packvault", ""]) >= set(commands)
    for name, parser in commands.items():
        assert name in _bash_complete(script, ["packvault", name[:2]])
        options = _long_options(parser)
        assert _bash_complete(script, ["packvault", name, "--"]) >= set(options), name


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_name_every_command_and_option(pv, shell):
    script = pv("completion", shell).out
    for name, parser in _commands().items():
        assert name in script, (shell, name)
        for option in _long_options(parser):
            assert option.lstrip("-") in script, (shell, name, option)
    if shutil.which(shell):
        subprocess.run([shell, "-n"], input=script, text=True, check=True)


def test_completion_needs_no_repository_or_passphrase(pv_env, monkeypatch):
    monkeypatch.delenv("PACKVAULT_PASSPHRASE", raising=False)
    env = {k: v for k, v in pv_env.items() if k != "PACKVAULT_PASSPHRASE"}
    import os

    result = subprocess.run(
        cli_command("completion", "fish"), env={**os.environ, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0 and "packvault" in result.stdout
    bad = subprocess.run(cli_command("completion", "csh"), env={**os.environ, **env}, capture_output=True, text=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
