"""Restore never writes outside ``--target`` (issue 14, item 4): not through symlinks in the target, not through
symlinks the archive itself creates, not by names that climb out; a bad item is skipped with a warning and
the rest of the archive is restored."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from packvault.archive import items as it
from tests.archive.crafted import item, write_archive
from tests.support.restore_paths import restore_path  # noqa: F401  (autouse: both restore paths)


@pytest.fixture
def layout(pv, tmp_path):
    """A repository, an empty target and, beside it, an outside directory with a file that must not change."""
    repo = tmp_path / "repo"
    pv("init", repo)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o755)
    (outside / "secret").write_bytes(b"outside, untouched")
    os.utime(outside, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    return repo, tmp_path / "target", outside


def outside_state(outside: Path) -> dict:
    st = os.stat(outside)
    return {
        "names": sorted(os.listdir(outside)),
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime_ns,
        "secret": (outside / "secret").read_bytes(),
        "secret_links": os.stat(outside / "secret").st_nlink,
        "secret_mode": stat.S_IMODE(os.stat(outside / "secret").st_mode),
    }


def extract(pv, repo: Path, target: Path, *paths: str):
    """Run extract; the exit code is asserted by the test after what matters most, the outside directory."""
    return pv("extract", f"{repo}::crafted", *paths, "--target", target, expect=None)


def test_file_under_a_symlink_the_archive_made(pv, layout):
    repo, target, outside = layout
    before = outside_state(outside)
    write_archive(
        str(repo),
        "crafted",
        [
            (item("d", "a"), None),
            (item("l", "a/link", l=os.fsencode(outside)), None),
            (item("f", "a/link/secret"), b"overwritten"),
            (item("f", "a/link/new"), b"planted"),
            (item("f", "a/fine"), b"fine"),
        ],
    )
    result = extract(pv, repo, target)
    assert outside_state(outside) == before
    assert (target / "a" / "link").is_symlink()
    assert (target / "a" / "fine").read_bytes() == b"fine"
    assert "a/link/secret" in result.err and "not a directory" in result.err and "Traceback" not in result.err
    assert result.rc == 1, result.err



def test_new_directory_under_a_symlink(pv, layout):
    repo, target, outside = layout
    before = outside_state(outside)
    write_archive(
        str(repo),
        "crafted",
        [
            (item("d", "a"), None),
            (item("l", "a/link", l=os.fsencode(outside)), None),
            (item("d", "a/link/newdir", m=0o040777), None),
            (item("f", "a/link/newdir/file"), b"planted"),
        ],
    )
    result = extract(pv, repo, target)
    assert outside_state(outside) == before
    assert not (outside / "newdir").exists()
    assert result.rc == 1, result.err



def test_chmod_of_an_outside_directory(pv, layout):
    """A directory item at the path of a symlink the archive made: its mode and times go to a new real
    directory, never through the link."""
    repo, target, outside = layout
    before = outside_state(outside)
    write_archive(
        str(repo),
        "crafted",
        [
            (item("d", "a"), None),
            (item("l", "a/link", l=os.fsencode(outside)), None),
            (item("d", "a/link", m=0o040777, mt=42), None),
        ],
    )
    result = extract(pv, repo, target)
    assert outside_state(outside) == before
    restored = target / "a" / "link"
    assert restored.is_dir() and not restored.is_symlink()
    assert stat.S_IMODE(os.lstat(restored).st_mode) == 0o777
    assert result.rc == 0, result.err



def test_relative_symlink_chain(pv, layout):
    repo, target, outside = layout
    before = outside_state(outside)
    # target/a/l1 -> l2 -> ../../outside (target/a/../../outside is the outside directory)
    write_archive(
        str(repo),
        "crafted",
        [
            (item("d", "a"), None),
            (item("l", "a/l1", l=b"l2"), None),
            (item("l", "a/l2", l=b"../../outside"), None),
            (item("f", "a/l1/secret"), b"overwritten"),
            (item("d", "a/l1/sub"), None),
        ],
    )
    result = extract(pv, repo, target)
    assert outside_state(outside) == before
    assert os.readlink(target / "a" / "l1") == "l2"
    assert result.rc == 1, result.err



def test_hardlink_to_an_outside_file(pv, layout):
    """Through a symlink or by a name that climbs out: no hardlink of an outside file appears in the target."""
    repo, target, outside = layout
    before = outside_state(outside)
    write_archive(
        str(repo),
        "crafted",
        [
            (item("d", "a"), None),
            (item("l", "a/link", l=os.fsencode(outside)), None),
            (item("h", "a/via-symlink", h=b"a/link/secret"), None),
            (item("h", "a/via-dotdot", h=b"../outside/secret"), None),
            (item("h", "a/absolute", h=os.fsencode(outside / "secret").lstrip(b"/")), None),
            (item("f", "a/fine"), b"fine"),
        ],
    )
    result = extract(pv, repo, target)
    assert outside_state(outside) == before  # st_nlink included: no new link anywhere
    for name in ("via-symlink", "via-dotdot", "absolute"):
        assert not (target / "a" / name).exists(), name
    assert (target / "a" / "fine").read_bytes() == b"fine"
    assert "a/via-dotdot" in result.err and "'..'" in result.err
    assert result.rc == 1, result.err



def test_symlink_already_in_the_target_is_not_followed(pv, layout):
    repo, target, outside = layout
    before = outside_state(outside)
    (target / "a").mkdir(parents=True)
    (target / "a" / "link").symlink_to(outside)
    write_archive(str(repo), "crafted", [(item("f", "a/link/secret"), b"overwritten"), (item("f", "a/x"), b"x")])
    # only a PATH below the link is extracted: its parent directories are implied, not items
    result = extract(pv, repo, target, "a/link/secret")
    assert outside_state(outside) == before
    assert "not restored" in result.err
    assert result.rc == 1, result.err



def test_dotdot_item_is_skipped_and_the_rest_restored(pv, layout):
    repo, target, outside = layout
    before = outside_state(outside)
    write_archive(
        str(repo),
        "crafted",
        [
            (item("f", "../outside/secret"), b"overwritten"),
            (item("f", "/abs"), b"absolute"),
            (item("d", "d"), None),
            (item("f", "d/ok"), b"restored"),
        ],
    )
    result = extract(pv, repo, target)
    assert outside_state(outside) == before
    assert (target / "d" / "ok").read_bytes() == b"restored"
    assert "../outside/secret" in result.err and "unsafe" in result.err
    assert "Traceback" not in result.err
    assert "2 entries not restored" in result.err
    assert result.rc == 1, result.err



def test_symlinked_parent_in_the_backed_up_tree(pv, tmp_path):
    """Without crafting: ``create /srv /srv/data/file.txt`` where /srv/data is a symlink stores both the link
    and the file below it; restoring into an empty directory must not touch the live file the link points at."""
    srv = tmp_path / "srv"
    live = tmp_path / "live"
    (live / "data").mkdir(parents=True)
    (live / "data" / "file.txt").write_bytes(b"live v1")
    srv.mkdir()
    (srv / "data").symlink_to(live / "data")
    (srv / "other").write_bytes(b"other")
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", srv, srv / "data" / "file.txt")
    (live / "data" / "file.txt").write_bytes(b"live v2, written after the backup")
    target = tmp_path / "empty"
    result = pv("extract", f"{repo}::a", "--target", target, expect=None)
    assert (live / "data" / "file.txt").read_bytes() == b"live v2, written after the backup"
    restored = target / str(srv).lstrip("/")
    assert (restored / "data").is_symlink()
    assert (restored / "other").read_bytes() == b"other"
    assert "data/file.txt" in result.err
    assert result.rc == 1, result.err



@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"t": "f", "p": b"/etc/passwd"}, it.UNSAFE_ABSOLUTE),
        ({"t": "f", "p": b"a/../../x"}, it.UNSAFE_DOTDOT),
        ({"t": "f", "p": b".."}, it.UNSAFE_DOTDOT),
        ({"t": "f", "p": b"a//b"}, it.UNSAFE_EMPTY),
        ({"t": "f", "p": b"a/"}, it.UNSAFE_EMPTY),
        ({"t": "f", "p": b""}, it.UNSAFE_EMPTY),
        ({"t": "f", "p": b"a/./b"}, it.UNSAFE_DOT),
        ({"t": "f", "p": b"."}, it.UNSAFE_DOT),
        ({"t": "f", "p": b"a\0b"}, it.UNSAFE_NUL),
        ({"t": "f", "p": "a/str"}, it.UNSAFE_NOT_BYTES),
        ({"t": "h", "p": b"a/l", "h": b"../x"}, "hardlink target: " + it.UNSAFE_DOTDOT),
        ({"t": "h", "p": b"a/l", "h": b"/x"}, "hardlink target: " + it.UNSAFE_ABSOLUTE),
        ({"t": "h", "p": b"a/l"}, "hardlink target: " + it.UNSAFE_NOT_BYTES),
        ({"t": "h", "p": b"a/l", "h": b"a/l"}, "hardlink to itself"),
        ({"t": "l", "p": b"a/l", "l": b""}, "symlink target is empty, not bytes or holds a NUL byte"),
        ({"t": "s", "p": b"a/sock"}, "unknown item type 's'"),
    ],
)
def test_unsafe_item_reason_flags(fields, reason):
    assert it.unsafe_item_reason(fields) == reason


@pytest.mark.parametrize(
    "fields",
    [
        {"t": "f", "p": b"a/b/c.txt"},
        {"t": "d", "p": b"."},  # the root of a backup of "/"
        {"t": "f", "p": b"..hidden/...dots"},
        {"t": "f", "p": b"latin1-\xe9\xff"},
        {"t": "l", "p": b"a/l", "l": b"/etc/alternatives/x"},  # a link may point anywhere; it is never followed
        {"t": "l", "p": b"a/l", "l": b"../../up"},
        {"t": "h", "p": b"a/l", "h": b"a/b"},
    ],
)
def test_unsafe_item_reason_accepts(fields):
    assert it.unsafe_item_reason(fields) is None
