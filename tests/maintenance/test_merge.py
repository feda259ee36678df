"""``merge``: part archives of a scale-out backup (``create --source-range``) joined into one archive.

The source is a real moto bucket whose keys make S3's order and the walk order disagree; the repository is a
local directory.  The merged archive must be the archive one ``create`` of the whole bucket writes: the same
items in the same order, the same chunk ids per file (and so the same item-stream chunks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.keyrange import KeyRange, walk_sort_key
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from tests.support.s3servers import new_bucket, s3_client
from tests.support.settings import env_settings

PASSPHRASE = "correct horse battery staple"
TREE: dict[str, bytes] = {
    "data/a.txt": b"alpha\n",
    "data/a/b.bin": os.urandom(2 * 1024 * 1024 + 5),
    "data/a/c/deep.txt": b"deep\n" * 1000,
    "data/a-b/x": b"dash",
    "data/a b/space.txt": b"space",
    "data/empty": b"",
    "data/z/\u00fcml.txt": b"unicode",
    **{f"data/many/{i:03d}": os.urandom(1000 + i) for i in range(30)},
}


@pytest.fixture
def bucket(moto_endpoint, s3_env) -> str:
    name = new_bucket(moto_endpoint)
    client = s3_client(moto_endpoint)
    for key, data in TREE.items():
        client.put_object(Bucket=name, Key=key, Body=data)
    client.put_object(Bucket=name, Key="data/marker/", Body=b"")
    client.put_object(Bucket=name, Key="outside/no", Body=b"not in the prefix")
    return name


@pytest.fixture
def repo(pv, tmp_path) -> str:
    location = str(tmp_path / "repo")
    pv("init", location)
    return location


def source(bucket: str, endpoint: str) -> str:
    return f"s3://{bucket}/data?endpoint={endpoint}"


def plan(pv, url: str, parts: int, tmp_path: Path) -> list[dict]:
    out = tmp_path / f"plan-{parts}.json"
    pv("plan-source", url, "--parts", str(parts), "--output", str(out))
    return json.loads(out.read_text())


def run_parts(pv, repo: str, name: str, plan_: list[dict], url: str) -> None:
    for element in plan_:
        k, n = element["part"], element["parts"]
        end = element["end"] if element["end"] is not None else ""
        pv("create", f"{repo}::{name}.part{k}", url, "--source-range", element["start"], end, "--part", f"{k}/{n}")


def archive(location: str, name: str) -> tuple[list[dict], list[bytes], dict]:
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock="shared")
    with repo, ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive(name))
        return list(iter_archive_items(reader, meta)), meta.item_ids, meta.extra


def names(pv, repo: str, *extra: str) -> list[str]:
    return [a["name"] for a in json.loads(pv("list", "--json", repo, *extra).out)["archives"]]


@pytest.mark.parametrize("parts", [3, 7])
def test_merged_parts_equal_one_backup_of_the_whole_bucket(pv, repo, tmp_path, moto_endpoint, bucket, parts):
    url = source(bucket, moto_endpoint)
    plan_ = plan(pv, url, parts, tmp_path)
    assert 3 <= len(plan_) <= parts  # the 2 MiB object weighs more than one of 7 parts: fewer parts
    run_parts(pv, repo, "scaled", plan_, url)
    merged = json.loads(pv("merge", "--json", f"{repo}::scaled", "scaled.part*").out)
    assert merged["status"] == "merged" and merged["parts"] == [f"scaled.part{k}" for k in range(len(plan_))]
    assert merged["dropped_dirs"] > 0  # the joins held directories of both sides
    pv("create", f"{repo}::single", url)

    items, item_ids, extra = archive(repo, "scaled")
    single_items, single_ids, _ = archive(repo, "single")
    assert [i["p"] for i in items] == [i["p"] for i in single_items]
    assert items == single_items  # every field: type, mode, mtime, size, etag, and the chunk ids per file
    assert item_ids == single_ids  # the same stream cut by the same chunker
    assert [p["name"] for p in extra["scaleout_merged"]["parts"]] == merged["parts"]

    assert sorted(names(pv, repo)) == ["scaled", "single"]
    assert sorted(names(pv, repo, "--deleted")) == sorted(merged["parts"])  # soft-deleted: compact collects
    target = tmp_path / "restore"
    pv("extract", f"{repo}::scaled", "--target", str(target))
    root = target / bucket
    restored = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert restored == TREE
    pv("check", repo)


def test_merge_refuses_a_missing_part_and_changes_nothing(pv, repo, tmp_path, moto_endpoint, bucket):
    url = source(bucket, moto_endpoint)
    plan_ = plan(pv, url, 3, tmp_path)
    run_parts(pv, repo, "n", [plan_[0], plan_[2]], url)
    refused = pv("merge", f"{repo}::n", "n.part0", "n.part1", "n.part2", expect=2)
    assert "not found" in refused.err and "nothing was merged" in refused.err
    assert len(refused.err.strip().splitlines()) == 1
    refused = pv("merge", f"{repo}::n", "n.part*", expect=2)
    assert "part(s) 1 missing" in refused.err
    assert sorted(names(pv, repo)) == ["n.part0", "n.part2"]


def test_merge_refuses_overlapping_parts_and_plain_archives(pv, repo, tmp_path, moto_endpoint, bucket):
    url = source(bucket, moto_endpoint)
    plan_ = plan(pv, url, 2, tmp_path)
    middle = plan_[1]["start"]
    pv("create", f"{repo}::o.part0", url, "--source-range", "", middle)
    pv("create", f"{repo}::o.part1", url, "--source-range", "data/a", "")  # starts before part 0 ends
    refused = pv("merge", f"{repo}::o", "o.part*", expect=2)
    assert "overlap" in refused.err and "nothing was merged" in refused.err
    pv("create", f"{repo}::plain", url)
    refused = pv("merge", f"{repo}::o", "o.part0", "plain", expect=2)
    assert "not a part" in refused.err
    assert sorted(names(pv, repo)) == ["o.part0", "o.part1", "plain"]


def test_a_merge_that_dies_after_its_commit_is_finished_by_a_rerun(
    pv, repo, tmp_path, moto_endpoint, bucket, monkeypatch
):
    from packvault.repository.catalogue import ArchiveCatalogue

    url = source(bucket, moto_endpoint)
    run_parts(pv, repo, "c", plan(pv, url, 3, tmp_path), url)
    real = ArchiveCatalogue.soft_delete_archive
    calls = []

    def dies_on_the_second(self, entry):
        calls.append(entry.name)
        if len(calls) == 2:
            raise SystemExit("killed")  # the process ends between two retirements
        return real(self, entry)

    monkeypatch.setattr(ArchiveCatalogue, "soft_delete_archive", dies_on_the_second)
    with pytest.raises(SystemExit):
        pv("merge", f"{repo}::c", "c.part*")
    monkeypatch.setattr(ArchiveCatalogue, "soft_delete_archive", real)
    assert sorted(names(pv, repo)) == ["c", "c.part1", "c.part2"]  # both the merge and the parts left
    again = json.loads(pv("merge", "--json", f"{repo}::c", "c.part*").out)
    assert again["status"] == "already-merged" and again["retired"] == ["c.part1", "c.part2"]
    assert names(pv, repo) == ["c"]
    done = json.loads(pv("merge", "--json", f"{repo}::c", "c.part*").out)  # nothing left: still fine
    assert done["status"] == "already-merged" and done["retired"] == []


def test_a_merge_that_dies_before_its_commit_leaves_the_parts(pv, repo, tmp_path, moto_endpoint, bucket, monkeypatch):
    from packvault.repository.catalogue import ArchiveCatalogue

    url = source(bucket, moto_endpoint)
    run_parts(pv, repo, "d", plan(pv, url, 2, tmp_path), url)
    real = ArchiveCatalogue.put_archive_entry

    def dies(self, entry):
        raise SystemExit("killed")

    monkeypatch.setattr(ArchiveCatalogue, "put_archive_entry", dies)
    with pytest.raises(SystemExit):
        pv("merge", f"{repo}::d", "d.part*")
    monkeypatch.setattr(ArchiveCatalogue, "put_archive_entry", real)
    assert sorted(names(pv, repo)) == ["d.part0", "d.part1"]
    assert json.loads(pv("merge", "--json", f"{repo}::d", "d.part*").out)["status"] == "merged"
    assert names(pv, repo) == ["d"]


def test_a_part_stopped_at_its_deadline_exits_75_and_the_same_command_finishes_it(
    pv, repo, tmp_path, moto_endpoint, bucket
):
    url = source(bucket, moto_endpoint)
    args = ("create", f"{repo}::p.part0", url, "--source-range", "", "")
    stopped = pv(*args, "--deadline", "0.000001", expect=75)
    assert "incomplete, rerun" in stopped.err and len(stopped.err.strip().splitlines()) == 1
    assert names(pv, repo) == []
    pv(*args)
    assert names(pv, repo) == ["p.part0"]
    assert json.loads(pv("merge", "--json", f"{repo}::p", "p.part0").out)["status"] == "merged"


def test_source_range_needs_one_s3_source(pv, repo, tmp_path):
    refused = pv("create", f"{repo}::x.part0", str(tmp_path), "--source-range", "", "", expect=2)
    assert "exactly one s3:// source" in refused.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--part", "0/2"), "--part needs --source-range"),
        (("--source-range", "", "", "--part", "2/2"), "is not K/N"),
        (("--source-range", "b", "a"), "empty key range"),
        (("--source-range", "", "", "--deadline", "0"), "--deadline must be a positive"),
    ],
)
def test_part_options_that_cannot_work_are_one_line_errors(pv, repo, moto_endpoint, bucket, args, message):
    refused = pv("create", f"{repo}::x.part0", source(bucket, moto_endpoint), *args, expect=2)
    assert message in refused.err and len(refused.err.strip().splitlines()) == 1
    assert names(pv, repo) == []


def test_a_part_records_its_range_and_its_number_from_the_name(pv, repo, moto_endpoint, bucket):
    pv("create", f"{repo}::r.part3", source(bucket, moto_endpoint), "--source-range", "data/a", "data/z")
    _, _, extra = archive(repo, "r.part3")
    record = extra["scaleout_part"]
    assert (record["start"], record["end"], record["part"], record["parts"]) == ("data/a", "data/z", 3, None)
    items, _, _ = archive(repo, "r.part3")
    keys = [i["p"].decode().split("/", 1)[1] for i in items if i["t"] == "f"]
    in_range = KeyRange("data/a", "data/z")
    assert keys == sorted((k for k in TREE if in_range.contains(k)), key=walk_sort_key)
    assert "data/z/\u00fcml.txt" not in keys and "data/a.txt" in keys and "data/a/b.bin" in keys
