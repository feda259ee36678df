"""``check`` and ``check --repair`` against real damage, on a local directory and on S3 (moto).

Each case of the corruption matrix builds the same small repository (two archives, several packs), damages
it behind Packvault's back (editing files on disk, or objects in the bucket with boto3), and states:

- what ``check`` must report (problem kinds, and the pack / object / archive / file they name),
- what ``check --repair`` must do,
- what a second ``check`` still reports (damaged bytes stay in their pack: repair never deletes data),
- and that every file not hit by the damage restores bit-exactly from every archive afterwards, while a
  file that lost chunks restores with zeros exactly where the lost chunks were.
"""

# ruff: noqa: F811  (the pv fixtures are imported from tests.support.cli and used as arguments)

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from packvault.archive.archive import iter_archive_items, load_archive
from packvault.repository.index import KIND_META
from packvault.repository.objects import HEADER_SIZE, parse_header
from packvault.repository.reader import ChunkReader
from packvault.repository.repository import Repository
from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)
from tests.support.s3servers import s3_client
from tests.support.settings import env_settings

PACK_SIZE = "256K"


# --- looking behind the backend's back ------------------------------------------------------------------------


class RawStore:
    """The repository's stored objects, by store name (``packs/data/ab/ab...``), on disk or in the bucket."""

    def __init__(self, url: str):
        self.url = url
        if url.startswith("file://"):
            self.root: Path | None = Path(url[len("file://") :])
            return
        self.root = None
        parts = urlsplit(url)
        self.bucket = parts.netloc
        prefix = parts.path.strip("/")
        self.base = prefix + "/" if prefix else ""
        self.client = s3_client(parse_qs(parts.query)["endpoint"][0])

    def names(self, namespace: str) -> list[str]:
        if self.root is not None:
            top = self.root / namespace
            if not top.exists():
                return []
            found = [str(p.relative_to(self.root)) for p in top.rglob("*") if p.is_file()]
        else:
            found = []
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.base + namespace + "/"
            ):
                found += [obj["Key"][len(self.base) :] for obj in page.get("Contents", [])]
        return sorted(n for n in found if not n.endswith(".del") and "/." not in n)

    def find(self, namespace: str, name: str) -> str:
        matches = [n for n in self.names(namespace) if n.rsplit("/", 1)[-1] == name]
        assert len(matches) == 1, (namespace, name, matches)
        return matches[0]

    def read(self, rel: str) -> bytes:
        if self.root is not None:
            return (self.root / rel).read_bytes()
        return self.client.get_object(Bucket=self.bucket, Key=self.base + rel)["Body"].read()

    def write(self, rel: str, data: bytes) -> None:
        if self.root is not None:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=self.base + rel, Body=data)

    def delete(self, rel: str) -> None:
        if self.root is not None:
            (self.root / rel).unlink()
        else:
            self.client.delete_object(Bucket=self.bucket, Key=self.base + rel)

    def flip(self, rel: str, offset: int) -> None:
        data = bytearray(self.read(rel))
        data[offset] ^= 0x10
        self.write(rel, bytes(data))

    def snapshot(self) -> dict[str, bytes]:
        return {n: self.read(n) for ns in ("archives", "index", "packs", "keys") for n in self.names(ns)}


# --- the repository under test -----------------------------------------------------------------------------------


@dataclass
class Chunk:
    id: bytes
    size: int
    kind: int
    pack: str
    offset: int
    stored: int


@dataclass
class Fixture:
    url: str
    raw: RawStore
    tmp: Path
    contents: dict[str, dict[str, bytes]]  # archive -> path -> content
    chunks: dict[str, dict[str, list[Chunk]]]  # archive -> path -> chunks
    meta: dict[str, dict[str, Chunk]] = field(default_factory=dict)  # archive -> {"archive"|"items": object}

    def p(self, short: str) -> str:
        """The archive path of a file under the test's directory (absolute, without the leading slash)."""
        return str(self.tmp / short).lstrip("/")


