"""Deduplication, files cache, tamper detection and user-facing errors of create/extract (issue 2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from packvault.archive import fsmeta

MiB = 1024 * 1024


def _create_json(pv, location: str, *paths) -> dict:
    return json.loads(pv("create", "--json", location, *paths).out)


def test_second_archive_of_same_tree_adds_almost_nothing(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(12 * MiB))
    (src / "text.txt").write_text("hello world\n" * 50_000)
    repo = tmp_path / "repo"
    pv("init", repo)
    first = _create_json(pv, f"{repo}::a", src)
    assert first["stats"]["deduplicated_size"] >= 12 * MiB
    second = _create_json(pv, f"{repo}::b", src, "--no-files-cache")
    assert second["stats"]["files_read"] == 2  # really read again, and still nothing new
    assert second["stats"]["deduplicated_size"] < 64 * 1024


def test_modified_large_file_adds_only_changed_chunks(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    data = bytearray(os.urandom(40 * MiB))
    (src / "big.bin").write_bytes(data)
    repo = tmp_path / "repo"
    pv("init", repo)
    _create_json(pv, f"{repo}::a", src)
    data[20 * MiB : 20 * MiB + 100] = os.urandom(100)
    (src / "big.bin").write_bytes(data)
    second = _create_json(pv, f"{repo}::b", src)
    # one or two ~1 MiB chunks around the edit (max chunk 4 MiB), not the 40 MiB file
    assert second["stats"]["deduplicated_size"] <= 8 * MiB
    assert second["stats"]["files_read"] == 1


def test_unchanged_rerun_reads_no_file_contents(pv, tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(30):
        (src / "d" / f"f{i}").write_bytes(os.urandom(1000 + i))
    repo = tmp_path / "repo"
    pv("init", repo)
    _create_json(pv, f"{repo}::a", src)
    opened: list = []
    real_open = fsmeta.open_source_file

    def counting_open(path):
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(fsmeta, "open_source_file", counting_open)
    second = _create_json(pv, f"{repo}::b", src)
    assert opened == []
    assert second["stats"]["files_unchanged"] == 30
    assert second["stats"]["bytes_read"] == 0
    # a touched file is read again, the others still are not
    (src / "d" / "f3").write_bytes(b"changed")
    third = _create_json(pv, f"{repo}::c", src)
    assert [os.path.basename(p) for p in opened] == [b"f3"]
    assert third["stats"]["files_read"] == 1


def _data_packs(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "packs" / "data").rglob("*") if p.is_file())


def test_flipped_byte_fails_the_affected_file_only(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 * MiB))
    (src / "b.bin").write_bytes(os.urandom(3 * MiB))
    repo = tmp_path / "repo"
    pv("init", repo, "--pack-size", "1M")
    pv("create", f"{repo}::a", src / "a.bin")
    packs_a = _data_packs(repo)  # hold a.bin's data only
    pv("create", f"{repo}::all", src)
    victim = packs_a[0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    victim.write_bytes(bytes(raw))
    result = pv("extract", f"{repo}::all", "--target", tmp_path / "out", expect=1)  # done, with warnings
    assert "a.bin" in result.err and "not restored" in result.err
    out = tmp_path / "out" / str(src).lstrip("/")
    assert not (out / "a.bin").exists()  # never a silent wrong restore
    assert (out / "b.bin").read_bytes() == (src / "b.bin").read_bytes()


def test_wrong_passphrase_is_one_clear_line(pv, tmp_path, monkeypatch):
    pv("init", tmp_path / "repo")
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "not the passphrase")
    result = pv("list", tmp_path / "repo", expect=2)
    assert result.err.strip().count("\n") == 0
    assert "wrong passphrase" in result.err and "Traceback" not in result.err


def test_missing_and_non_repository_paths(pv, tmp_path):
    result = pv("list", tmp_path / "nowhere", expect=2)
    assert "no repository" in result.err
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x").write_text("x")
    result = pv("list", tmp_path / "plain", expect=2)
    assert "not a Packvault repository" in result.err
    result = pv("init", tmp_path / "plain", expect=2)
    assert "not empty" in result.err
    result = pv("list", "ftp://host/x", expect=2)
    assert "unsupported repository URL" in result.err


def test_existing_archive_name_is_refused(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    pv("init", tmp_path / "repo")
    pv("create", f"{tmp_path}/repo::a", src)
    result = pv("create", f"{tmp_path}/repo::a", src, expect=2)
    assert "already exists" in result.err


@pytest.mark.parametrize("size", [3, 6 * MiB], ids=["small", "large"])  # large: the large-file thread
def test_file_vanishing_during_backup_warns_and_continues(pv, tmp_path, monkeypatch, size):
    """A file that disappears between listing and reading is a warning (exit 1), not an error."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "stays").write_text("fine")
    (src / "goes").write_bytes(os.urandom(size))
    real_open = fsmeta.open_source_file

    def vanishing_open(path):
        if os.path.basename(path) == b"goes":
            os.unlink(path)
        return real_open(path)

    monkeypatch.setattr(fsmeta, "open_source_file", vanishing_open)
    pv("init", tmp_path / "repo")
    result = pv("create", f"{tmp_path}/repo::a", src, expect=1)
    assert "vanished" in result.err
    listing = pv("list", f"{tmp_path}/repo::a", "--json-lines").out
    paths = [json.loads(line)["path"] for line in listing.splitlines()]
    assert any(p.endswith("/stays") for p in paths) and not any(p.endswith("/goes") for p in paths)


def test_key_export_import_and_passphrase_change(pv, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("key", "export", repo, tmp_path / "key.txt")
    for blob in (repo / "keys").iterdir():
        blob.unlink()
    assert "key is missing" in pv("list", repo, expect=2).err
    pv("key", "import", repo, tmp_path / "key.txt")
    pv("list", repo)
    monkeypatch.setenv("PACKVAULT_NEW_PASSPHRASE", "new secret")
    pv("key", "change-passphrase", repo)
    assert len(list((repo / "keys").iterdir())) == 1
    pv("list", repo, expect=2)
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "new secret")
    pv("list", repo)


def test_keyfile_mode_keeps_key_out_of_the_repository(pv, tmp_path, pv_env):
    repo = tmp_path / "repo"
    pv("init", repo, "--encryption", "keyfile")
    assert not (repo / "keys").exists() or not list((repo / "keys").iterdir())
    pv("list", repo)


def test_delete_and_undelete(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    pv("delete", f"{repo}::a")
    assert "a " not in pv("list", repo).out
    assert json.loads(pv("list", repo, "--deleted", "--json").out)["archives"][0]["name"] == "a"
    pv("undelete", f"{repo}::a")
    assert json.loads(pv("list", repo, "--json").out)["archives"][0]["name"] == "a"


def test_diff_reports_changes(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "same").write_text("same")
    (src / "changed").write_text("before")
    (src / "removed").write_text("x")
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    (src / "changed").write_text("after!")
    (src / "removed").unlink()
    (src / "added").write_text("new")
    assert json.loads(pv("diff", "--json", f"{repo}::a", "a").out)["changes"] == []
    pv("create", f"{repo}::b", src)
    changes = json.loads(pv("diff", "--json", f"{repo}::a", "b").out)["changes"]
    by_path = {c["path"].rsplit("/", 1)[-1]: c for c in changes}
    assert by_path["added"]["change"] == "added"
    assert by_path["removed"]["change"] == "removed"
    assert by_path["changed"]["change"] == "modified" and "content" in by_path["changed"]["what"]
    assert "same" not in by_path
