"""S3 as a backup source (``packvault create REPO::A s3://bucket/prefix``) and restore into a bucket.

Everything runs against a real moto server over HTTP; the repository is a local directory so the only S3
traffic is the source's (and the restore target's), which is what the request counts measure.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.archive.create import ArchiveCreator
from packvault.archive.patterns import ExcludeMatcher
from packvault.archive.s3restore import S3Restorer
from packvault.archive.s3source import S3Source, _sorted_records, walk_sort_key
from packvault.archive.walker import FilesystemSource
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from packvault.storage.settings import from_environment
from tests.support.s3servers import new_bucket, s3_client
from tests.support.settings import env_settings

PASSPHRASE = "correct horse battery staple"

# Keys chosen so that S3's byte order and the walker's path order disagree ("a.txt" < "a/b" in bytes).
TREE: dict[str, bytes] = {
    "data/a.txt": b"alpha\n",
    "data/a/b.bin": os.urandom(3 * 1024 * 1024 + 17),  # several chunks
    "data/a/c/deep.txt": b"deep\n" * 1000,
    "data/a-b/x": b"dash",
    "data/a b/space name.txt": b"space",
    "data/empty": b"",
    "data/z/\u00fcml\u00e4ut.txt": b"unicode",
}
OUTSIDE = {"datastore/not-me": b"outside the prefix", "other/no": b"no"}


@pytest.fixture
def source_bucket(moto_endpoint, s3_env) -> str:
    bucket = new_bucket(moto_endpoint)
    client = s3_client(moto_endpoint)
    for key, data in {**TREE, **OUTSIDE}.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    client.put_object(Bucket=bucket, Key="data/marker/", Body=b"")  # a console "folder"
    return bucket


@pytest.fixture
def repo_path(pv, tmp_path) -> str:
    location = str(tmp_path / "repo")
    pv("init", location)
    return location


def src_url(bucket: str, endpoint: str, prefix: str = "data") -> str:
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}"


def open_repo(location: str) -> Repository:
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock="shared")
    return repo


def backup(location: str, name: str, urls: list[str], excludes: list[str] = ()) -> tuple[S3Source, dict]:
    """One ``create`` through the API, so the test can look at the source's own request counter."""
    warnings: list[str] = []
    source = S3Source(
        urls,
        excludes=ExcludeMatcher(list(excludes)),
        warn=lambda p, m: warnings.append(f"{p}: {m}"),
        settings=from_environment(os.environ),
    )
    with open_repo(location) as repo:
        creator = ArchiveCreator(repo, name, files_cache_name="files-s3")
        creator.run(source, paths=urls, cmdline=["test"])
    stats = creator.stats.as_dict()
    stats["warning_texts"] = warnings + creator.stats.warnings
    return source, stats