def _random(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def build(pv, url: str, tmp: Path) -> Fixture:
    src = tmp / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_bytes(_random(3_000_000, 1))
    (src / "sub" / "b").write_bytes(_random(1_500_000, 2))
    (src / "c").write_bytes(b"small file\n")
    (src / "empty").write_bytes(b"")
    pv("init", url, "--pack-size", PACK_SIZE)
    pv("create", f"{url}::one", "src")
    contents = {"one": _tree(src)}
    (src / "d").write_bytes(_random(1_200_000, 3))
    (src / "c").write_bytes(b"changed small file\n")
    pv("create", f"{url}::two", "src")
    contents["two"] = _tree(src)
    fixture = Fixture(url, RawStore(url), tmp, contents, {})
    with _open(url) as repo, ChunkReader(repo) as reader:
        for entry in repo.archive_entries():
            meta = load_archive(reader, entry)
            assert len(meta.item_ids) == 1, "the item stream of these small archives is one chunk"
            fixture.meta[entry.name] = {
                "archive": _chunk(repo, entry.id, 0),
                "items": _chunk(repo, meta.item_ids[0], 0),
            }
            fixture.chunks[entry.name] = {
                item["p"].decode(): [_chunk(repo, cid, size) for cid, size in item.get("c") or []]
                for item in iter_archive_items(reader, meta)
                if item["t"] == "f"
            }
    return fixture


def _chunk(repo: Repository, chunk_id: bytes, size: int) -> Chunk:
    loc = repo.index.get(chunk_id)
    return Chunk(chunk_id, size, loc.kind, loc.pack, loc.offset, loc.size)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p).lstrip("/"): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _open(url: str) -> Repository:
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock=None)
    return repo


def pack_rel(fx: Fixture, chunk: Chunk) -> str:
    namespace = "packs/meta" if chunk.kind == KIND_META else "packs/data"
    return fx.raw.find(namespace, chunk.pack)


def check_json(pv, *args: str, expect: int | None = None) -> tuple[int, dict]:
    result = pv("check", *args, "--json", expect=expect)
    assert result.out, f"check {' '.join(args)} -> {result.rc}, no output: {result.err}"
    return result.rc, json.loads(result.out)


def kinds(doc: dict) -> set[str]:
    return {p["kind"] for p in doc["problems"]}


def verify_restore(
    pv,
    fx: Fixture,
    *,
    damaged: dict[str, set[bytes]],
    gone: set[tuple[str, str]] = frozenset(),
    archives=("one", "two"),
) -> None:
    """Every file restores bit-exactly, except: files with lost chunks have zeros exactly there, and files
    whose metadata was lost (``gone``) are absent."""
    for archive in archives:
        target = fx.tmp / f"restore-{archive}-{random.random()}"
        # a file repaired with zeros restores with a warning naming it (exit 1), never silently
        hurt = damaged.get(archive, set())
        incomplete = any(a == archive for a, _ in gone)  # its file list lost a part: a warning, exit 1
        result = pv("extract", f"{fx.url}::{archive}", "--target", str(target), expect=1 if hurt or incomplete else 0)
        if incomplete:
            assert "archive is damaged" in result.err
        for path in hurt:
            assert f"{path}: restored with " in result.err and "replaced by zeros; see check" in result.err
        for path, content in fx.contents[archive].items():
            restored = target / path
            if (archive, path) in gone:
                assert not restored.exists(), f"{archive}:{path} should be gone with its metadata"
                continue
            data = restored.read_bytes()
            if path not in damaged.get(archive, set()):
                assert data == content, f"{archive}:{path} does not restore bit-exactly"
                continue
            assert len(data) == len(content)
            pos = 0
            for chunk in fx.chunks[archive][path]:
                part = data[pos : pos + chunk.size]
                if chunk.id in damaged["lost_ids"]:
                    assert part == bytes(chunk.size), f"{archive}:{path}: lost chunk not zero-filled"
                else:
                    assert part == content[pos : pos + chunk.size], f"{archive}:{path}: intact chunk differs"
                pos += chunk.size


