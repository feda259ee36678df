"""Restore reads by pack, not in archive order: few reads for interleaved archives, and per-file safety kept."""

from __future__ import annotations

import json
import os
from pathlib import Path

from packvault.archive import extract
from tests.support.cli import tree_snapshot
from tests.support.restore_paths import restore_path  # noqa: F401  (autouse: both restore paths)

KiB = 1024
MiB = 1024 * KiB


def _gets(pv, *args, expect: int = 0) -> int:
    return json.loads(pv(*args, "--json", expect=expect).out)["requests"]["GET"]


def test_interleaved_archive_costs_about_one_read_per_pack(pv, tmp_path):
    """Day 2 changes every other file: its archive alternates between the old and the new pack.  Read in
    archive order that is one read per file; read by pack it is one read per pack."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(24):
        (src / f"f{i:02}").write_bytes(os.urandom(200 * KiB))
    repo = tmp_path / "repo"
    pv("init", repo, "--pack-size", "16M")
    pv("create", f"{repo}::day1", src)
    for i in range(1, 24, 2):
        (src / f"f{i:02}").write_bytes(os.urandom(200 * KiB))
    pv("create", f"{repo}::day2", src)

    gets_day1 = _gets(pv, "extract", f"{repo}::day1", "--target", tmp_path / "out1")
    gets_day2 = _gets(pv, "extract", f"{repo}::day2", "--target", tmp_path / "out2")
    # day 1 lives in one data pack, day 2 in two (plus metadata reads common to both)
    assert gets_day2 <= gets_day1 + 2, (gets_day1, gets_day2)
    restored = tmp_path / "out2" / str(src).lstrip("/")
    assert tree_snapshot(restored) == tree_snapshot(src)


def test_duplicate_files_in_one_batch_are_all_written(pv, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    blob = os.urandom(3 * MiB)
    for i in range(5):
        (src / f"copy{i}").write_bytes(blob)
    (src / "zeros").write_bytes(bytes(12 * MiB) + b"tail")  # zero chunks are cut at the 4 MiB maximum
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    pv("extract", f"{repo}::a", "--target", tmp_path / "out")
    restored = tmp_path / "out" / str(src).lstrip("/")
    assert tree_snapshot(restored) == tree_snapshot(src)
    # the all-zero chunks became holes
    assert os.stat(restored / "zeros").st_blocks * 512 <= 8 * MiB


def test_many_small_batches_keep_directory_metadata(pv, tmp_path, monkeypatch):
    """Directory mtimes are applied after the files in them landed, even when a directory spans batches."""
    monkeypatch.setattr(extract, "BATCH_ITEMS", 3)
    monkeypatch.setattr(extract, "BATCH_CHUNKS", 2)
    src = tmp_path / "src"
    for d in ("a", "a/b", "a/b/c", "z"):
        (src / d).mkdir(parents=True)
    for n, d in enumerate(("a", "a/b", "a/b/c", "z", "")):
        for i in range(4):
            (src / d / f"file{i}").write_bytes(os.urandom(1000 * (n + i + 1)))
    for n, d in enumerate(("a/b/c", "a/b", "a", "z")):
        os.utime(src / d, ns=(1_600_000_000_000_000_000 + n, 1_500_000_000_000_000_000 + n * 7))
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    pv("extract", f"{repo}::a", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)


def test_hardlink_to_a_damaged_file_goes_with_it(pv, tmp_path):
    """The link is made before its target's data arrives; when the target fails, both are removed."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(3 * MiB))
    os.link(src / "a.bin", src / "link-to-a")
    (src / "b.bin").write_bytes(os.urandom(3 * MiB))
    repo = tmp_path / "repo"
    pv("init", repo, "--pack-size", "1M")
    pv("create", f"{repo}::a", src / "a.bin")
    packs_a = sorted(p for p in (Path(repo) / "packs" / "data").rglob("*") if p.is_file())
    pv("create", f"{repo}::all", src)
    raw = bytearray(packs_a[0].read_bytes())
    raw[len(raw) // 2] ^= 0x01
    packs_a[0].write_bytes(bytes(raw))
    result = pv("extract", f"{repo}::all", "--target", tmp_path / "out", expect=1)  # done, with warnings
    assert "a.bin" in result.err and "not restored" in result.err
    out = tmp_path / "out" / str(src).lstrip("/")
    assert not (out / "a.bin").exists()
    assert not (out / "link-to-a").exists()
    assert (out / "b.bin").read_bytes() == (src / "b.bin").read_bytes()


def test_restore_from_s3_streams_whole_packs_through_broken_downloads(
    pv, tmp_path, moto_endpoint, make_s3_url, fault_proxy
):
    """From S3 a pack's wanted objects come from streamed GETs of at least 4 MiB each (one per pack when a
    round needs as many packs as there are workers; here one pack is cut in two so two workers read it);
    downloads cut mid-way are resumed, and the restored tree is exact."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"f{i:02}").write_bytes(os.urandom(700 * KiB))
    url = make_s3_url(moto_endpoint)
    pv("init", url, "--pack-size", "16M")
    pv("create", f"{url}::a", src)
    # 8.4 MiB of incompressible data in one pack: read whole-range it took three 4 MiB GETs, one per file
    # twelve; streamed, in pieces of at least 4 MiB for the idle workers, two
    data_gets = 2
    # the same restore with a path filter that matches nothing reads everything but the data (run twice:
    # the first fills the local index cache, which the real restore then uses too)
    # (a PATH that matches nothing is a warning: exit 1)
    _gets(pv, "extract", f"{url}::a", "no/such/path", "--target", tmp_path / "none", expect=1)
    metadata_gets = _gets(pv, "extract", f"{url}::a", "no/such/path", "--target", tmp_path / "none", expect=1)
    gets = _gets(pv, "extract", f"{url}::a", "--target", tmp_path / "out1")
    # one more GET was seen once under a loaded CI machine (cause not analysed yet): still not one per file
    assert gets - metadata_gets <= data_gets + 1, (gets, metadata_gets)
    assert tree_snapshot(tmp_path / "out1" / str(src).lstrip("/")) == tree_snapshot(src)

    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["cut_body"], path_contains="packs/data", max_faults=2)
    proxied = url.replace(moto_endpoint, proxy.endpoint)
    pv("extract", f"{proxied}::a", "--target", tmp_path / "out2")
    assert proxy.faults["cut_body"] == 2
    assert tree_snapshot(tmp_path / "out2" / str(src).lstrip("/")) == tree_snapshot(src)


def test_restoring_over_existing_paths_replaces_them_without_following(pv, tmp_path):
    """A fresh path is created in one call (O_EXCL); anything already at a path is replaced, never written
    through: a symlink there must not redirect the data, and another hardlink of an old file keeps its bytes."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "small").write_bytes(b"archived small")
    (src / "large").write_bytes(os.urandom(5 * MiB))  # several chunks: finished by whichever write is last
    (src / "empty").write_bytes(b"")
    os.chmod(src / "small", 0o640)
    os.utime(src / "large", ns=(1_500_000_000_000_000_000, 1_500_000_000_123_456_789))
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)

    restored = tmp_path / "out" / str(src).lstrip("/")
    restored.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.write_bytes(b"must stay")
    (restored / "small").symlink_to(outside)
    (restored / "large").write_bytes(b"old content")
    os.link(restored / "large", tmp_path / "other-link")
    (restored / "empty").write_bytes(b"not empty")

    pv("extract", f"{repo}::a", "--target", tmp_path / "out")
    assert outside.read_bytes() == b"must stay"
    assert (tmp_path / "other-link").read_bytes() == b"old content"
    assert not (restored / "small").is_symlink()
    assert tree_snapshot(restored) == tree_snapshot(src)  # content, mode and mtime of every file


