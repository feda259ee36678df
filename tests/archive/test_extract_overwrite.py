"""Restore never destroys what it does not replace (issue 15): every pair of (archive type, existing type), the
``--overwrite`` modes and ``--delete``."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.archive.crafted import MTIME, item, write_archive
from tests.support.restore_paths import restore_path  # noqa: F401  (autouse: both restore paths)

TYPES = ["file", "dir", "symlink", "hardlink", "fifo"]
KiB = 1024


def archive_items(kind: str) -> list:
    """An archive whose entry ``d/x`` has the given type (``d/src`` is the hardlink's target, ``d/zafter`` shows
    that restore goes on)."""
    entries: list = [(item("d", "d"), None), (item("f", "d/src"), b"archived source")]
    if kind == "file":
        entries.append((item("f", "d/x"), b"archived file"))
    elif kind == "dir":
        entries += [(item("d", "d/x"), None), (item("f", "d/x/child"), b"archived child")]
    elif kind == "symlink":
        entries.append((item("l", "d/x", l=b"archived-link-target"), None))
    elif kind == "hardlink":
        entries.append((item("h", "d/x", h=b"d/src"), None))
    else:
        entries.append((item("p", "d/x"), None))
    entries.append((item("f", "d/zafter"), b"after"))
    return entries


def make_existing(target: Path, kind: str, *, empty_dir: bool = False) -> Path:
    """The entry ``x`` of the given type in ``target/d``; returns ``target/d``."""
    base = target / "d"
    base.mkdir(parents=True)
    x = base / "x"
    if kind == "file":
        x.write_bytes(b"existing file")
    elif kind == "dir":
        x.mkdir()
        if not empty_dir:
            (x / "inner").write_bytes(b"existing inner file")
    elif kind == "symlink":
        x.symlink_to("existing-link-target")
    elif kind == "hardlink":
        x.write_bytes(b"existing hardlinked")
        os.link(x, base / "keep")
    else:
        os.mkfifo(x)
    return base


def kind_of(path: Path) -> str:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "file"


def assert_archived(target: Path, kind: str) -> None:
    x = target / "x"
    if kind == "file":
        assert kind_of(x) == "file" and x.read_bytes() == b"archived file"
    elif kind == "dir":
        assert kind_of(x) == "dir" and (x / "child").read_bytes() == b"archived child"
    elif kind == "symlink":
        assert os.readlink(x) == "archived-link-target"
    elif kind == "hardlink":
        assert kind_of(x) == "file" and os.lstat(x).st_ino == os.lstat(target / "src").st_ino
        assert x.read_bytes() == b"archived source"
    else:
        assert kind_of(x) == "fifo"


@pytest.fixture
def repo(pv, tmp_path) -> Path:
    location = tmp_path / "repo"
    pv("init", location)
    return location


@pytest.mark.parametrize("existing", TYPES)
@pytest.mark.parametrize("archived", TYPES)
def test_type_conflicts(pv, repo, tmp_path, archived, existing):
    write_archive(str(repo), "a", archive_items(archived))
    base = make_existing(tmp_path / "target", existing)
    result = pv("extract", f"{repo}::a", "--target", tmp_path / "target", expect=None)
    assert "Traceback" not in result.err
    assert (base / "zafter").read_bytes() == b"after"
    if existing == "hardlink":  # the other name of the replaced file keeps its bytes: never written through
        assert (base / "keep").read_bytes() == b"existing hardlinked"
    if existing == "dir" and archived != "dir":  # a non-empty directory is never removed without --delete
        assert result.rc == 1, result.err
        assert kind_of(base / "x") == "dir"
        assert (base / "x" / "inner").read_bytes() == b"existing inner file"
        assert "non-empty directory" in result.err
        assert not [n for n in os.listdir(base) if n.startswith(".packvault-restore-")]
        return
    assert result.rc == 0, result.err
    assert_archived(base, archived)
    if existing == "dir":  # merged into
        assert (base / "x" / "inner").read_bytes() == b"existing inner file"
    assert not [n for n in os.listdir(base) if n.startswith(".packvault-restore-")]


@pytest.mark.parametrize("existing", TYPES)
@pytest.mark.parametrize("archived", TYPES)
def test_type_conflicts_with_delete(pv, repo, tmp_path, archived, existing):
    """With --delete the target mirrors the archive: the non-empty directory goes, and so does what the
    archive does not have (``keep``, ``inner``)."""
    write_archive(str(repo), "a", archive_items(archived))
    base = make_existing(tmp_path / "target", existing)
    (base / "stray").write_bytes(b"not in the archive")
    pv("extract", f"{repo}::a", "--target", tmp_path / "target", "--delete")
    assert_archived(base, archived)
    assert sorted(os.listdir(base)) == ["src", "x", "zafter"]
    if archived == "dir":
        assert os.listdir(base / "x") == ["child"]


@pytest.mark.parametrize("archived", [t for t in TYPES if t != "dir"])
def test_empty_directory_in_the_way_is_replaced(pv, repo, tmp_path, archived):
    write_archive(str(repo), "a", archive_items(archived))
    base = make_existing(tmp_path / "target", "dir", empty_dir=True)
    pv("extract", f"{repo}::a", "--target", tmp_path / "target")
    assert_archived(base, archived)


def test_a_file_that_fails_leaves_the_existing_one(pv, tmp_path):
    """The new version replaces the old one only when complete: a damaged chunk keeps the old file."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "precious").write_bytes(os.urandom(300 * KiB))
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    packs = sorted(p for p in (repo / "packs" / "data").rglob("*") if p.is_file())
    raw = bytearray(packs[0].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    packs[0].write_bytes(bytes(raw))
    restored = tmp_path / "out" / str(src).lstrip("/")
    restored.mkdir(parents=True)
    (restored / "precious").write_bytes(b"the only copy left")
    result = pv("extract", f"{repo}::a", "--target", tmp_path / "out", expect=1)
    assert "precious" in result.err and "not restored" in result.err
    assert (restored / "precious").read_bytes() == b"the only copy left"
    assert os.listdir(restored) == ["precious"]


def _existing_files(target: Path) -> None:
    target.mkdir()
    same = target / "same"  # same size and mtime as archived, other bytes: if-changed keeps it
    same.write_bytes(b"SAME-SIZE")
    os.utime(same, ns=(MTIME, MTIME))
    older = target / "older"
    older.write_bytes(b"older")
    os.utime(older, ns=(MTIME - 10**9, MTIME - 10**9))
    newer = target / "newer"
    newer.write_bytes(b"newer")
    os.utime(newer, ns=(MTIME + 10**9, MTIME + 10**9))
    (target / "link").symlink_to("same-target")


MODES = {
    # mode: which of same/older/newer/link keep their existing content
    "always": set(),
    "if-changed": {"same", "link"},
    "if-newer": {"same", "newer", "link"},
    "never": {"same", "older", "newer", "link"},
}


@pytest.mark.parametrize("mode", list(MODES))
def test_overwrite_modes(pv, repo, tmp_path, mode):
    write_archive(
        str(repo),
        "a",
        [
            (item("f", "fresh"), b"fresh"),
            (item("l", "link", l=b"same-target"), None),
            (item("f", "newer"), b"archived newer"),
            (item("f", "older"), b"archived older"),
            (item("f", "same"), b"same-size"),
        ],
    )
    target = tmp_path / "target"
    _existing_files(target)
    result = pv("extract", f"{repo}::a", "--target", target, "--overwrite", mode, "--json")
    assert (target / "fresh").read_bytes() == b"fresh"  # new entries are always restored
    kept = {
        name
        for name, old in (("same", b"SAME-SIZE"), ("older", b"older"), ("newer", b"newer"))
        if (target / name).read_bytes() == old
    }
    link_inode_kept = os.readlink(target / "link") == "same-target"
    assert link_inode_kept
    assert kept == MODES[mode] - {"link"}
    import json

    assert json.loads(result.out)["stats"]["skipped"] == len(MODES[mode])


def test_delete_stays_inside_the_restored_subtree(pv, repo, tmp_path):
    write_archive(
        str(repo),
        "a",
        [
            (item("d", "top"), None),
            (item("d", "top/sub"), None),
            (item("f", "top/sub/kept"), b"archived"),
            (item("f", "other/file"), b"other"),
        ],
    )
    target = tmp_path / "target"
    (target / "top" / "sub" / "gone-dir" / "deep").mkdir(parents=True)
    (target / "top" / "sub" / "gone-file").write_bytes(b"x")
    (target / "top" / "gone-link").symlink_to(tmp_path)  # removed as a link, its target untouched
    (target / "beside").write_bytes(b"beside the restored subtree")
    (target / "other").mkdir()
    (target / "other" / "sibling").write_bytes(b"in an implied directory")
    pv("extract", f"{repo}::a", "top", "--target", target, "--delete")
    assert os.listdir(target / "top") == ["sub"]
    assert os.listdir(target / "top" / "sub") == ["kept"]
    assert (target / "beside").exists() and (target / "other" / "sibling").exists()
    assert tmp_path.exists() and (tmp_path / "repo").exists()