@pytest.fixture(
    params=[
        "file",
        pytest.param("moto", marks=pytest.mark.slow),
        pytest.param("localstack", marks=[pytest.mark.localstack, pytest.mark.slow]),
    ]
)
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh repository location on each kind of backend; the S3 runs are the slow ones."""
    if request.param == "file":
        return f"file://{tmp_path / 'repo'}"
    endpoint = request.getfixturevalue(f"{request.param}_endpoint")
    return request.getfixturevalue("make_s3_url")(endpoint)


@pytest.fixture
def fx(pv, backend_url, tmp_path, monkeypatch) -> Fixture:
    monkeypatch.chdir(tmp_path)
    return build(pv, backend_url, tmp_path)


# --- the corruption matrix -------------------------------------------------------------------------------------


def _damaged_files(fx: Fixture, lost: set[bytes]) -> dict:
    result: dict = {"lost_ids": lost}
    for archive, files in fx.chunks.items():
        result[archive] = {path for path, chunks in files.items() if any(c.id in lost for c in chunks)}
    return result


def _problem_files(doc: dict) -> set[tuple[str, str]]:
    return {(p["archive"], p["path"]) for p in doc["problems"] if p["kind"] == "file-damaged"}


def _expected_files(damaged: dict) -> set[tuple[str, str]]:
    return {(a, p) for a in ("one", "two") for p in damaged[a]}


def _data_case(
    fx: Fixture,
    pv,
    chunk: Chunk,
    damage,
    expect_kinds: set[str],
    residual: set[str],
    *,
    keyless: bool = True,
    lost: set[bytes] | None = None,
) -> None:
    damage(chunk)
    lost = lost or {chunk.id}
    damaged = _damaged_files(fx, lost)
    rc, doc = check_json(pv, fx.url)
    assert rc == 1
    assert expect_kinds <= kinds(doc), doc["problems"]
    named = [p for p in doc["problems"] if p.get("object") == chunk.id.hex() and p["level"] == "repository"]
    assert named and all(p["pack"] == chunk.pack for p in named), doc["problems"]
    assert _problem_files(doc) == _expected_files(damaged)
    # --repository-only sees damage inside packs without the key; a missing pack only the sealed index knows
    rc, bare = check_json(pv, fx.url, "--repository-only")
    if keyless:
        assert rc == 1 and any(p.get("pack") == chunk.pack for p in bare["problems"])
    else:
        assert rc == 0 and bare["problems"] == []
    rc, rep = check_json(pv, fx.url, "--repair")
    assert rc == 1
    assert any("marked damaged" in r for r in rep["repairs"]) and any("rebuild the index" in r for r in rep["repairs"])
    rc, after = check_json(pv, fx.url)
    # a repaired file restores with zeros: it stays a problem (issue 14), named by archive and path
    assert kinds(after) == residual | {"file-repaired"}, after["problems"]
    assert rc == 1
    repaired = {(p["archive"], p["path"]) for p in after["problems"] if p["level"] == "archives"}
    assert {p["kind"] for p in after["problems"] if p["level"] == "archives"} == {"file-repaired"}
    assert repaired == _expected_files(damaged)
    verify_restore(pv, fx, damaged=damaged)
    # a second repair has nothing left to do with the archives
    rc, again = check_json(pv, fx.url, "--repair")
    assert not [r for r in again["repairs"] if "archive" in r], again["repairs"]


def test_bit_flip_in_data_object(pv, fx):
    chunk = fx.chunks["one"][fx.p("src/sub/b")][0]
    rel = pack_rel(fx, chunk)
    header = parse_header(fx.raw.read(rel), chunk.offset)

    def damage(c: Chunk) -> None:
        fx.raw.flip(rel, c.offset + HEADER_SIZE + header.meta_size + 100)

    _data_case(fx, pv, chunk, damage, {"object-damaged", "pack-name", "file-damaged"}, {"pack-name", "bytes-damaged"})


def test_bit_flip_in_object_header(pv, fx):
    chunk = fx.chunks["one"][fx.p("src/a")][-1]
    rel = pack_rel(fx, chunk)
    _data_case(
        fx,
        pv,
        chunk,
        lambda c: fx.raw.flip(rel, c.offset + 20),
        {"object-damaged", "pack-name", "file-damaged"},
        {"pack-name", "bytes-damaged"},
    )


def test_truncated_pack(pv, fx):
    # chunk boundaries depend on the key, so find a data chunk that is the last object of its pack
    candidates = [c for archive in ("two", "one") for chunks in fx.chunks[archive].values() for c in chunks]
    chunk = next(c for c in candidates if c.offset + c.stored == len(fx.raw.read(pack_rel(fx, c))))
    rel = pack_rel(fx, chunk)

    def damage(c: Chunk) -> None:
        fx.raw.write(rel, fx.raw.read(rel)[:-100])

    _data_case(fx, pv, chunk, damage, {"object-damaged", "pack-name", "file-damaged"}, {"pack-name", "bytes-damaged"})


def test_missing_pack(pv, fx):
    chunk = fx.chunks["one"][fx.p("src/a")][0]
    rel = pack_rel(fx, chunk)
    in_pack = {
        c.id for files in fx.chunks.values() for chunks in files.values() for c in chunks if c.pack == chunk.pack
    }
    _data_case(
        fx,
        pv,
        chunk,
        lambda c: fx.raw.delete(rel),
        {"pack-missing", "file-damaged"},
        set(),
        keyless=False,
        lost=in_pack,
    )


def test_bit_flip_in_item_stream(pv, fx):
    items = fx.meta["one"]["items"]
    rel = pack_rel(fx, items)
    fx.raw.flip(rel, items.offset + items.stored - 5)
    rc, doc = check_json(pv, fx.url)
    assert rc == 1
    assert {"object-damaged", "items-lost"} <= kinds(doc)
    lost = [p for p in doc["problems"] if p["kind"] == "items-lost"]
    assert lost[0]["archive"] == "one" and lost[0]["object"] == items.id.hex()
    rc, rep = check_json(pv, fx.url, "--repair")
    assert rc == 1 and any("new item stream" in r for r in rep["repairs"])
    rc, after = check_json(pv, fx.url)
    # the archive whose file list lost a part stays damaged (issue 14): compact keeps its data
    assert kinds(after) == {"pack-name", "bytes-damaged", "archive-damaged"}, after["problems"]
    assert [p["archive"] for p in after["problems"] if p["kind"] == "archive-damaged"] == ["one"]
    gone = {("one", path) for path in fx.contents["one"]}
    verify_restore(pv, fx, damaged={"lost_ids": set()}, gone=gone)


def test_bit_flip_in_archive_metadata(pv, fx):
    archive = fx.meta["one"]["archive"]
    rel = pack_rel(fx, archive)
    fx.raw.flip(rel, archive.offset + HEADER_SIZE + 3)
    rc, doc = check_json(pv, fx.url)
    assert rc == 1
    meta_lost = [p for p in doc["problems"] if p["kind"] == "archive-meta-lost"]
    assert meta_lost and meta_lost[0]["archive"] == "one" and meta_lost[0]["object"] == archive.id.hex()
    assert any(p["kind"] == "object-damaged" and p["pack"] == archive.pack for p in doc["problems"])
    rc, rep = check_json(pv, fx.url, "--repair")
    # the entry is kept (issue 14): retiring it would let compact delete the data it may reference
    assert not any("soft-delete" in r and "'one'" in r for r in rep["repairs"]), rep["repairs"]
    assert any("metadata is lost" in n and "'one'" in n for n in rep["notes"]), rep["notes"]
    rc, after = check_json(pv, fx.url)
    assert kinds(after) == {"pack-name", "bytes-damaged", "archive-meta-lost"}, after["problems"]
    listing = pv("list", fx.url, "--json").out
    assert '"two"' in listing and '"one"' in listing
    verify_restore(pv, fx, damaged={"lost_ids": set()}, archives=("two",))


def test_extra_garbage_pack(pv, fx):
    name = "ab" + "0" * 62
    fx.raw.write(f"packs/data/ab/{name}", _random(5000, 9))
    rc, doc = check_json(pv, fx.url)
    assert rc == 1
    assert kinds(doc) == {"pack-name", "bytes-damaged"}
    assert {p["pack"] for p in doc["problems"]} == {name}
    before = fx.raw.snapshot()
    rc, rep = check_json(pv, fx.url, "--repair")
    assert rep["repairs"] == []
    assert fx.raw.snapshot().keys() >= before.keys(), "repair deletes nothing"
    verify_restore(pv, fx, damaged={"lost_ids": set()})


def test_missing_index_fragments(pv, fx):
    for rel in fx.raw.names("index"):
        fx.raw.delete(rel)
    rc, doc = check_json(pv, fx.url)
    assert rc == 1
    # whole packs nothing indexes are what an interrupted run leaves (a note); the damage is that archives
    # reference chunks the index lost
    assert {"index-missing", "chunks-unindexed"} <= kinds(doc)
    assert any("none indexed" in note for note in doc["notes"])
    assert "file-damaged" not in kinds(doc), "chunks still in the packs are not lost"
    rc, rep = check_json(pv, fx.url, "--repair")
    assert rc == 1 and any("rebuild the index" in r for r in rep["repairs"])
    assert fx.raw.names("index"), "new fragments written"
    rc, after = check_json(pv, fx.url, expect=0)
    assert after["problems"] == []
    verify_restore(pv, fx, damaged={"lost_ids": set()})


def test_deleted_archive_entry(pv, fx):
    """An archive whose entry is missing (deleted, or never written: a create interrupted between its
    metadata and its entry) is a note, not a problem (issue 15); repair can still bring it back."""
    with _open(fx.url) as repo:
        key = {e.name: k for e, k in ((e, repo.entry_names()[e.id]) for e in repo.archive_entries())}["one"]
    fx.raw.delete(fx.raw.find("archives", key))
    rc, doc = check_json(pv, fx.url, expect=0)
    assert doc["problems"] == []
    (note,) = [n for n in doc["notes"] if "has no archives/ entry" in n]
    assert "'one'" in note and fx.meta["one"]["archive"].id.hex()[:16] in note and "check --repair" in note
    rc, rep = check_json(pv, fx.url, "--repair", "--dry-run")
    assert any("re-create" in r for r in rep["repairs"])
    assert len(fx.raw.names("archives")) == 1, "--dry-run changes nothing"
    rc, rep = check_json(pv, fx.url, "--repair")
    assert rc == 0 and any("re-create" in r and "'one'" in r for r in rep["repairs"])
    check_json(pv, fx.url, expect=0)
    verify_restore(pv, fx, damaged={"lost_ids": set()})


def test_interrupted_attempt_of_an_existing_archive_is_no_problem_and_not_recreated(pv, fx):
    """A create killed after its metadata, then run again under the same name: check says nothing is wrong,
    and repair does not add a duplicate 'NAME.recovered-...' archive (issue 14, minor)."""
    with _open(fx.url) as repo:
        key = repo.entry_names()[repo.find_archive("two").id]
    fx.raw.delete(fx.raw.find("archives", key))  # the first attempt of "two" never got its entry
    pv("create", f"{fx.url}::two", "src")  # the rerun
    rc, doc = check_json(pv, fx.url, expect=0)
    assert any("interrupted attempt" in n and "'two'" in n for n in doc["notes"])
    rc, rep = check_json(pv, fx.url, "--repair", expect=0)
    assert not [r for r in rep["repairs"] if "re-create" in r]
    names = [a["name"] for a in json.loads(pv("list", fx.url, "--json").out)["archives"]]
    assert sorted(names) == ["one", "two"]


def test_interrupted_first_backup_is_a_note(pv, fx):
    """Packs without fragments and without archives: what a first backup killed before its first checkpoint
    leaves (issue 15).  A note saying what to run, exit 0."""
    for namespace in ("index", "archives"):
        for rel in fx.raw.names(namespace):
            fx.raw.delete(rel)
    rc, doc = check_json(pv, fx.url, expect=0)
    assert doc["problems"] == []
    assert any("interrupted first backup" in n and "compact" in n for n in doc["notes"])


def test_damaged_archive_entry(pv, fx):
    names = fx.raw.names("archives")
    fx.raw.flip(names[0], HEADER_SIZE + 2)
    rc, doc = check_json(pv, fx.url)
    assert rc == 1 and {"entry-damaged", "entry-missing"} <= kinds(doc)
    rc, rep = check_json(pv, fx.url, "--repair")
    assert any("re-create" in r for r in rep["repairs"]) and any("soft-delete" in r for r in rep["repairs"])
    check_json(pv, fx.url, expect=0)
    verify_restore(pv, fx, damaged={"lost_ids": set()})


def test_corrupted_key(pv, fx):
    (rel,) = fx.raw.names("keys")
    fx.raw.flip(rel, 40)
    result = pv("check", fx.url, expect=2)
    assert "key is damaged" in result.err
    pv("check", fx.url, "--repair", expect=2)
    rc, doc = check_json(pv, fx.url, "--repository-only")
    assert rc == 1 and kinds(doc) == {"key-damaged"}


# --- more behaviour ----------------------------------------------------------------------------------------------


def test_clean_repository_reads_each_pack_once(pv, fx):
    rc, doc = check_json(pv, fx.url, "--verify-data", expect=0)
    stats = doc["stats"]
    packs = len(fx.raw.names("packs"))
    assert stats["packs_read"] == packs and stats["data_packs_read"] == stats["packs_data"]
    assert stats["objects_verified"] == stats["objects"] > packs - 1
    small = len(fx.raw.names("index")) + len(fx.raw.names("archives")) + len(fx.raw.names("keys"))
    # one GET per pack, per small object, plus config, epoch and lock traffic: never one per chunk
    assert stats["requests"]["GET"] <= packs + small + 4
    out = pv("check", fx.url).out
    assert "No problems found" in out


def test_repository_only_needs_no_passphrase(pv, fx, monkeypatch):
    monkeypatch.delenv("PACKVAULT_PASSPHRASE")
    rc, doc = check_json(pv, fx.url, "--repository-only", expect=0)
    assert doc["stats"]["packs_read"] == len(fx.raw.names("packs"))
    pv("check", fx.url, expect=2)  # everything else needs the key


def test_read_data_subset_rotates_over_all_packs(pv, fx):
    chunk = fx.chunks["two"][fx.p("src/d")][0]
    fx.raw.flip(pack_rel(fx, chunk), chunk.offset + chunk.stored - 1)
    total = len(fx.raw.names("packs/data"))
    per_run = -(-total * 30 // 100)
    found = 0
    read = 0
    for _ in range(-(-total // per_run)):
        rc, doc = check_json(pv, fx.url, "--read-data-subset", "30%")
        assert doc["stats"]["data_packs_read"] == per_run and not doc["complete"]
        read += per_run
        found += any(p.get("object") == chunk.id.hex() for p in doc["problems"])
    assert read >= total and found >= 1, "the rotation reached the damaged pack"
    groups = [check_json(pv, fx.url, "--read-data-subset", f"{n}/3")[1]["stats"]["data_packs_read"] for n in (1, 2, 3)]
    assert sum(groups) == total


def test_max_duration_resumes(pv, fx):
    total = len(fx.raw.names("packs/data"))
    seen = 0
    for _ in range(total):
        rc, doc = check_json(pv, fx.url, "--max-duration", "0.000001", "--verify-data", expect=0)
        seen += doc["stats"]["data_packs_read"]
        assert doc["stats"]["data_packs_read"] >= 1
    assert seen >= total


def test_usage_errors(pv, fx):
    pv("check", fx.url, "--repository-only", "--archives-only", expect=2)
    pv("check", fx.url, "--repair", "--read-data-subset", "10%", expect=2)
    pv("check", fx.url, "--read-data-subset", "banana", expect=2)
    pv("check", fx.url, "--dry-run", expect=2)


def test_human_output_names_the_damage(pv, fx):
    chunk = fx.chunks["one"][fx.p("src/a")][0]
    fx.raw.delete(pack_rel(fx, chunk))
    out = pv("check", fx.url, expect=1).out
    assert f"pack {chunk.pack}" in out and "is missing" in out
    path = fx.p("src/a")
    assert f"archive 'one', file '{path}'" in out and f"archive 'two', file '{path}'" in out
    assert "problem(s) found" in out


def test_repair_heals_when_the_chunk_comes_back(pv, fx):
    chunk = fx.chunks["one"][fx.p("src/a")][0]
    in_pack = {
        c.id for files in fx.chunks.values() for chunks in files.values() for c in chunks if c.pack == chunk.pack
    }
    fx.raw.delete(pack_rel(fx, chunk))
    pv("check", fx.url, "--repair", expect=1)
    rc, doc = check_json(pv, fx.url, expect=1)  # the patched files stay reported until healed
    assert kinds(doc) == {"file-repaired"}
    # a new backup of the same tree stores the lost chunks of its current content again
    pv("create", f"{fx.url}::three", "src", "--no-files-cache")
    rc, doc = check_json(pv, fx.url, expect=1)
    assert any("repair restores it" in n for n in doc["notes"])
    rc, rep = check_json(pv, fx.url, "--repair")
    assert any("healed" in r and fx.p("src/a") in r for r in rep["repairs"])
    rc, healed = check_json(pv, fx.url)
    assert fx.p("src/a") not in {p.get("path") for p in healed["problems"]}, "a healed file is no problem"
    current = {c.id for chunks in fx.chunks["two"].values() for c in chunks}
    verify_restore(pv, fx, damaged=_damaged_files(fx, in_pack - current))


def test_repair_keeps_every_pack(pv, fx):
    chunk = fx.chunks["one"][fx.p("src/sub/b")][0]
    rel = pack_rel(fx, chunk)
    fx.raw.flip(rel, chunk.offset + chunk.stored - 1)
    packs_before = set(fx.raw.names("packs"))
    pv("check", fx.url, "--repair", expect=1)
    assert packs_before <= set(fx.raw.names("packs")), "repair never deletes a pack"
    assert fx.raw.read(rel)  # the damaged pack stays


def test_archives_only_reads_no_whole_pack(pv, fx):
    rc, doc = check_json(pv, fx.url, "--archives-only", expect=0)
    assert doc["stats"]["packs_read"] == 0 and doc["stats"]["archives"] == 2
    chunk = fx.chunks["one"][fx.p("src/a")][0]
    fx.raw.delete(pack_rel(fx, chunk))
    rc, doc = check_json(pv, fx.url, "--archives-only", expect=1)
    assert {"pack-missing", "file-damaged"} <= kinds(doc)


def test_item_stream_survives_a_lost_chunk():
    """Decoding resumes after a gap at the next whole item; items before and after it survive."""
    import msgpack

    from packvault.archive.items import iter_items_robust

    items = [{"p": f"dir/file{i:04d}".encode(), "t": "f", "s": i, "c": [[os.urandom(32), i]]} for i in range(300)]
    stream = b"".join(msgpack.packb(item) for item in items)
    cuts = [0, 4000, 9000, 15000, len(stream)]
    chunks = [stream[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    got = list(iter_items_robust([chunks[0], None, chunks[2], chunks[3]]))
    paths = [item["p"] for item in got]
    assert paths == sorted(paths) and len(set(paths)) == len(paths)
    first_lost = next(i for i, item in enumerate(items) if item["p"] not in paths)
    assert all(items[i]["p"] in paths for i in range(first_lost))
    resumed = next(i for i in range(first_lost, len(items)) if items[i]["p"] in paths)
    assert all(items[i]["p"] in paths for i in range(resumed, len(items)))
    starts = [0]
    for item in items:
        starts.append(starts[-1] + len(msgpack.packb(item)))
    # exactly the items touching the lost bytes [cuts[1], cuts[2]) are gone
    assert first_lost == max(i for i in range(len(items)) if starts[i] < cuts[1])
    assert resumed == min(i for i in range(len(items)) if starts[i] >= cuts[2])
    assert got == [item for item in items if item["p"] in paths], "recovered items are unchanged"
