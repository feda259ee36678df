"""Backup -> restore round trips over generated trees (issue 2): bit-exact, metadata included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.cli import tree_snapshot

NAME = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=12
    ),
    st.binary(min_size=1, max_size=8).map(lambda b: b.replace(b"/", b"_").replace(b"\x00", b"_")),
).filter(lambda n: n not in ("." , "..", b".", b".."))

FILE_CONTENT = st.one_of(
    st.just(b""),
    st.binary(max_size=2000),
    st.integers(min_value=1, max_value=3_000_000).map(lambda n: os.urandom(n)),
    st.integers(min_value=1, max_value=5_000_000).map(lambda n: b"\0" * n),  # sparse candidates
)


def _fs(name) -> bytes:
    return name if isinstance(name, bytes) else name.encode("utf-8")


@st.composite
def trees(draw):
    entries = draw(
        st.lists(
            st.tuples(
                st.lists(NAME, min_size=1, max_size=3),
                st.sampled_from(["file", "file", "file", "symlink", "hardlink", "dir", "fifo"]),
                FILE_CONTENT,
                st.sampled_from([0o644, 0o600, 0o755, 0o444, 0o700]),
                st.integers(min_value=0, max_value=2_000_000_000 * 10**9),
            ),
            min_size=1,
            max_size=12,
        )
    )
    return entries


def build(root: Path, entries) -> None:
    root.mkdir()
    rootb = os.fsencode(root)
    files: list[bytes] = []
    for parts, kind, content, mode, mtime in entries:
        path = os.path.join(rootb, *[_fs(p) for p in parts])
        parent = os.path.dirname(path)
        try:
            os.makedirs(parent, exist_ok=True)
        except (FileExistsError, NotADirectoryError, FileNotFoundError):  # a file or a dangling symlink is there
            continue
        if os.path.lexists(path):
            continue
        if kind == "file":
            with open(path, "wb") as f:
                f.write(content)
            os.chmod(path, mode)
            os.utime(path, ns=(mtime, mtime))
            files.append(path)
        elif kind == "symlink":
            os.symlink(b"../target-" + _fs(parts[-1])[:5], path)
        elif kind == "hardlink" and files:
            os.link(files[0], path)
        elif kind == "dir":
            os.mkdir(path)
        elif kind == "fifo":
            os.mkfifo(path)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=trees())
def test_generated_trees_round_trip(entries, pv, tmp_path_factory):
    base = tmp_path_factory.mktemp("rt")
    src = base / "src"
    build(src, entries)
    repo = base / "repo"
    pv("init", repo, "--pack-size", "1M")
    pv("create", f"{repo}::a", src)
    pv("extract", f"{repo}::a", "--target", base / "out")
    restored = base / "out" / str(src).lstrip("/")
    assert tree_snapshot(restored) == tree_snapshot(src)


def test_sparse_file_restored_sparse(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    sparse = src / "disk.img"
    with open(sparse, "wb") as f:
        f.truncate(64 * 1024 * 1024)
        f.seek(32 * 1024 * 1024)
        f.write(b"data in the middle")
    pv("init", tmp_path / "repo")
    pv("create", f"{tmp_path}/repo::a", src)
    pv("extract", f"{tmp_path}/repo::a", "--target", tmp_path / "out")
    out = tmp_path / "out" / str(sparse).lstrip("/")
    assert out.read_bytes() == sparse.read_bytes()
    assert out.stat().st_blocks * 512 < 8 * 1024 * 1024  # holes, not 64 MiB of written zeros


def test_metadata_and_special_files(pv, tmp_path):
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    f = src / "dir" / "file"
    f.write_bytes(b"hello")
    os.chmod(f, 0o640)
    os.utime(f, ns=(1_600_000_000_123_456_789, 1_500_000_000_987_654_321))
    os.mkfifo(src / "fifo")
    os.symlink("dir/file", src / "link")
    os.utime(src / "link", ns=(1_300_000_000_000_000_000, 1_350_000_000_000_000_000), follow_symlinks=False)
    os.link(f, src / "hard")
    bad = os.path.join(os.fsencode(src), b"latin1-\xe9\xff")
    with open(bad, "wb") as fh:
        fh.write(b"odd name")
    try:
        os.setxattr(f, "user.packvault", b"xattr value")
        has_xattr = True
    except OSError:
        has_xattr = False
    os.utime(src / "dir", ns=(1_400_000_000_000_000_001, 1_400_000_000_000_000_001))
    pv("init", tmp_path / "repo")
    pv("create", f"{tmp_path}/repo::a", src)
    pv("extract", f"{tmp_path}/repo::a", "--target", tmp_path / "out")
    out = tmp_path / "out" / str(src).lstrip("/")
    rf = out / "dir" / "file"
    assert rf.stat().st_atime_ns == 1_600_000_000_123_456_789  # before anything reads it
    link = os.lstat(out / "link")  # a link records no atime (readlink moves it): restored with its mtime
    assert (link.st_mtime_ns, link.st_atime_ns) == (1_350_000_000_000_000_000,) * 2
    assert tree_snapshot(out) == tree_snapshot(src)
    assert rf.stat().st_mtime_ns == 1_500_000_000_987_654_321
    assert stat.S_ISFIFO(os.lstat(out / "fifo").st_mode)
    assert os.lstat(out / "hard").st_ino == rf.stat().st_ino
    assert (out / "dir").stat().st_mtime_ns == 1_400_000_000_000_000_001
    assert Path(os.fsdecode(os.path.join(os.fsencode(out), b"latin1-\xe9\xff"))).read_bytes() == b"odd name"
    if has_xattr:
        assert os.getxattr(rf, "user.packvault") == b"xattr value"
