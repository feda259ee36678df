"""Streaming archives out as tar and single files, and backing up a stream (issue 19), at the engine level:
what GNU tar and Python's tarfile read back must be the tree that was backed up."""

# ruff: noqa: F811

from __future__ import annotations

import io
import os
import random
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.create import ArchiveCreator
from packvault.archive.export import write_file, write_tar
from packvault.archive.patterns import ExcludeMatcher
from packvault.archive.stream_source import SourceCommandFailed, command_source, stdin_source
from packvault.archive.walker import FilesystemSource
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from tests.support.cli import pv, pv_env, tree_snapshot  # noqa: F401  (fixtures)
from tests.support.settings import env_settings


def _tree(root: Path) -> Path:
    rnd = random.Random(5)
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "big.bin").write_bytes(rnd.randbytes(9 * 1024 * 1024 + 123))  # several chunks
    (root / "small.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "deep" / "f").write_bytes(rnd.randbytes(5000))
    os.chmod(root / "small.txt", 0o640)
    os.symlink("small.txt", root / "link")
    os.link(root / "sub" / "deep" / "f", root / "sub" / "hard")
    os.mkfifo(root / "fifo")
    (root / os.fsdecode(b"name-\xff-not-utf8")).write_bytes(b"odd name")
    os.utime(root / "small.txt", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return root


def _open(url: str, lock="shared") -> Repository:
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock=lock)
    return repo


def _backup(url: str, name: str, source) -> None:
    with _open(url) as repo:
        ArchiveCreator(repo, name).run(source, paths=["test"], cmdline=["test"])


@pytest.fixture
def backed_up(pv, tmp_path):
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    src = _tree(tmp_path / "src")
    creator_warn = []
    walk = FilesystemSource(
        [str(src)], excludes=ExcludeMatcher([]), one_file_system=False, warn=lambda p, m: creator_warn.append((p, m))
    )
    _backup(url, "a", walk)
    return url, src


def _export(url: str, *, strip: bytes = b"", select=lambda item: True) -> tuple[bytes, list]:
    out = io.BytesIO()
    with _open(url, lock=None) as repo, ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive("a"))
        stats = write_tar(reader, (i for i in iter_archive_items(reader, meta) if select(i)), out, strip=strip)
    return out.getvalue(), stats.warnings


def test_tar_read_by_python_tarfile_is_the_tree(backed_up, tmp_path):
    url, src = backed_up
    data, warnings = _export(url)
    assert warnings == []
    target = tmp_path / "py"
    target.mkdir()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="surrogateescape") as tar:
        members = {m.name: m for m in tar.getmembers()}
        tar.extractall(target, filter="fully_trusted")
    rel = str(src).lstrip("/")
    small = members[f"{rel}/small.txt"]
    assert small.mode == 0o640 and small.mtime == pytest.approx(1_600_000_000.123456789, abs=1e-6)
    assert members[f"{rel}/link"].issym() and members[f"{rel}/link"].linkname == "small.txt"
    assert members[f"{rel}/sub/hard"].islnk() or members[f"{rel}/sub/deep/f"].islnk()
    assert members[f"{rel}/fifo"].isfifo()
    # Python's tarfile reads the PAX mtime as a float of seconds: exact to about a microsecond only
    assert _without_mtimes(tree_snapshot(target / rel)) == _without_mtimes(tree_snapshot(src))


def _without_mtimes(snapshot: dict) -> dict:
    return {
        path: tuple(v for i, v in enumerate(entry) if not (i == 2 and entry[0] in ("f", "d", "special")))
        for path, entry in snapshot.items()
    }


def test_tar_read_by_gnu_tar_is_the_tree(backed_up, tmp_path):
    url, src = backed_up
    data, _ = _export(url)
    target = tmp_path / "gnu"
    target.mkdir()
    subprocess.run(["tar", "-x", "-p", "-f", "-", "-C", str(target)], input=data, check=True)
    listing = subprocess.run(["tar", "-t", "-v", "-f", "-"], input=data, check=True, capture_output=True).stdout
    assert b"small.txt" in listing
    assert tree_snapshot(target / str(src).lstrip("/")) == tree_snapshot(src)


def test_tar_of_a_subtree_keeps_its_own_name(backed_up, tmp_path):
    url, src = backed_up
    rel = os.fsencode(str(src).lstrip("/"))
    below = rel + b"/sub"
    data, warnings = _export(url, strip=rel + b"/", select=lambda i: i["p"] == below or i["p"].startswith(below + b"/"))
    assert warnings == []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        names = sorted(m.name for m in tar.getmembers())
    assert names == ["sub", "sub/deep", "sub/deep/f", "sub/hard"]


def test_dump_of_one_file_is_its_bytes(backed_up):
    url, src = backed_up
    out = io.BytesIO()
    with _open(url, lock=None) as repo, ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive("a"))
        item = next(i for i in iter_archive_items(reader, meta) if i["p"].endswith(b"/big.bin"))
        stats = write_file(reader, item, out)
    assert out.getvalue() == (src / "big.bin").read_bytes() and stats.bytes_written == len(out.getvalue())


def test_stdin_source_backs_up_a_stream(pv, tmp_path):
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    data = random.Random(2).randbytes(6 * 1024 * 1024)  # longer than one chunk: the stream chunker
    _backup(url, "a", stdin_source("dumps/db.sql", io.BytesIO(data)))
    with _open(url, lock=None) as repo, ChunkReader(repo) as reader:
        (item,) = list(iter_archive_items(reader, load_archive(reader, repo.find_archive("a"))))
        out = io.BytesIO()
        write_file(reader, item, out)
    assert item["p"] == b"dumps/db.sql" and item["s"] == len(data) and stat.S_IMODE(item["m"]) == 0o600
    assert out.getvalue() == data


def test_a_failing_command_commits_nothing(pv, tmp_path):
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    failing = [sys.executable, "-c", "import sys; sys.stdout.write('partial'); sys.exit(3)"]
    with pytest.raises(SourceCommandFailed) as caught:
        _backup(url, "a", command_source("db.sql", failing))
    assert caught.value.exit_code == 2 and "status 3" in str(caught.value)
    with _open(url, lock=None) as repo:
        assert repo.archive_entries() == []
    ok = [sys.executable, "-c", "import sys; sys.stdout.write('complete')"]
    _backup(url, "a", command_source("db.sql", ok))
    with _open(url, lock=None) as repo, ChunkReader(repo) as reader:
        (item,) = list(iter_archive_items(reader, load_archive(reader, repo.find_archive("a"))))
        out = io.BytesIO()
        write_file(reader, item, out)
    assert out.getvalue() == b"complete"
