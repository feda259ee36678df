"""Tuning from the environment is read once, at the edge, into one Settings object: a value that does not
parse is one line naming the variable, before anything is opened (it used to be a traceback from deep inside
the lock or the writer)."""

# ruff: noqa: F811  (the pv fixtures are imported from tests.support.cli and used as arguments)

from __future__ import annotations

from pathlib import Path

import pytest

from packvault.errors import UsageError
from packvault.settings import DEFAULT_LOCK_WAIT, Settings
from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)


def test_defaults_and_overrides():
    assert Settings.from_environ({}) == Settings.defaults()
    settings = Settings.from_environ(
        {
            "PACKVAULT_CACHE_DIR": "/c",
            "PACKVAULT_CONFIG_DIR": "/k",
            "PACKVAULT_LOCK_WAIT": "2.5",
            "PACKVAULT_CHECKPOINT_PACKS": "3",
            "PACKVAULT_KDF_MEMORY_KIB": "1024",
            "PACKVAULT_KEY_FILE": "",  # empty is unset
        }
    )
    assert settings.cache_dir == Path("/c") and settings.spool_dir == Path("/c/spool")
    assert settings.lock_wait == 2.5 and settings.checkpoint_packs == 3 and settings.kdf_memory_kib == 1024
    assert settings.key_file_for(b"\1" * 32) == Path("/k/keys") / ("01" * 32)
    assert Settings.defaults().lock_wait == DEFAULT_LOCK_WAIT


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PACKVAULT_LOCK_WAIT", "soon"),
        ("PACKVAULT_LOCK_WAIT", "-1"),
        ("PACKVAULT_CHECKPOINT_PACKS", "0"),
        ("PACKVAULT_CHECKPOINT_SECONDS", "nan"),
        ("PACKVAULT_KDF_MEMORY_KIB", "lots"),
    ],
)
def test_a_bad_value_names_the_variable(name, value):
    with pytest.raises(UsageError) as caught:
        Settings.from_environ({name: value})
    assert name in str(caught.value)


@pytest.mark.parametrize(
    ("name", "command"),
    [
        ("PACKVAULT_LOCK_WAIT", "list"),
        ("PACKVAULT_CHECKPOINT_PACKS", "create"),
        ("PACKVAULT_LOCK_STALE_SECONDS", "list"),
    ],
)
def test_the_cli_refuses_a_bad_value_in_one_line(pv, tmp_path, monkeypatch, name, command):
    repo = tmp_path / "repo"
    pv("init", repo)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_text("x")
    monkeypatch.setenv(name, "soon")
    args = ("create", f"{repo}::a", tmp_path / "src") if command == "create" else ("list", repo)
    result = pv(*args, expect=2)
    assert name in result.err and len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_the_cli_hands_its_settings_down(pv, tmp_path, monkeypatch):
    """The cache directory of PACKVAULT_CACHE_DIR is where the repository's cache goes."""
    repo = tmp_path / "repo"
    monkeypatch.setenv("PACKVAULT_CACHE_DIR", str(tmp_path / "elsewhere"))
    pv("init", repo)
    pv("list", repo)
    assert any((tmp_path / "elsewhere").iterdir())
