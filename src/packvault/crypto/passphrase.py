"""Where the passphrase comes from: environment, a command, or the terminal (in that order)."""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys

from ..errors import PassphraseError


def get_passphrase(*, confirm: bool = False, prompt: str = "Passphrase: ", env: str = "PACKVAULT_PASSPHRASE") -> str:
    value = os.environ.get(env)
    if value is not None:
        return value
    command = os.environ.get("PACKVAULT_PASSCOMMAND")
    if command:
        try:
            result = subprocess.run(shlex.split(command), capture_output=True, text=True, check=False, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PassphraseError(f"PACKVAULT_PASSCOMMAND could not run: {exc}") from None
        if result.returncode != 0:
            raise PassphraseError(f"PACKVAULT_PASSCOMMAND failed with exit code {result.returncode}")
        return result.stdout.rstrip("\n")
    if not sys.stdin.isatty():
        raise PassphraseError(
            "no passphrase available", hint="set PACKVAULT_PASSPHRASE or PACKVAULT_PASSCOMMAND, or run on a terminal"
        )
    first = getpass.getpass(prompt)
    if confirm:
        second = getpass.getpass("Repeat passphrase: ")
        if first != second:
            raise PassphraseError("the passphrases do not match")
    return first
