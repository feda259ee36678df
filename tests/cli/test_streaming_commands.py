"""dump, export-tar and backing up standard input or a command's output, end to end through real processes
(pipes are the point of these commands), on a local directory and on moto (issue 19)."""

# ruff: noqa: F811

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.support.cli import cli_command, pv, pv_env, tree_snapshot  # noqa: F401  (fixtures)


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.slow)])
def url(request, tmp_path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    request.getfixturevalue("s3_env")
    return request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))


def _run(pv_env, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **pv_env}
    return subprocess.run(cli_command(*args), env=env, input=stdin, capture_output=True, timeout=300)


def _tree(root: Path) -> Path:
    rnd = random.Random(19)
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"alpha\n")
    (root / "docs" / "deep" / "b.bin").write_bytes(rnd.randbytes(6 * 1024 * 1024 + 7))
    (root / "top.bin").write_bytes(rnd.randbytes(70_000))
    os.symlink("a.txt", root / "docs" / "link")
    os.link(root / "docs" / "a.txt", root / "docs" / "a-hard")
    return root


def test_dump_a_file_and_a_directory(pv, pv_env, url, tmp_path):
    pv("init", url)
    src = _tree(tmp_path / "src")
    pv("create", f"{url}::a", src)
    rel = str(src).lstrip("/")
    one = _run(pv_env, "dump", f"{url}::a", f"/{rel}/docs/deep/b.bin")
    assert one.returncode == 0, one.stderr
    assert one.stdout == (src / "docs" / "deep" / "b.bin").read_bytes()
    tree = _run(pv_env, "dump", f"{url}::a", f"{rel}/docs")
    assert tree.returncode == 0, tree.stderr
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["tar", "-x", "-p", "-f", "-", "-C", str(out)], input=tree.stdout, check=True)
    assert tree_snapshot(out / "docs") == tree_snapshot(src / "docs")  # named after the directory itself
    missing = _run(pv_env, "dump", f"{url}::a", "no/such/path")
    assert missing.returncode == 2 and len(missing.stderr.decode().strip().splitlines()) == 1


def test_export_tar_to_a_file_and_to_stdout(pv, pv_env, url, tmp_path):
    pv("init", url)
    src = _tree(tmp_path / "src")
    pv("create", f"{url}::a", src)
    rel = str(src).lstrip("/")
    to_file = tmp_path / "a.tar"
    pv("export-tar", f"{url}::a", to_file)
    piped = _run(pv_env, "export-tar", f"{url}::a", "-")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == to_file.read_bytes()
    gnu = tmp_path / "gnu"
    gnu.mkdir()
    subprocess.run(["tar", "-x", "-p", "-f", str(to_file), "-C", str(gnu)], check=True)
    assert tree_snapshot(gnu / rel) == tree_snapshot(src)
    with tarfile.open(fileobj=io.BytesIO(piped.stdout)) as tar:
        names = set(tar.getnames())
    assert f"{rel}/docs/deep/b.bin" in names and f"{rel}/docs/link" in names
    partial = _run(pv_env, "export-tar", f"{url}::a", "-", f"{rel}/docs/deep", "no/such")
    assert partial.returncode == 1 and b"matches nothing" in partial.stderr
    with tarfile.open(fileobj=io.BytesIO(partial.stdout)) as tar:
        assert sorted(tar.getnames()) == [f"{rel}/docs/deep", f"{rel}/docs/deep/b.bin"]


def test_backup_of_standard_input(pv, pv_env, url, tmp_path):
    pv("init", url)
    data = random.Random(4).randbytes(5 * 1024 * 1024 + 11)
    made = _run(pv_env, "create", f"{url}::db", "--stdin-name", "dumps/db.sql", "-", stdin=data)
    assert made.returncode == 0, made.stderr
    back = _run(pv_env, "dump", f"{url}::db", "dumps/db.sql")
    assert back.returncode == 0 and back.stdout == data
    listing = json.loads(pv("list", f"{url}::db", "--json").out)
    (item,) = listing["items"]
    assert item["path"] == "dumps/db.sql" and item["size"] == len(data)


def test_backup_of_a_command_and_of_a_failing_one(pv, pv_env, url, tmp_path):
    pv("init", url)
    script = "import sys; sys.stdout.write('row %d\\n' * 3 % (1, 2, 3)); sys.exit(int(sys.argv[1]))"
    failing = _run(
        pv_env,
        "create",
        f"{url}::dump",
        "--stdin-name",
        "rows.txt",
        "--stdin-from-command",
        "--",
        sys.executable,
        "-c",
        script,
        "5",
    )
    assert failing.returncode == 2 and b"status 5" in failing.stderr
    assert json.loads(pv("list", url, "--json").out)["archives"] == []
    ok = _run(
        pv_env,
        "create",
        f"{url}::dump",
        "--stdin-name",
        "rows.txt",
        "--stdin-from-command",
        "--",
        sys.executable,
        "-c",
        script,
        "0",
    )
    assert ok.returncode == 0, ok.stderr
    assert _run(pv_env, "dump", f"{url}::dump", "rows.txt").stdout == b"row 1\nrow 2\nrow 3\n"
