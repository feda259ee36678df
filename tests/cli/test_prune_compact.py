"""``prune --compact``: prune and compact in one process, under one exclusive lock, with one opening (issue 21)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from tests.support.cli import tree_snapshot
from tests.support.s3servers import s3_client

KiB = 1024


def _write(root: Path, seed: int) -> None:
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (root / f"f{i}.bin").write_bytes(rnd.randbytes(60 * KiB))


def _three_archives(pv, repo: str, src: Path) -> None:
    pv("init", repo, "--pack-size", "256K")
    for n in range(3):
        _write(src, seed=n)  # each archive has its own data: pruning two frees theirs
        pv("create", f"{repo}::host-{n}", src)


def _objects(endpoint: str, repo: str) -> dict[str, str]:
    bucket = repo.split("://", 1)[1].split("/", 1)[0]
    paginator = s3_client(endpoint).get_paginator("list_objects_v2")
    return {
        o["Key"]: o["ETag"]
        for page in paginator.paginate(Bucket=bucket)
        for o in page.get("Contents", [])
        if "/locks/" not in o["Key"]
    }


def test_prune_compact_on_s3_opens_once_and_renames_nothing(pv, tmp_path, moto_endpoint, make_s3_url):
    repo = make_s3_url(moto_endpoint)
    src = tmp_path / "src"
    _three_archives(pv, repo, src)
    output = json.loads(pv("prune", repo, "--keep-last", "1", "--compact", "--min-age", "0", "--json").out)
    pruned = [d["name"] for d in output["decisions"] if not d["keep"]]
    assert sorted(pruned) == ["host-0", "host-1"]
    report = output["compact"]
    assert report["archives_purged"] == 2 and report["packs_dropped"] > 0 and not report["dry_run"]
    requests = output["requests"]
    # pruned entries are purged, not renamed first; one opening: no HEAD (the config's GET proves the bucket),
    # one lock written; the purged entries, the replaced fragments, the old packs: three deletes (the lock
    # goes after the count)
    assert requests["COPY"] == 0, requests
    assert requests["HEAD"] == 0, requests
    assert requests["DELETE"] == 3, requests
    assert requests["PUT"] == report["requests"]["PUT"] + 1, (requests, report["requests"])
    assert [a["name"] for a in json.loads(pv("list", repo, "--json").out)["archives"]] == ["host-2"]
    assert pv("undelete", f"{repo}::host-0", expect=2).rc == 2  # purged for good
    pv("extract", f"{repo}::host-2", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)
    assert json.loads(pv("check", repo, "--verify-data", "--json").out)["problems"] == []


def test_prune_compact_costs_less_than_prune_then_compact(pv, tmp_path, moto_endpoint, make_s3_url):
    """The same work as the two commands, without the second opening and without renaming pruned entries."""
    counts = {}
    for way in ("two", "one"):
        repo = make_s3_url(moto_endpoint)
        _three_archives(pv, repo, tmp_path / way)
        if way == "two":
            first = json.loads(pv("prune", repo, "--keep-last", "1", "--json").out)["requests"]
            second = json.loads(pv("compact", repo, "--min-age", "0", "--json").out)["requests"]
            counts[way] = {k: first[k] + second[k] for k in ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY")}
        else:
            both = json.loads(pv("prune", repo, "--keep-last", "1", "--compact", "--min-age", "0", "--json").out)
            counts[way] = {k: both["requests"][k] for k in ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY")}
    one, two = counts["one"], counts["two"]
    # the second opening: config, the key (a GET by the name an earlier opening kept; its MAC of the config
    # is kept too), the lock (PUT, LIST, DELETE), and the second listing of archives/; no HEAD
    assert two["HEAD"] == one["HEAD"] == 0, counts
    assert two["GET"] - one["GET"] == 2, counts
    assert two["LIST"] - one["LIST"] == 2, counts
    assert two["COPY"] - one["COPY"] == 2, counts  # the two soft-deletes' renames
    assert one["PUT"] == two["PUT"] - 1, counts  # one lock written instead of two


def test_prune_dry_run_compact_changes_nothing_and_shows_what_both_would_do(pv, tmp_path, moto_endpoint, make_s3_url):
    repo = make_s3_url(moto_endpoint)
    _three_archives(pv, repo, tmp_path / "src")
    before = _objects(moto_endpoint, repo)
    output = json.loads(
        pv("prune", repo, "--keep-last", "1", "--compact", "--min-age", "0", "--dry-run", "--json").out
    )
    assert output["dry_run"] and output["compact"]["dry_run"]
    assert sorted(d["name"] for d in output["decisions"] if not d["keep"]) == ["host-0", "host-1"]
    assert output["compact"]["bytes_freed"] > 0  # what the two pruned archives alone referenced
    assert output["compact"]["archives_purged"] == 0
    assert _objects(moto_endpoint, repo) == before
    assert len(json.loads(pv("list", repo, "--json").out)["archives"]) == 3
    # and it agrees with what the real run then frees
    real = json.loads(pv("prune", repo, "--keep-last", "1", "--compact", "--min-age", "0", "--json").out)
    assert real["compact"]["bytes_freed"] == output["compact"]["bytes_freed"]


def test_prune_compact_text_output_has_both_parts(pv, tmp_path):
    repo = str(tmp_path / "repo")
    _three_archives(pv, repo, tmp_path / "src")
    out = pv("prune", repo, "--keep-last", "2", "--compact", "--min-age", "0").out
    assert "Pruned 1 of 3 archives" in out
    assert "Packs:" in out and "Freed" in out
    assert "run 'packvault compact'" not in out
    assert len(json.loads(pv("list", repo, "--json").out)["archives"]) == 2


@pytest.mark.parametrize("option", [["--threshold", "20"], ["--min-age", "0"], ["--cold-min-age", "1d"]])
def test_compact_options_need_compact(pv, tmp_path, option):
    repo = str(tmp_path / "repo")
    pv("init", repo)
    result = pv("prune", repo, "--keep-last", "1", *option, expect=2)
    assert "--compact" in result.err and len(result.err.strip().splitlines()) == 1


def test_bad_min_age_is_refused_before_anything(pv, tmp_path):
    repo = str(tmp_path / "repo")
    _three_archives(pv, repo, tmp_path / "src")
    result = pv("prune", repo, "--keep-last", "1", "--compact", "--min-age", "soon", expect=2)
    assert "--min-age" in result.err and len(result.err.strip().splitlines()) == 1
    assert len(json.loads(pv("list", repo, "--json").out)["archives"]) == 3
