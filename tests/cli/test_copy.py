"""``packvault copy`` end to end: file -> file, file -> moto, moto -> LocalStack; shared-id and re-cut copies;
a second copy sends nothing; an interrupted copy is resumed (issue 19)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from packvault.maintenance.copy import ArchiveCopier, select_archives
from packvault.repository.repository import Repository
from packvault.repository.writer import RepositoryWriter
from tests.support.cli import tree_snapshot
from tests.support.packgate import gate_command, gate_env, wait_parked
from tests.support.settings import env_settings

KiB = 1024


@pytest.fixture(autouse=True)
def _no_other_passphrase(monkeypatch):
    monkeypatch.delenv("PACKVAULT_OTHER_PASSPHRASE", raising=False)
    monkeypatch.delenv("PACKVAULT_OTHER_PASSCOMMAND", raising=False)


def _tree(root: Path, seed: int) -> Path:
    rnd = random.Random(seed)
    (root / "sub").mkdir(parents=True)
    for i in range(6):
        (root / ("sub" if i % 2 else "") / f"f{i}.bin").write_bytes(rnd.randbytes(200 * KiB + i * 7919))
    (root / "text.txt").write_text("compressible line\n" * 20_000)
    (root / "empty").write_bytes(b"")
    os.symlink("text.txt", root / "link")
    os.link(root / "f0.bin", root / "sub" / "hard")
    return root


def _restored(pv, location: str, archive: str, target: Path, src: Path) -> dict:
    pv("extract", f"{location}::{archive}", "--target", target)
    return tree_snapshot(target / str(src).lstrip("/"))


def _copy(pv, *args) -> dict:
    return json.loads(pv("copy", "--json", *args).out)


def _ids(pv, location: str) -> dict[str, str]:
    return {a["name"]: a["id"] for a in json.loads(pv("list", "--json", location).out)["archives"]}


def test_recut_copy_file_to_file_restores_and_second_copy_sends_nothing(pv, tmp_path):
    src = _tree(tmp_path / "src", seed=1)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    pv("init", one, "--pack-size", "256K")
    pv("init", two, "--pack-size", "256K")
    pv("create", f"{one}::a", src)
    (src / "new.bin").write_bytes(random.Random(9).randbytes(100 * KiB))
    pv("create", f"{one}::b", src)

    first = _copy(pv, one, two)
    assert first["recut"] is True
    assert first["copied"] == ["a", "b"] and first["skipped"] == []
    assert first["chunks_new"] > 0
    assert _restored(pv, two, "a", tmp_path / "out-a", src) != tree_snapshot(src)  # a has no new.bin
    assert _restored(pv, two, "b", tmp_path / "out-b", src) == tree_snapshot(src)
    assert set(_ids(pv, two)) == {"a", "b"}
    assert set(_ids(pv, two).values()).isdisjoint(_ids(pv, one).values())  # re-cut: new archive ids

    again = _copy(pv, one, two)
    assert again["copied"] == [] and again["skipped"] == ["a", "b"]
    assert again["chunks_new"] == 0
    assert again["requests"]["destination"]["PUT"] <= 1  # the lock, nothing else
    assert json.loads(pv("check", two, "--json").out)["problems"] == []


def test_copy_named_archives_only(pv, tmp_path):
    src = _tree(tmp_path / "src", seed=2)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    pv("init", one)
    pv("init", two)
    pv("create", f"{one}::a", src)
    pv("create", f"{one}::b", src)
    assert _copy(pv, one, two, "b")["copied"] == ["b"]
    assert set(_ids(pv, two)) == {"b"}
    result = pv("copy", one, two, "nope", expect=2)
    assert "nope" in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1


class _Interrupted(Exception):
    pass


def _writer_failing_after(new_chunks: int):
    """A destination writer whose ``put_chunk`` raises once ``new_chunks`` new chunks were accepted."""

    class Failing(RepositoryWriter):
        accepted = 0

        def put_chunk(self, chunk_id, data, obj_type=0):
            if Failing.accepted >= new_chunks:
                raise _Interrupted("stopped part-way")
            new = super().put_chunk(chunk_id, data, obj_type)
            Failing.accepted += new
            return new

    return Failing


def _open(location: str, passphrase: str) -> Repository:
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: passphrase, lock="shared")
    return repo


def test_interrupted_copy_resumes_without_sending_stored_packs_again(pv, pv_env, tmp_path):
    src = _tree(tmp_path / "src", seed=3)
    one, two, fresh = str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "fresh")
    for location in (one, two, fresh):
        pv("init", location, "--pack-size", "64K")
    pv("create", f"{one}::a", src)
    full = _copy(pv, one, fresh)["chunks_new"]

    source, target = _open(one, pv_env["PACKVAULT_PASSPHRASE"]), _open(two, pv_env["PACKVAULT_PASSPHRASE"])
    try:
        copier = ArchiveCopier(source, target, writer_factory=_writer_failing_after(5))
        try:
            copier.run(select_archives(source, []))
        except _Interrupted:
            pass
        else:
            raise AssertionError("the copy was not interrupted")
    finally:
        target.close()
        source.close()
    assert _ids(pv, two) == {}  # no entry without all its chunks

    resumed = _copy(pv, one, two)
    assert resumed["copied"] == ["a"]
    assert resumed["chunks_new"] < full  # the packs stored before the interruption were indexed, not resent
    assert _restored(pv, two, "a", tmp_path / "out", src) == tree_snapshot(src)
    assert json.loads(pv("check", two, "--json").out)["problems"] == []


def test_shared_crypt_copy_keeps_ids_and_sends_only_missing_chunks(pv, tmp_path):
    src = _tree(tmp_path / "src", seed=4)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    pv("init", one, "--pack-size", "256K")
    pv("create", f"{one}::a", src)
    pv("init", two, "--copy-crypt-from", one)
    first = _copy(pv, one, two)
    assert first["recut"] is False and first["copied"] == ["a"]
    assert _ids(pv, two) == _ids(pv, one)  # metadata and item stream copied as chunks: the same archive id

    (src / "more.bin").write_bytes(random.Random(5).randbytes(300 * KiB))
    pv("create", f"{one}::b", src)
    second = _copy(pv, one, two)
    assert second["copied"] == ["b"] and second["skipped"] == ["a"]
    # only b's new file, its item stream and metadata: far less than the whole tree again
    assert 0 < second["bytes_new"] < first["bytes_new"] / 2
    assert _ids(pv, two) == _ids(pv, one)
    assert _restored(pv, two, "b", tmp_path / "out", src) == tree_snapshot(src)

    third = _copy(pv, one, two)
    assert third["copied"] == [] and third["chunks_new"] == 0
    assert third["requests"]["destination"]["PUT"] <= 1  # the lock, nothing else
    assert json.loads(pv("check", two, "--json").out)["problems"] == []


def test_shared_crypt_destination_deduplicates_a_backup_of_the_same_files(pv, tmp_path):
    src = _tree(tmp_path / "src", seed=6)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    pv("init", one)
    pv("init", two, "--copy-crypt-from", one, "--encryption", "keyfile")
    pv("create", f"{one}::a", src)
    _copy(pv, one, two)
    created = json.loads(pv("create", "--json", "--no-files-cache", f"{two}::direct", src).out)
    assert created["stats"]["chunks_new"] <= 2  # the same cut points and ids: only item stream and metadata


def test_copy_crypt_from_a_missing_repository_is_one_line(pv, tmp_path):
    result = pv("init", tmp_path / "two", "--copy-crypt-from", tmp_path / "nothing", expect=2)
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "two").exists()


@pytest.mark.parametrize("shared", [True, False], ids=["shared-ids", "recut"])
def test_copy_file_to_moto(pv, tmp_path, moto_endpoint, make_s3_url, shared):
    src = _tree(tmp_path / "src", seed=7)
    local, remote = str(tmp_path / "local"), make_s3_url(moto_endpoint)
    pv("init", local, "--pack-size", "256K")
    pv("create", f"{local}::a", src)
    pv("init", remote, "--pack-size", "256K", *(["--copy-crypt-from", local] if shared else []))
    first = _copy(pv, local, remote)
    assert first["recut"] is not shared and first["copied"] == ["a"]
    assert first["requests"]["destination"]["PUT"] >= 3  # packs, fragments, entry
    assert _restored(pv, remote, "a", tmp_path / "out", src) == tree_snapshot(src)
    again = _copy(pv, local, remote)
    assert again["skipped"] == ["a"] and again["chunks_new"] == 0
    assert again["requests"]["destination"]["PUT"] <= 1  # the lock, nothing else
    assert json.loads(pv("check", remote, "--json").out)["problems"] == []


@pytest.mark.localstack
def test_copy_moto_to_localstack(pv, tmp_path, moto_endpoint, localstack_endpoint, make_s3_url):
    src = _tree(tmp_path / "src", seed=8)
    moto, localstack = make_s3_url(moto_endpoint), make_s3_url(localstack_endpoint)
    pv("init", moto, "--pack-size", "256K")
    pv("create", f"{moto}::a", src)
    pv("init", localstack, "--copy-crypt-from", moto)
    first = _copy(pv, moto, localstack)
    assert first["recut"] is False and first["copied"] == ["a"]
    assert _ids(pv, localstack) == _ids(pv, moto)
    assert _restored(pv, localstack, "a", tmp_path / "out", src) == tree_snapshot(src)
    again = _copy(pv, moto, localstack)
    assert again["skipped"] == ["a"] and again["chunks_new"] == 0
    assert again["requests"]["destination"]["PUT"] <= 1


@pytest.mark.localstack
def test_recut_copy_moto_to_localstack(pv, tmp_path, moto_endpoint, localstack_endpoint, make_s3_url):
    src = _tree(tmp_path / "src", seed=9)
    moto, localstack = make_s3_url(moto_endpoint), make_s3_url(localstack_endpoint)
    pv("init", moto, "--pack-size", "256K")
    pv("create", f"{moto}::a", src)
    pv("init", localstack)
    assert _copy(pv, moto, localstack)["recut"] is True
    assert _restored(pv, localstack, "a", tmp_path / "out", src) == tree_snapshot(src)
    assert _copy(pv, moto, localstack)["chunks_new"] == 0


def test_a_different_archive_of_the_same_name_in_the_destination_is_a_warning(pv, tmp_path):
    src = _tree(tmp_path / "src", seed=10)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    pv("init", one)
    pv("create", f"{one}::a", src)
    pv("create", f"{one}::b", src)
    pv("init", two, "--copy-crypt-from", one)
    pv("create", f"{two}::a", src / "sub")  # the destination's own "a"
    result = pv("copy", one, two, expect=1)
    assert "'a'" in result.err and "Traceback" not in result.err
    assert "copied b" in result.out
    assert _ids(pv, two)["b"] == _ids(pv, one)["b"]
    assert _ids(pv, two)["a"] != _ids(pv, one)["a"]


@pytest.mark.slow
def test_sigterm_during_copy_then_rerun_resumes(pv, pv_env, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(11)
    total = 0
    for i in range(24):
        data = rnd.randbytes(2 * 1024 * KiB)
        (src / f"f{i:02d}").write_bytes(data)
        total += len(data)
    one, two = tmp_path / "one", tmp_path / "two"
    pv("init", one, "--pack-size", "1M")
    pv("create", f"{one}::a", src)
    pv("init", two, "--pack-size", "1M", "--copy-crypt-from", one)
    gate = tmp_path / "gate"
    env = {**os.environ, **pv_env, **gate_env(gate, after=8)}
    proc = subprocess.Popen(gate_command("copy", one, two), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_parked(gate, proc)  # 8 packs are stored and the uploads held: the copy is still running
    proc.send_signal(signal.SIGTERM)
    gate.touch()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err.decode() and "Traceback" not in err.decode()
    assert _ids(pv, two) == {}

    resumed = _copy(pv, one, two)
    assert resumed["copied"] == ["a"]
    assert resumed["bytes_new"] <= total - 6 * 1024 * KiB  # the packs stored before SIGTERM were indexed
    assert _restored(pv, two, "a", tmp_path / "out", src) == tree_snapshot(src)
    assert json.loads(pv("check", two, "--json").out)["problems"] == []


def test_source_with_its_own_passphrase(pv, tmp_path, monkeypatch):
    src = _tree(tmp_path / "src", seed=12)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "the source passphrase")
    pv("init", one)
    pv("create", f"{one}::a", src)
    monkeypatch.setenv("PACKVAULT_PASSPHRASE", "the offsite passphrase")
    refused = pv("init", two, "--copy-crypt-from", one, expect=2)  # the source does not open with it
    assert "passphrase" in refused.err and len(refused.err.strip().splitlines()) == 1
    monkeypatch.setenv("PACKVAULT_OTHER_PASSPHRASE", "the source passphrase")
    pv("init", two, "--copy-crypt-from", one)
    assert _copy(pv, one, two)["copied"] == ["a"]
    assert _restored(pv, two, "a", tmp_path / "out", src) == tree_snapshot(src)
    monkeypatch.delenv("PACKVAULT_OTHER_PASSPHRASE")
    result = pv("copy", one, two, expect=2)
    assert "passphrase" in result.err and len(result.err.strip().splitlines()) == 1


def test_an_archive_deleted_in_the_destination_is_not_copied_again(pv, tmp_path):
    src = _tree(tmp_path / "src", seed=13)
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    pv("init", one)
    pv("create", f"{one}::a", src)
    pv("create", f"{one}::b", src)
    pv("init", two, "--copy-crypt-from", one)
    _copy(pv, one, two)
    pv("delete", f"{two}::a")  # the offsite copy keeps its own retention
    again = _copy(pv, one, two)
    assert again["copied"] == [] and again["deleted_there"] == ["a"] and again["skipped"] == ["b"]
    assert set(_ids(pv, two)) == {"b"}
    pv("compact", two, "--min-age", "0")  # purged for good: a tombstone remembers it
    assert _copy(pv, one, two)["deleted_there"] == ["a"]
    assert set(_ids(pv, two)) == {"b"}