def archive_items(location: str, name: str) -> list[dict]:
    with open_repo(location) as repo, ChunkReader(repo) as reader:
        return list(iter_archive_items(reader, load_archive(reader, repo.find_archive(name))))


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def bucket_objects(endpoint: str, bucket: str, prefix: str = "") -> dict[str, bytes]:
    client = s3_client(endpoint)
    result = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            result[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return result


# --- order and content ---------------------------------------------------------------------------------


def test_sorted_records_spills_and_merges_in_walk_order():
    rng = random.Random(7)
    alphabet = "ab-./ _z"
    keys = {"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))).strip("/") or "k" for _ in range(3000)}
    records = [(walk_sort_key(k), len(k), "etag", 0) for k in keys]
    rng.shuffle(records)
    merged = list(_sorted_records(iter(records), run_size=257))  # forces a dozen spilled runs
    assert merged == sorted(records)
    assert [r[0] for r in merged] == sorted(walk_sort_key(k) for k in keys)


def test_order_matches_the_local_walker(tmp_path, moto_endpoint, source_bucket):
    """The bucket yields the same paths, in the same order, as the same tree on disk."""
    disk = tmp_path / "disk" / source_bucket
    for key, data in TREE.items():
        (disk / key).parent.mkdir(parents=True, exist_ok=True)
        (disk / key).write_bytes(data)
    (disk / "data" / "marker").mkdir()
    local = [
        e.item["p"].decode()
        for e in FilesystemSource([str(disk / "data")], excludes=ExcludeMatcher([]), one_file_system=False, warn=print)
    ]
    prefix = str(disk).lstrip("/").removesuffix(source_bucket)
    local = [p.removeprefix(prefix) for p in local]
    entries = list(S3Source([src_url(source_bucket, moto_endpoint)], warn=print, settings=from_environment(os.environ)))
    remote = [e.item["p"].decode() for e in entries]
    assert remote[0] == source_bucket  # the bucket itself is a directory of the archive
    assert remote[1:] == local
    assert remote.index(f"{source_bucket}/data/a") < remote.index(f"{source_bucket}/data/a.txt")
    kinds = {e.item["p"].decode(): e.item["t"] for e in entries}
    assert kinds[f"{source_bucket}/data/marker"] == "d"
    assert kinds[f"{source_bucket}/data/a/c"] == "d"
    assert not any("datastore" in p or "other" in p for p in remote)


def test_backup_and_restore_to_directory_bit_exact(pv, repo_path, tmp_path, moto_endpoint, source_bucket):
    url = src_url(source_bucket, moto_endpoint)
    created = json.loads(pv("create", "--json", f"{repo_path}::one", url).out)
    assert created["stats"]["nfiles"] == len(TREE)
    assert created["stats"]["bytes_read"] == sum(len(v) for v in TREE.values())
    target = tmp_path / "restore"
    pv("extract", f"{repo_path}::one", "--target", str(target))
    assert read_tree(target / source_bucket) == TREE
    assert (target / source_bucket / "data" / "marker").is_dir()
    items = {i["p"].decode(): i for i in archive_items(repo_path, "one")}
    head = s3_client(moto_endpoint).head_object(Bucket=source_bucket, Key="data/a/b.bin")
    item = items[f"{source_bucket}/data/a/b.bin"]
    assert item["s3"]["etag"] == head["ETag"]
    assert item["mt"] // 10**9 == int(head["LastModified"].timestamp())
    assert os.stat(target / source_bucket / "data/a/b.bin").st_mtime_ns == item["mt"]


def test_unchanged_objects_are_not_downloaded_again(repo_path, moto_endpoint, source_bucket):
    url = src_url(source_bucket, moto_endpoint)
    first, stats1 = backup(repo_path, "one", [url])
    gets = first.requests.snapshot()["GET"]
    assert gets == len([v for v in TREE.values() if v])  # an empty object needs no GET
    assert first.requests.snapshot()["bytes_down"] == sum(len(v) for v in TREE.values())

    second, stats2 = backup(repo_path, "two", [url])
    counted = second.requests.snapshot()
    assert counted["GET"] == 0 and counted["bytes_down"] == 0
    assert counted["LIST"] >= 1
    assert stats2["files_unchanged"] == len(TREE) and stats2["files_read"] == 0
    assert stats2["deduplicated_size"] == 0

    changed = os.urandom(100_000)
    s3_client(moto_endpoint).put_object(Bucket=source_bucket, Key="data/a/c/deep.txt", Body=changed)
    third, stats3 = backup(repo_path, "three", [url])
    assert third.requests.snapshot()["GET"] == 1
    assert third.requests.snapshot()["bytes_down"] == len(changed)
    assert stats3["files_read"] == 1
    items = {i["p"].decode(): i for i in archive_items(repo_path, "three")}
    assert items[f"{source_bucket}/data/a/c/deep.txt"]["s"] == len(changed)
    with open_repo(repo_path) as repo, ChunkReader(repo) as reader:
        data = b"".join(reader.read_chunk(cid) for cid, _ in items[f"{source_bucket}/data/a/c/deep.txt"]["c"])
    assert data == changed
    # the earlier archive still has the old content
    old = {i["p"].decode(): i for i in archive_items(repo_path, "two")}[f"{source_bucket}/data/a/c/deep.txt"]
    assert old["s"] == len(TREE["data/a/c/deep.txt"])


def test_cli_rerun_reads_nothing(pv, repo_path, moto_endpoint, source_bucket):
    url = src_url(source_bucket, moto_endpoint)
    pv("create", "--json", f"{repo_path}::one", url)
    again = json.loads(pv("create", "--json", f"{repo_path}::two", url).out)
    assert again["stats"]["bytes_read"] == 0
    assert again["stats"]["files_unchanged"] == len(TREE)


def test_restore_into_a_bucket_bit_exact(repo_path, moto_endpoint, source_bucket):
    url = src_url(source_bucket, moto_endpoint)
    backup(repo_path, "one", [url])
    target_bucket = new_bucket(moto_endpoint)
    items = archive_items(repo_path, "one")
    with open_repo(repo_path) as repo, ChunkReader(repo) as reader:
        restorer = S3Restorer(
            reader, f"s3://{target_bucket}/restored?endpoint={moto_endpoint}", settings=from_environment(os.environ)
        )
        stats = restorer.run(iter(items))
    assert not stats.errors
    assert stats.nfiles == len(TREE)
    restored = bucket_objects(moto_endpoint, target_bucket)
    assert restored == {f"restored/{source_bucket}/{k}": v for k, v in TREE.items()}

    # strip_components=1 puts objects back under their original keys
    back_bucket = new_bucket(moto_endpoint)
    with open_repo(repo_path) as repo, ChunkReader(repo) as reader:
        S3Restorer(
            reader,
            f"s3://{back_bucket}?endpoint={moto_endpoint}",
            strip_components=1,
            settings=from_environment(os.environ),
        ).run(iter(items))
    assert bucket_objects(moto_endpoint, back_bucket) == TREE


def test_restore_of_a_large_object_uses_multipart(repo_path, moto_endpoint, s3_env, monkeypatch):
    import packvault.archive.s3restore as s3restore

    monkeypatch.setattr(s3restore, "PART_SIZE", 5 * 1024 * 1024)  # S3's minimum part size
    bucket = new_bucket(moto_endpoint)
    big = os.urandom(12 * 1024 * 1024 + 5)
    s3_client(moto_endpoint).put_object(Bucket=bucket, Key="big/blob", Body=big)
    backup(repo_path, "big", [src_url(bucket, moto_endpoint, "big")])
    target = new_bucket(moto_endpoint)
    with open_repo(repo_path) as repo, ChunkReader(repo) as reader:
        restorer = S3Restorer(
            reader, f"s3://{target}?endpoint={moto_endpoint}", strip_components=1, settings=from_environment(os.environ)
        )
        stats = restorer.run(iter(archive_items(repo_path, "big")))
    assert not stats.errors
    assert restorer.requests.snapshot()["PUT"] == 1 + 3 + 1  # create, three parts, complete (billed as PUTs)
    obj = s3_client(moto_endpoint).get_object(Bucket=target, Key="big/blob")
    data = obj["Body"].read()
    assert hashlib.sha256(data).digest() == hashlib.sha256(big).digest()
    assert obj["ETag"].endswith('-3"')  # really a multipart object


def test_excludes_and_single_object_root(repo_path, moto_endpoint, source_bucket):
    url = src_url(source_bucket, moto_endpoint)
    _, stats = backup(repo_path, "ex", [url], excludes=["*.txt", f"/{source_bucket}/data/a/c"])
    paths = {i["p"].decode() for i in archive_items(repo_path, "ex")}
    assert f"{source_bucket}/data/a/b.bin" in paths
    assert not any(p.endswith(".txt") for p in paths)
    assert not any(p.startswith(f"{source_bucket}/data/a/c") for p in paths)

    single = src_url(source_bucket, moto_endpoint, "data/a/b.bin")
    _, stats = backup(repo_path, "single", [single])
    items = archive_items(repo_path, "single")
    assert [i["p"].decode() for i in items] == [
        source_bucket,
        f"{source_bucket}/data",
        f"{source_bucket}/data/a",
        f"{source_bucket}/data/a/b.bin",
    ]
    assert stats["nfiles"] == 1


def test_overlapping_roots_are_backed_up_once(repo_path, moto_endpoint, source_bucket):
    urls = [src_url(source_bucket, moto_endpoint, "data/a"), src_url(source_bucket, moto_endpoint)]
    _, stats = backup(repo_path, "overlap", urls)
    paths = [i["p"].decode() for i in archive_items(repo_path, "overlap")]
    assert len(paths) == len(set(paths))
    assert stats["nfiles"] == len(TREE)


def test_missing_source_bucket_is_a_clear_error(pv, repo_path, moto_endpoint, s3_env):
    result = pv("create", f"{repo_path}::x", f"s3://no-such-bucket-pv/x?endpoint={moto_endpoint}", expect=2)
    assert "does not exist" in result.err
    assert "Traceback" not in result.err


def test_source_survives_a_faulty_network(repo_path, moto_endpoint, source_bucket, fault_proxy, tmp_path):
    """503s, 500s and dropped connections on the way to the source are retried; the archive is complete."""
    proxy = fault_proxy(moto_endpoint, fault_rate=0.3, seed=3, kinds=["503", "500", "drop"])
    source, stats = backup(repo_path, "faulty", [src_url(source_bucket, proxy.endpoint)])
    assert proxy.total_faults > 0
    assert stats["nfiles"] == len(TREE) and not stats["warning_texts"]
    with open_repo(repo_path) as repo, ChunkReader(repo) as reader:
        for item in archive_items(repo_path, "faulty"):
            if item["t"] == "f":
                key = item["p"].decode().split("/", 1)[1]
                assert b"".join(reader.read_chunk(c) for c, _ in item["c"]) == TREE[key]


# --- one retry policy, one resumable stream, one door into the storage layer -----------------------------


def _read_object(source: S3Source, name: str) -> bytes:
    entry = next(e for e in source if e.item["p"].decode().endswith(name))
    stream = entry.opener()
    try:
        return stream.read()
    finally:
        stream.close()


def test_cut_downloads_resume_where_they_broke(moto_endpoint, source_bucket, fault_proxy):
    proxy = fault_proxy(
        moto_endpoint, fault_rate=1.0, kinds=["cut_body"], methods=["GET"], path_contains="b.bin", max_faults=2
    )
    source = S3Source([src_url(source_bucket, proxy.endpoint)], warn=print, settings=from_environment(os.environ))
    assert _read_object(source, "data/a/b.bin") == TREE["data/a/b.bin"]
    assert proxy.faults["cut_body"] == 2
    counted = source.requests.snapshot()
    assert counted["GET"] == 3 and counted["resumed"] == 2  # each resumption from where it broke
    assert counted["bytes_down"] == len(TREE["data/a/b.bin"])


def test_a_source_that_keeps_cutting_is_given_up_on_with_one_clear_error(
    moto_endpoint, source_bucket, fault_proxy, monkeypatch
):
    """The storage layer's bounded policy ends the read with a ``ServiceUnavailable`` (one line, exit 2),
    not whatever the HTTP library raised last."""
    from packvault.errors import ServiceUnavailable

    monkeypatch.setenv("PACKVAULT_S3_RETRY_ATTEMPTS", "3")
    monkeypatch.setenv("PACKVAULT_S3_RETRY_MAX_SECONDS", "5")
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["cut_body"], methods=["GET"], path_contains="b.bin")
    source = S3Source([src_url(source_bucket, proxy.endpoint)], warn=print, settings=from_environment(os.environ))
    with pytest.raises(ServiceUnavailable, match="kept failing"):
        _read_object(source, "data/a/b.bin")


def test_bucket_sources_and_targets_use_only_the_storage_layers_bucket_api():
    """No S3 client, configuration, error codes, request counter or retry library of their own."""
    archive = Path(__file__).resolve().parents[2] / "src" / "packvault" / "archive"
    for module in ("s3source.py", "s3restore.py"):
        text = (archive / module).read_text()
        imports = [line for line in text.splitlines() if line.startswith(("import ", "from "))]
        bad = [
            line
            for line in imports
            if any(word in line for word in ("botocore", "boto3", "tenacity", "storage.s3", "storage.accounting"))
        ]
        assert not bad, (module, bad)
