"""``packvault mount`` end to end, for real: a FUSE mount through /dev/fuse and libfuse 3, driven like a user
(``ls -lR``, reads in random order, stat), compared byte for byte and attribute by attribute with the tree
that was backed up, then stopped by a signal or unmounted, on the file backend, moto and LocalStack.

Without /dev/fuse or libfuse these tests fail under CI=true (CI installs fuse3 with .ci/install-fuse.sh
and must run them) and are skipped elsewhere, saying what is missing.
"""

# ruff: noqa: F811

from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import cli_command, pv, pv_env  # noqa: F401  (fixtures)
from tests.support.settings import env_settings

MOUNT_TIMEOUT = 60


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if shutil.which("fusermount3") is None:  # mounting as non-root needs it, and the tests unmount with it
        return "fusermount3 is not installed (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401  (looks libfuse up when imported)
    except (ImportError, OSError, AttributeError) as exc:
        return f"libfuse 3 cannot be loaded ({exc}); install the fuse3 package (.ci/install-fuse.sh)"
    return None


@pytest.fixture
def fuse() -> None:
    missing = _fuse_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the mount tests must run in CI: {missing}")
        pytest.skip(missing)


def make_tree(root: Path) -> Path:
    """Everything a mount must show: several-chunk and empty files, odd names, modes, ns mtimes, a symlink
    (and a dangling one), a hardlink pair, a fifo, an empty directory."""
    rnd = random.Random(19)
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "emptydir").mkdir()
    (root / "big.bin").write_bytes(rnd.randbytes(5 * 1024 * 1024 + 77))  # several chunks
    for number, size in enumerate((0, 1, 4095, 70_000, 300_001)):
        (root / "sub" / f"f{number}").write_bytes(rnd.randbytes(size))
    (root / "sub" / "deep" / "note.txt").write_bytes(b"deep\n")
    (root / os.fsdecode(b"name-\xff-not-utf8")).write_bytes(b"odd name")
    (root / "with space & \u00e9").write_bytes(b"unicode name")
    os.chmod(root / "sub" / "f2", 0o640)
    os.symlink("../big.bin", root / "sub" / "link")
    os.symlink("/nonexistent/target", root / "dangling")
    os.link(root / "sub" / "f3", root / "sub" / "deep" / "hard")
    os.mkfifo(root / "fifo")
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):  # children before their directory
        if not path.is_symlink():
            ns = 1_600_000_000_000_000_000 + rnd.randrange(10**15)
            os.utime(path, ns=(ns, ns))
    return root


def _entries(root: Path) -> dict[bytes, os.stat_result]:
    """Relative path -> lstat of everything below ``root``."""
    result = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            result[os.path.relpath(path, base)] = os.lstat(path)
    return result


def _wait_mounted(mountpoint: Path, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + MOUNT_TIMEOUT
    while not os.path.ismount(mountpoint):
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"mount exited with {proc.returncode} before mounting:\n{out}\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{mountpoint} was not mounted within {MOUNT_TIMEOUT}s")
        time.sleep(0.05)


def _force_unmount(mountpoint: Path) -> None:
    if os.path.ismount(mountpoint):
        subprocess.run(["fusermount3", "-u", "-z", str(mountpoint)], check=False, capture_output=True)


