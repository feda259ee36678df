"""Reading from a repository that cannot be written, and from one that cannot be read, with real refusals.

Root ignores file modes, so the refusals here are real ones: a read-only bind mount in a private mount
namespace (``unshare``), a process without the DAC override capabilities (``setpriv``), and an S3 endpoint
(through the fault proxy) that answers PUTs to ``locks/`` with ``403 AccessDenied``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import cli_command

NOTICE = "packvault: notice: cannot write a lock to"


def _can(*probe: str) -> bool:
    if shutil.which(probe[0]) is None:
        return False
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.fixture
def repo(pv, tmp_path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    location = tmp_path / "repo"
    pv("init", location)
    pv("create", f"{location}::one", src)
    (src / "a.txt").write_text("beta")
    pv("create", f"{location}::two", src)
    return location


def _read_only(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``packvault ARGS`` with ``repo`` bind-mounted read-only over itself, in a private mount namespace."""
    quoted = shlex.quote(str(repo))
    script = f'mount --bind {quoted} {quoted} && mount -o remount,bind,ro {quoted} && exec "$@"'
    command = ["unshare", "--mount", "sh", "-c", script, "sh", *cli_command(*args)]
    return subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))


needs_mount_namespace = pytest.mark.skipif(
    not _can("unshare", "--mount", "sh", "-c", "mount -t tmpfs none /mnt"),
    reason="needs unshare --mount with the right to mount (root or CAP_SYS_ADMIN)",
)


@needs_mount_namespace
def test_reading_commands_work_on_a_read_only_directory(pv_env, repo, tmp_path) -> None:
    listed = _read_only(repo, "list", repo, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [a["name"] for a in json.loads(listed.stdout)["archives"]] == ["one", "two"]
    notice = listed.stderr.strip().splitlines()
    assert len(notice) == 1 and notice[0].startswith(NOTICE) and "Read-only file system" in notice[0]

    for args in (["info", f"{repo}::one"], ["list", f"{repo}::two"], ["diff", f"{repo}::one", "two"], ["info", repo]):
        result = _read_only(repo, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr.startswith(NOTICE) and len(result.stderr.strip().splitlines()) == 1
    out = tmp_path / "out"
    result = _read_only(repo, "extract", f"{repo}::one", "--target", out)
    assert result.returncode == 0, result.stderr
    assert [p.read_text() for p in out.rglob("a.txt")] == ["alpha"]

    # asked for explicitly: no notice
    result = _read_only(repo, "list", repo, "--no-lock")
    assert result.returncode == 0 and result.stderr == ""
    assert not list((repo / "locks").iterdir())  # nothing was left behind


@needs_mount_namespace
def test_writing_commands_fail_in_one_line_on_a_read_only_directory(pv_env, repo) -> None:
    for args in (["delete", f"{repo}::one"], ["prune", repo, "--keep-last", "1"], ["compact", repo]):
        result = _read_only(repo, *args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Read-only file system" in lines[0] and "Traceback" not in result.stderr
        assert lines[0].startswith("packvault: error: cannot write to the repository at")


@pytest.mark.skipif(
    not _can("setpriv", "--bounding-set=-dac_override,-dac_read_search", "true"),
    reason="needs setpriv and the right to drop capabilities",
)
def test_an_unreadable_directory_is_one_line(pv_env, repo) -> None:
    os.chmod(repo, 0)
    try:
        result = subprocess.run(
            ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cli_command("list", repo)],
            capture_output=True,
            text=True,
        )
    finally:
        os.chmod(repo, 0o755)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"packvault: error: cannot read the repository at {repo}: Permission denied")


# --- S3 ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def test_reading_commands_work_when_the_bucket_refuses_lock_writes(
    pv, tmp_path, request, server, make_s3_url, fault_proxy
) -> None:
    endpoint = request.getfixturevalue(f"{server}_endpoint")
    location = make_s3_url(endpoint)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    pv("init", location)
    pv("create", f"{location}::one", src)
    proxy = fault_proxy(endpoint, fault_rate=1.0, kinds=["403"], methods=["PUT"], path_contains="/locks/")
    refused = location.replace(endpoint, proxy.endpoint)

    result = pv("list", refused, "--json")
    assert [a["name"] for a in json.loads(result.out)["archives"]] == ["one"]
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(NOTICE) and "access denied" in lines[0]
    assert proxy.faults["403"] >= 1
    assert pv("info", f"{refused}::one").rc == 0

    # a command that writes is refused, in one line
    result = pv("delete", f"{refused}::one", expect=2)
    assert len(result.err.strip().splitlines()) == 1 and "access denied" in result.err

    # --no-lock writes nothing at all, and says nothing
    before = proxy.faults["403"]
    result = pv("list", refused, "--no-lock", "--json")
    assert result.err == "" and json.loads(result.out)["requests"].get("PUT", 0) == 0
    assert proxy.faults["403"] == before


def test_no_lock_on_a_writable_repository_writes_no_lock(pv, tmp_path, moto_endpoint, make_s3_url) -> None:
    location = make_s3_url(moto_endpoint)
    pv("init", location)
    locked = json.loads(pv("list", location, "--json").out)["requests"]
    unlocked = json.loads(pv("list", location, "--json", "--no-lock").out)["requests"]
    assert locked.get("PUT", 0) >= 1 and unlocked.get("PUT", 0) == 0


def test_list_on_a_missing_bucket_says_the_bucket_is_missing(pv, moto_endpoint, s3_env) -> None:
    result = pv("list", f"s3://no-such-bucket-pv-ro/x?endpoint={moto_endpoint}", expect=2)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.err
    assert "bucket" in lines[0] and ("does not exist" in lines[0] or "not found" in lines[0])
    assert "init" not in lines[0]


@pytest.mark.parametrize("server", ["moto"])
def test_check_reads_a_bucket_that_refuses_lock_writes(pv, tmp_path, request, server, make_s3_url, fault_proxy):
    """check (without --repair) is a reading command too: it reads without a lock, after the notice."""
    endpoint = request.getfixturevalue(f"{server}_endpoint")
    location = make_s3_url(endpoint)
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    pv("init", location)
    pv("create", f"{location}::one", src)
    proxy = fault_proxy(endpoint, fault_rate=1.0, kinds=["403"], methods=["PUT"], path_contains="/locks/")
    refused = location.replace(endpoint, proxy.endpoint)
    result = pv("check", refused, "--verify-data")
    assert result.err.strip().splitlines()[0].startswith(NOTICE)
    assert "No problems found" in result.out
    repaired = pv("check", refused, "--repair", expect=2)  # repair writes: refused in one line
    assert len(repaired.err.strip().splitlines()) == 1
