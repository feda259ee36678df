"""Where the passphrase comes from: environment, a command, or the terminal (in that order).

Whether an empty passphrase is acceptable is the caller's decision (a new passphrase must not be empty
unless the user asked for that explicitly; see ``cli/commands.py``), so this module returns what it got.
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys

from ..errors import PassphraseError


def get_passphrase(
    *,
    confirm: bool = False,
    prompt: str = "Passphrase: ",
    env: str = "PACKVAULT_PASSPHRASE",
    command_env: str | None = "PACKVAULT_PASSCOMMAND",
) -> str:
    """The passphrase from ``$env``, else from running ``$command_env``, else from a prompt on a terminal.

    ``command_env=None`` skips the command: a new passphrase must never silently come from the command
    that produces the current one.
    """
    value = os.environ.get(env)
    if value is not None:
        return value
    command = os.environ.get(command_env) if command_env else None
    if command:
        try:
            result = subprocess.run(shlex.split(command), capture_output=True, text=True, check=False, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PassphraseError(f"{command_env} could not run: {exc}") from None
        if result.returncode != 0:
            raise PassphraseError(f"{command_env} failed with exit code {result.returncode}")
        return result.stdout.rstrip("\n")
    if not sys.stdin.isatty():
        sources = f"{env} or {command_env}" if command_env else env
        raise PassphraseError(
            f"no {prompt.rstrip(': ').lower()} available", hint=f"set {sources}, or run on a terminal"
        )
    first = getpass.getpass(prompt)
    if confirm:
        second = getpass.getpass("Repeat passphrase: ")
        if first != second:
            raise PassphraseError("the passphrases do not match")
    return first
