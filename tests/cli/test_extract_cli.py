"""``extract`` as a user meets it (issues 14 and 15): exit codes, ``--strip-components``, restore into a bucket,
and files that ``check --repair`` patched with zeros."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.s3servers import new_bucket, s3_client

KiB = 1024


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "top.txt").write_bytes(b"top\n")
    (root / "sub" / "deep.bin").write_bytes(random.Random(1).randbytes(200 * KiB))
    (root / "sub" / "empty").write_bytes(b"")
    return root


@pytest.fixture
def archived(pv, tmp_path) -> tuple[Path, Path]:
    src = _tree(tmp_path / "src")
    repo = tmp_path / "repo"
    pv("init", repo)
    pv("create", f"{repo}::a", src)
    return repo, src


# --- exit codes ---------------------------------------------------------------------------------------------------


def test_a_path_that_matches_nothing_is_a_warning(pv, archived, tmp_path):
    repo, src = archived
    inside = str(src / "top.txt").lstrip("/")
    result = pv("extract", f"{repo}::a", inside, "no/such/path", "--target", tmp_path / "out", expect=1)
    assert "no/such/path: matches nothing in the archive" in result.err
    assert (tmp_path / "out" / inside).read_bytes() == b"top\n"


def test_a_target_that_is_a_file_is_one_line(pv, archived, tmp_path):
    repo, _ = archived
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"x")
    for target in (blocker, blocker / "below"):
        result = pv("extract", f"{repo}::a", "--target", target, expect=2)
        assert result.err.count("\n") == 1 and result.err.startswith("packvault: error: cannot restore into")
        assert "Traceback" not in result.err


def test_a_target_that_is_not_writable_is_one_line(pv, archived, tmp_path):
    repo, _ = archived
    if os.geteuid() == 0:  # root writes through modes: use a file system that refuses even root
        target = Path("/sys/packvault-restore-test")
        try:
            os.mkdir(target)
        except OSError:
            pass
        else:
            os.rmdir(target)
            pytest.skip("no location refuses root here")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        target = locked / "out"
    result = pv("extract", f"{repo}::a", "--target", target, expect=2)
    assert result.err.count("\n") == 1 and result.err.startswith("packvault: error: cannot restore into")


def test_files_not_restored_exit_1_with_a_count(pv, archived, tmp_path):
    """A file that could not be restored is a warning (restore went on): exit 1 and the count."""
    repo, src = archived
    out = tmp_path / "out"
    below = out / str(src).lstrip("/") / "sub"
    below.mkdir(parents=True)
    (below / "deep.bin").mkdir()
    (below / "deep.bin" / "keep").write_bytes(b"in the way")
    result = pv("extract", f"{repo}::a", "--target", out, "--json", expect=1)
    doc = json.loads(result.out)
    assert doc["stats"]["errors"] == 1 and len(doc["errors"]) == 1 and "deep.bin" in doc["errors"][0]
    assert "1 warning(s), 1 entries not restored" in result.err
    assert (below / "empty").exists()


# --- --strip-components -------------------------------------------------------------------------------------------


def test_strip_components_into_a_directory(pv, archived, tmp_path):
    repo, src = archived
    depth = len(src.parts) - 1  # the components of src itself (without the root "/")
    out = tmp_path / "out"
    pv("extract", f"{repo}::a", "--target", out, "--strip-components", depth)
    assert sorted(os.listdir(out)) == ["sub", "top.txt"]
    assert (out / "sub" / "deep.bin").read_bytes() == (src / "sub" / "deep.bin").read_bytes()
    # items with fewer components than stripped are skipped, like tar
    out2 = tmp_path / "out2"
    pv("extract", f"{repo}::a", "--target", out2, "--strip-components", depth + 1)
    assert sorted(os.listdir(out2)) == ["deep.bin", "empty"]
    result = pv("extract", f"{repo}::a", "--target", out2, "--strip-components", "-1", expect=2)
    assert "must not be negative" in result.err


# --- restore into a bucket ----------------------------------------------------------------------------------------


def _objects(endpoint: str, bucket: str) -> dict[str, bytes]:
    client = s3_client(endpoint)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            found[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return found


@pytest.mark.parametrize("server", ["moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def test_extract_into_a_bucket(pv, archived, tmp_path, s3_env, request, server):
    endpoint = request.getfixturevalue(f"{server}_endpoint")
    repo, src = archived
    depth = len(src.parts) - 1
    bucket = new_bucket(endpoint)
    target = f"s3://{bucket}/restored?endpoint={endpoint}"
    doc = json.loads(
        pv("extract", f"{repo}::a", "--target", target, "--strip-components", depth, "--json").out
    )
    expected = {
        "restored/top.txt": b"top\n",
        "restored/sub/deep.bin": (src / "sub" / "deep.bin").read_bytes(),
        "restored/sub/empty": b"",
    }
    assert _objects(endpoint, bucket) == expected
    assert doc["stats"]["nfiles"] == 3
    assert not (Path.cwd() / "s3:").exists() and not list(tmp_path.glob("s3:*"))

    # create-only per key: an existing object is kept unless --overwrite says otherwise
    client = s3_client(endpoint)
    client.put_object(Bucket=bucket, Key="restored/top.txt", Body=b"changed in the bucket")
    doc = json.loads(
        pv("extract", f"{repo}::a", "--target", target, "--strip-components", depth, "--json").out
    )
    assert doc["stats"]["skipped"] == 3 and doc["stats"]["nfiles"] == 0
    assert _objects(endpoint, bucket)["restored/top.txt"] == b"changed in the bucket"
    pv("extract", f"{repo}::a", "--target", target, "--strip-components", depth, "--overwrite", "always")
    assert _objects(endpoint, bucket) == expected

    result = pv("extract", f"{repo}::a", "--target", target, "--delete", expect=2)
    assert result.err.count("\n") == 1 and "--delete" in result.err


def test_extract_into_a_missing_bucket_is_one_line(pv, archived, moto_endpoint, s3_env):
    repo, _ = archived
    result = pv("extract", f"{repo}::a", "--target", f"s3://pv-no-such-bucket-x?endpoint={moto_endpoint}", expect=2)
    assert result.err.count("\n") == 1 and "does not exist" in result.err


# --- files that check --repair patched with zeros -----------------------------------------------------------------


def _data_pack_names(location: str) -> set[str]:
    if not location.startswith("s3://"):
        return {str(p) for p in (Path(location) / "packs" / "data").rglob("*") if p.is_file()}
    parts = urlsplit(location)
    client = s3_client(parse_qs(parts.query)["endpoint"][0])
    prefix = parts.path.strip("/") + "/packs/data/"
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=parts.netloc, Prefix=prefix)
    return {obj["Key"] for page in pages for obj in page.get("Contents", [])}


def _delete_pack(location: str, name: str) -> None:
    if not location.startswith("s3://"):
        os.unlink(name)
        return
    parts = urlsplit(location)
    s3_client(parse_qs(parts.query)["endpoint"][0]).delete_object(Bucket=parts.netloc, Key=name)


@pytest.mark.parametrize("backend", ["file", "moto"])
def test_files_patched_by_repair_are_reported(pv, tmp_path, request, backend):
    if backend == "file":
        location = str(tmp_path / "repo")
    else:
        location = request.getfixturevalue("make_s3_url")(request.getfixturevalue("moto_endpoint"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "hurt.bin").write_bytes(random.Random(7).randbytes(1_500_000))
    (src / "intact.txt").write_bytes(b"intact\n")
    pv("init", location, "--pack-size", "256K")
    pv("create", f"{location}::one", src / "hurt.bin")
    hurt_packs = _data_pack_names(location)
    pv("create", f"{location}::two", src)
    _delete_pack(location, sorted(hurt_packs)[0])
    pv("check", location, "--repair", expect=1)

    hurt = str(src / "hurt.bin").lstrip("/")
    intact = str(src / "intact.txt").lstrip("/")
    out = tmp_path / "out"
    result = pv("extract", f"{location}::two", "--target", out, expect=1)
    assert f"warning: {hurt}: restored with " in result.err
    assert "damaged chunk(s) replaced by zeros; see check" in result.err
    assert intact not in result.err
    assert (out / intact).read_bytes() == b"intact\n"
    restored = (out / hurt).read_bytes()
    assert len(restored) == 1_500_000 and restored != (src / "hurt.bin").read_bytes()

    listing = pv("list", f"{location}::two").out.splitlines()
    marked = [line for line in listing if "damaged" in line]
    assert len(marked) == 1 and marked[0].split()[3] == hurt
    lines = [json.loads(line) for line in pv("list", f"{location}::two", "--json-lines").out.splitlines()]
    by_path = {doc["path"]: doc for doc in lines}
    assert by_path[hurt]["damaged_chunks"] >= 1
    assert "damaged_chunks" not in by_path[intact]
    # a dry run verifies the same and says the same
    result = pv("extract", f"{location}::two", "--target", tmp_path / "dry", "--dry-run", expect=1)
    assert f"{hurt}: restored with " in result.err