@contextlib.contextmanager
def mounted(*args: str, mountpoint: Path) -> Iterator[subprocess.Popen]:
    """``packvault mount ARGS MOUNTPOINT --foreground`` in a subprocess, yielded once mounted."""
    proc = subprocess.Popen(
        cli_command("mount", *args, mountpoint, "--foreground"),
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_mounted(mountpoint, proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        _force_unmount(mountpoint)


def _stop(proc: subprocess.Popen, signum: int, mountpoint: Path) -> str:
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, f"mount ended with {proc.returncode} after {signal.Signals(signum).name}:\n{err}"
    assert not os.path.ismount(mountpoint), "still mounted after the signal"
    assert "Traceback" not in err and not out, (out, err)
    return err


def assert_same_tree(source: Path, shown: Path) -> None:
    """The mounted tree is the source: names, types, modes, sizes, ns mtimes, symlink targets, hardlink
    groups (shared inode, link count), and every file's bytes read whole in random order and in pieces at
    random offsets."""
    expected = _entries(source)
    got = _entries(shown)
    assert sorted(got) == sorted(expected)
    files = []
    for rel, want in expected.items():
        have = got[rel]
        assert stat.S_IFMT(have.st_mode) == stat.S_IFMT(want.st_mode), rel
        assert stat.S_IMODE(have.st_mode) == stat.S_IMODE(want.st_mode), rel
        assert have.st_mtime_ns == want.st_mtime_ns, rel
        if stat.S_ISLNK(want.st_mode):
            target = os.readlink(os.path.join(os.fsencode(source), rel))
            assert os.readlink(os.path.join(os.fsencode(shown), rel)) == target, rel
        if stat.S_ISREG(want.st_mode):
            assert have.st_size == want.st_size, rel
            assert have.st_nlink == want.st_nlink, rel
            files.append(rel)
        if stat.S_ISDIR(want.st_mode):
            assert have.st_nlink == want.st_nlink, rel  # 2 + subdirectories
    hard_a, hard_b = b"sub/f3", b"sub/deep/hard"
    assert got[hard_a].st_ino == got[hard_b].st_ino and got[hard_a].st_nlink == 2
    assert got[b"sub/f0"].st_ino != got[b"sub/f1"].st_ino
    rnd = random.Random(7)
    rnd.shuffle(files)
    for rel in files:
        with open(os.path.join(os.fsencode(shown), rel), "rb") as f:
            data = f.read()
        with open(os.path.join(os.fsencode(source), rel), "rb") as f:
            assert data == f.read(), rel
    big = (source / "big.bin").read_bytes()
    with open(shown / "big.bin", "rb", buffering=0) as f:
        for _ in range(40):
            offset = rnd.randrange(len(big))
            length = rnd.randrange(1, 400_000)
            assert os.pread(f.fileno(), length, offset) == big[offset : offset + length], (offset, length)


def _no_lock_left(pv, url: str) -> None:
    """The mount's shared lock is gone: a command that needs the exclusive lock gets it without waiting."""
    pv("compact", url, "--dry-run", "--lock-wait", "0")


def test_mount_shows_every_archive_as_the_tree_backed_up(fuse, pv, any_backend_url, tmp_path) -> None:
    source = make_tree(tmp_path / "src")
    url = any_backend_url
    pv("init", url)
    pv("create", f"{url}::first", source)
    (source / "sub" / "f4").write_bytes(b"changed after the first archive")
    os.utime(source / "sub" / "f4", ns=(1_700_000_000_000_000_001, 1_700_000_000_000_000_001))
    pv("create", f"{url}::second", source)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    inside = str(source).lstrip("/")
    with mounted(url, mountpoint=mnt) as proc:
        assert sorted(os.listdir(mnt)) == ["first", "second"]
        listing = subprocess.run(["ls", "-lR", str(mnt)], capture_output=True, timeout=120)
        assert listing.returncode == 0, listing.stderr
        assert b"big.bin" in listing.stdout and b"note.txt" in listing.stdout and b"-> ../big.bin" in listing.stdout
        assert_same_tree(source, mnt / "second" / inside)
        assert (mnt / "first" / inside / "sub" / "f4").read_bytes() != b"changed after the first archive"
        assert (mnt / "first" / inside / "sub" / "f4").stat().st_size == 300_001
        with pytest.raises(OSError):
            (mnt / "second" / inside / "new").write_bytes(b"read-only")
        _stop(proc, signal.SIGTERM, mnt)
    _no_lock_left(pv, url)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_one_archive_at_the_root_and_a_clean_stop_on_signals(fuse, pv, tmp_path, signum) -> None:
    source = make_tree(tmp_path / "src")
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    pv("create", f"{url}::only", source)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with mounted(f"{url}::only", mountpoint=mnt) as proc:
        assert_same_tree(source, mnt / str(source).lstrip("/"))
        _stop(proc, signum, mnt)
    _no_lock_left(pv, url)


def test_without_foreground_it_returns_once_mounted_and_ends_with_the_unmount(fuse, pv, tmp_path) -> None:
    source = make_tree(tmp_path / "src")
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    pv("create", f"{url}::a", source)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        done = subprocess.run(
            cli_command("mount", url, mnt), env=dict(os.environ), capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        assert (done.stdout, done.stderr) == ("", "")
        assert os.path.ismount(mnt)  # mounted before the command returned
        assert (mnt / "a" / str(source).lstrip("/") / "sub" / "deep" / "note.txt").read_bytes() == b"deep\n"
        subprocess.run(["fusermount3", "-u", str(mnt)], check=True, capture_output=True)
        # the detached process ends with the unmount and releases its lock
        deadline = time.monotonic() + 30
        while True:
            result = pv("compact", url, "--dry-run", "--lock-wait", "0", expect=None)
            if result.rc == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert result.rc == 0, result.err
    finally:
        _force_unmount(mnt)


@pytest.mark.slow
def test_mount_on_localstack_too(fuse, pv, localstack_endpoint, make_s3_url, tmp_path) -> None:
    """The brief's LocalStack run of the whole comparison (any_backend_url covers it in make test; this
    names it, with a REPO::ARCHIVE mount)."""
    source = make_tree(tmp_path / "src")
    url = make_s3_url(localstack_endpoint)
    pv("init", url)
    pv("create", f"{url}::ls", source)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with mounted(f"{url}::ls", mountpoint=mnt) as proc:
        assert_same_tree(source, mnt / str(source).lstrip("/"))
        _stop(proc, signal.SIGINT, mnt)


# --- expected failures: one line, exit 2, nothing mounted -------------------------------------------------


def _one_line_failure(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("packvault: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_missing_libfuse_is_one_line_naming_the_package(pv, tmp_path) -> None:
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "FUSE_LIBRARY_PATH"}
    env["FUSE_LIBRARY_NAME"] = "packvault-test-no-such-library"  # mfusepy's library lookup finds nothing
    for extra in ([], ["--foreground"]):
        result = subprocess.run(cli_command("mount", url, mnt, *extra), env=env, capture_output=True, text=True)
        _one_line_failure(result, "libfuse", "fuse3", "apt-get install fuse3")
        assert not os.path.ismount(mnt)


def test_bad_mount_points_and_archives_fail_in_one_line(fuse, pv, tmp_path) -> None:
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    (tmp_path / "file").write_bytes(b"")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ)
    run = lambda *args: subprocess.run(cli_command("mount", *args), env=env, capture_output=True, text=True)  # noqa: E731
    _one_line_failure(run(url, tmp_path / "missing"), "not a directory", "mkdir")
    _one_line_failure(run(url, tmp_path / "file"), "not a directory")
    for extra in ([], ["--foreground"]):
        _one_line_failure(run(f"{url}::nope", mnt, *extra), "archive 'nope' not found")
        assert not os.path.ismount(mnt)
    _one_line_failure(run(f"file://{tmp_path / 'nothing-here'}", mnt), "no repository")
    with mounted(url, mountpoint=mnt):
        _one_line_failure(run(url, mnt), "already a mount point", "fusermount3 -u")


def test_an_unreadable_chunk_is_eio_for_its_file_only_and_a_warning(fuse, pv, tmp_path) -> None:
    from packvault.repository.repository import Repository
    from tests.archive.crafted import PASSPHRASE

    source = make_tree(tmp_path / "src")
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    pv("create", f"{url}::a", source)
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock=None)
    with repo:
        data = (source / "sub" / "f4").read_bytes()
        # The cut points are keyed by the repository's chunker seed: 300,001 bytes is one chunk for most keys,
        # two for a few, so damage the file's first chunk as this repository cut it.
        offset, length = next(repo.chunker().cut_points(data))
        loc = repo.index.get(repo.chunk_id(data[offset : offset + length]))
    (pack,) = (tmp_path / "repo").rglob(loc.pack)
    damaged = bytearray(pack.read_bytes())
    damaged[loc.offset + loc.size // 2] ^= 0x40
    pack.write_bytes(bytes(damaged))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    shown = mnt / "a" / str(source).lstrip("/")
    with mounted(url, mountpoint=mnt) as proc:
        with pytest.raises(OSError) as info:
            (shown / "sub" / "f4").read_bytes()
        assert info.value.errno == errno.EIO
        assert (shown / "sub" / "f3").read_bytes() == (source / "sub" / "f3").read_bytes()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err  # served, with warnings
    assert "sub/f4" in err and "unreadable" in err and "Traceback" not in err
