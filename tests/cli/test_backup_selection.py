"""What a backup selects beyond PATHs and exclude patterns (issue 19): lists of paths, caches, marked
directories, large files."""

# ruff: noqa: F811

from __future__ import annotations

import json
import os

import pytest

from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)


@pytest.fixture(params=["file", pytest.param("moto", marks=pytest.mark.slow)])
def url(request, tmp_path) -> str:
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    request.getfixturevalue("s3_env")
    return request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))


def _paths(pv, url: str, archive: str) -> set[str]:
    return {item["path"] for item in json.loads(pv("list", f"{url}::{archive}", "--json").out)["items"]}


def _rel(path) -> str:
    return str(path).lstrip("/")


def test_files_from_and_files_from0(pv, url, tmp_path):
    pv("init", url)
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "c", "new\nline"):
        (src / name).write_text(name)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a comment\n{src / 'a'}\n\n{src / 'b'}\n")
    pv("create", f"{url}::lines", "--files-from", listing)
    assert _paths(pv, url, "lines") == {_rel(src / "a"), _rel(src / "b")}
    nul = tmp_path / "list0"
    nul.write_bytes(os.fsencode(src / "new\nline") + b"\0" + os.fsencode(src / "c") + b"\0")
    pv("create", f"{url}::nul", "--files-from0", nul, src / "a")
    assert _paths(pv, url, "nul") == {_rel(src / "a"), _rel(src / "c"), _rel(src / "new\nline")}
    result = pv("create", f"{url}::none", "--files-from", tmp_path / "missing.txt", expect=2)
    assert "missing.txt" in result.err and len(result.err.strip().splitlines()) == 1


def test_exclude_caches_if_present_and_larger_than(pv, url, tmp_path):
    pv("init", url)
    src = tmp_path / "src"
    (src / "cache").mkdir(parents=True)
    (src / "cache" / "CACHEDIR.TAG").write_bytes(b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache\n")
    (src / "cache" / "blob").write_bytes(b"x" * 1000)
    (src / "fake-cache").mkdir()
    (src / "fake-cache" / "CACHEDIR.TAG").write_bytes(b"not the signature")
    (src / "fake-cache" / "kept").write_bytes(b"kept")
    (src / "build").mkdir()
    (src / "build" / ".nobackup").write_bytes(b"")
    (src / "build" / "out.o").write_bytes(b"object")
    (src / "big.iso").write_bytes(b"\0" * (3 * 1024 * 1024))
    (src / "small.txt").write_bytes(b"small")
    result = pv(
        "create",
        f"{url}::sel",
        src,
        "--exclude-caches",
        "--exclude-if-present",
        ".nobackup",
        "--exclude-larger-than",
        "1M",
    )
    assert "cache directory" in result.err and ".nobackup" in result.err and "larger than" in result.err
    stored = _paths(pv, url, "sel")
    r = _rel(src)
    assert {f"{r}/cache", f"{r}/cache/CACHEDIR.TAG", f"{r}/build", f"{r}/build/.nobackup"} <= stored
    assert {f"{r}/fake-cache/kept", f"{r}/small.txt"} <= stored
    assert not {f"{r}/cache/blob", f"{r}/build/out.o", f"{r}/big.iso"} & stored
    pv("create", f"{url}::all", src)  # without the options everything is there
    assert {f"{r}/cache/blob", f"{r}/build/out.o", f"{r}/big.iso"} <= _paths(pv, url, "all")
    pv("create", f"{url}::bad", src, "--exclude-larger-than", "lots", expect=2)
