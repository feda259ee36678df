"""Fixtures for driving Packvault like a user: in-process CLI calls and real subprocesses."""

from __future__ import annotations

import gc
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from packvault.cli.main import main


@dataclass
class Result:
    rc: int
    out: str
    err: str


@pytest.fixture
def pv_env(tmp_path, monkeypatch) -> dict[str, str]:
    """A private passphrase, cache and config dir for each test; a cheap KDF; short lock timings."""
    env = {
        "PACKVAULT_PASSPHRASE": "correct horse battery staple",
        "PACKVAULT_CACHE_DIR": str(tmp_path / "cache"),
        "PACKVAULT_CONFIG_DIR": str(tmp_path / "config"),
        "PACKVAULT_KDF_MEMORY_KIB": "1024",
        "PACKVAULT_LOCK_WAIT": "20",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PACKVAULT_REPO", raising=False)
    monkeypatch.delenv("PACKVAULT_PASSCOMMAND", raising=False)
    return env


@pytest.fixture
def pv(pv_env, capsys):
    """Run ``packvault ARGS`` in-process; returns Result(rc, out, err)."""

    def run(*args: str, expect: int | None = 0) -> Result:
        capsys.readouterr()
        try:
            rc = main([str(a) for a in args])
        finally:
            gc.unfreeze()  # the CLI freezes what lives as long as a command; this process lives on
        captured = capsys.readouterr()
        result = Result(rc, captured.out, captured.err)
        if expect is not None:
            assert rc == expect, f"packvault {' '.join(map(str, args))} -> {rc}\n{captured.out}\n{captured.err}"
        return result

    return run


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "packvault.cli.main", *map(str, args)]


def run_process(*args: str, env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run(cli_command(*args), env=full_env, capture_output=True, text=True, **kwargs)


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Everything restore must reproduce: type, mode, mtime, content/target, hardlink grouping."""
    snap = {}
    inodes: dict[int, list[bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, os.fsencode(root))
            st = os.lstat(path)
            if os.path.islink(path):
                snap[rel] = ("l", os.readlink(path))
            elif os.path.isdir(path):
                snap[rel] = ("d", st.st_mode, st.st_mtime_ns)
            elif not stat.S_ISREG(st.st_mode):
                snap[rel] = ("special", st.st_mode, st.st_mtime_ns, st.st_rdev)
            else:
                with open(path, "rb") as f:
                    content = f.read()
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
                snap[rel] = ("f", st.st_mode, st.st_mtime_ns, content)
    for paths in inodes.values():
        for rel in paths:
            snap[rel] = (*snap[rel], min(paths))
    return snap
