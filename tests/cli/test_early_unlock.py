"""The key is derived before the rest of Packvault is loaded, once, and a stale hint never breaks a run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from packvault.cli import early_unlock

PROBE = textwrap.dedent(
    """
    import sys, threading
    from packvault.cli import early_unlock, main
    from packvault.crypto import kdf

    # each Argon2id run notes whether it was the early one (its own thread, before the S3 client is
    # loaded) or one on opening the repository
    calls = []
    real = kdf._argon2id

    def when():
        early = threading.current_thread().name == "pv-kdf" and "botocore" not in sys.modules
        return "early" if early else "open"

    kdf._argon2id = lambda *a: calls.append(when()) or real(*a)
    rc = main.main(["list", sys.argv[1]])
    print(calls, rc)
    """
)


def _probe(env: dict[str, str], repo: Path) -> str:
    import os

    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(repo)], env={**os.environ, **env}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_key_is_derived_early_and_only_once(pv, pv_env, tmp_path):
    repo = tmp_path / "repo"
    pv("init", repo)
    assert early_unlock._hint_path(str(repo)).exists()
    # fresh process: the derivation happens before the heavy modules are imported, and opening the
    # repository reuses it instead of running Argon2id a second time
    assert _probe(pv_env, repo) == "['early'] 0"


def test_without_a_hint_the_key_is_derived_on_open(pv, pv_env, tmp_path):
    repo = tmp_path / "repo"
    pv("init", repo)
    early_unlock._hint_path(str(repo)).unlink()
    assert _probe(pv_env, repo) == "['open'] 0"  # derived when opening the repository, after the imports
    assert early_unlock._hint_path(str(repo)).exists()  # remembered for the next run


def test_damaged_or_stale_hint_is_harmless(pv, pv_env, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    hint = early_unlock._hint_path(str(repo))
    hint.write_bytes(b"\x00 not msgpack")
    pv("list", repo)
    before = hint.read_bytes()
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", "another secret")
    pv("key", "change-passphrase", repo)
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "another secret")
    pv_env["PACKVAULT_PASSPHRASE"] = "another secret"
    # the hint still names the old key's salt: one wasted derivation, then the right one, then a new hint
    assert _probe(pv_env, repo) == "['early', 'open'] 0"
    assert hint.read_bytes() != before
    assert _probe(pv_env, repo) == "['early'] 0"


def test_wrong_passphrase_with_a_hint_is_still_one_clear_line(pv, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "wrong")
    result = pv("list", repo, expect=2)
    assert "wrong passphrase" in result.err and "Traceback" not in result.err


def test_objects_alive_once_the_repository_is_open_are_frozen(pv, pv_env, tmp_path):
    """The CLI takes start-up objects out of the cycle collector's reach (cli/gc_policy.py)."""
    import os

    repo = tmp_path / "repo"
    pv("init", repo)
    probe = "import gc, sys\nfrom packvault.cli import main\nrc = main.main(['list', sys.argv[1]])\n"
    probe += "print(gc.get_freeze_count(), rc)"
    result = subprocess.run(
        [sys.executable, "-c", probe, str(repo)], env={**os.environ, **pv_env}, capture_output=True, text=True
    )
    frozen, rc = result.stdout.split()
    assert rc == "0", result.stderr
    assert int(frozen) > 10_000


def test_a_local_backup_loads_no_s3_client(pv, pv_env, tmp_path):
    """boto3 and botocore cost a local backup ~80-190 ms of start-up: they load only for an S3 location or an
    S3 source (scale-out parts included)."""
    import os

    repo = tmp_path / "repo"
    pv("init", repo)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    probe = textwrap.dedent(
        """
        import sys
        from packvault.cli import main
        rc = main.main(["create", sys.argv[1] + "::a", sys.argv[2]])
        print(rc, sorted(m for m in ("botocore", "packvault.storage.s3") if m in sys.modules))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(repo), str(src)], env={**os.environ, **pv_env}, capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []", result.stdout


OVERLAP_PROBE = textwrap.dedent(
    """
    import sys, time
    from packvault.cli import main
    from packvault.crypto import kdf

    # the derivation waits (up to 20 s) for the command modules: it sees them only if they are imported
    # while it runs, in another thread; the S3 client must still be absent when it ends
    seen = []
    real = kdf._argon2id

    def derivation(*a):
        key = real(*a)
        deadline = time.monotonic() + 20
        while "packvault.cli.commands" not in sys.modules and time.monotonic() < deadline:
            time.sleep(0.01)
        seen.append(("packvault.cli.commands" in sys.modules, "botocore" in sys.modules))
        return key

    kdf._argon2id = derivation
    rc = main.main(["list", sys.argv[1]])
    print(seen, rc)
    """
)


def test_the_command_modules_load_while_the_key_is_derived(pv, pv_env, tmp_path):
    """Argon2id releases the GIL: the ~0.1 s of importing the commands overlaps the derivation, and the S3
    client still loads only after it (its memory and the KDF's never add up)."""
    import os

    repo = tmp_path / "repo"
    pv("init", repo)
    result = subprocess.run(
        [sys.executable, "-c", OVERLAP_PROBE, str(repo)], env={**os.environ, **pv_env}, capture_output=True,
        text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[(True, False)] 0", result.stdout


def test_the_modules_imported_beside_the_key_derivation_are_those_create_imports():
    """``backup.CREATE_MODULES`` names, as strings, what ``cmd_create`` imports as it starts, so that
    ``main`` can import them while the key is derived: a module added to one and not the other would be
    imported after the derivation again, with the other core idle."""
    import ast
    import inspect

    from packvault.cli import backup

    tree = ast.parse(inspect.getsource(backup.cmd_create).lstrip())
    imported = {
        "packvault." + node.module.lstrip(".") if node.level == 2 else node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported == set(backup.CREATE_MODULES)