def test_a_restore_from_a_bucket_plans_rounds_twice_as_large(pv, tmp_path, monkeypatch, moto_endpoint, make_s3_url):
    """A round costs a remote repository a round trip before its first data arrives: from a bucket, a round
    takes twice the items it takes from a local directory."""
    monkeypatch.setattr(extract, "BATCH_ITEMS", 4)
    rounds: list[int] = []
    restore_batch = extract.Extractor._restore_batch

    def counted(self, batch):
        rounds.append(len(batch))
        return restore_batch(self, batch)

    monkeypatch.setattr(extract.Extractor, "_restore_batch", counted)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(24):
        (src / f"f{i:02}").write_bytes(os.urandom(2 * KiB))
    sizes = {}
    for where, repo in (("local", str(tmp_path / "repo")), ("bucket", make_s3_url(moto_endpoint))):
        pv("init", repo)
        pv("create", f"{repo}::a", src)
        rounds.clear()
        pv("extract", f"{repo}::a", "--target", tmp_path / f"out-{where}")
        sizes[where] = list(rounds)
        assert tree_snapshot(tmp_path / f"out-{where}" / str(src).lstrip("/")) == tree_snapshot(src)
    assert max(sizes["local"]) == 4 and max(sizes["bucket"]) == 8, sizes
    assert sum(sizes["local"]) == sum(sizes["bucket"])
