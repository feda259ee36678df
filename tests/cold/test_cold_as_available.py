"""extract writes files as their cold data packs become readable (issue 18), not after the last restore.

moto simulates restores through its state manager: with a manual transition a restore finishes after a
number of reads of the object, so a test that HEADs one pack that many times finishes that pack's restore
and no other's.  The packs of the fixture hold whole files (each file is one chunk of ~200 KiB, packs are
256 KiB), so a pack finished first makes some files, not all, extractable.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from packvault.archive import cold_extract
from tests.cold.helpers import finish, objects_of, start
from tests.support.cli import tree_snapshot

moto_only = pytest.mark.parametrize("any_backend_url", ["moto"], indirect=True)


def data_packs(url: str) -> list[str]:
    return sorted(k for k in objects_of(url) if "/packs/data/" in k)


def files_in(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@moto_only
@pytest.mark.parametrize("policy", [[], ["--overwrite", "never"], ["--overwrite", "if-newer", "--delete"]])
def test_wait_writes_the_files_of_the_packs_readable_first(
    pv, cold_repo, tmp_path, manual_restores, monkeypatch, policy
):
    url, src = cold_repo
    out = tmp_path / "out"
    root = out / str(src).lstrip("/")
    source = files_in(src)
    packs = data_packs(url)
    assert len(packs) >= 2
    seen: list[dict[str, bytes]] = []

    def pause(seconds: float) -> None:  # between two polls: look at the target, then let restores finish
        seen.append(files_in(root) if root.exists() else {})
        if len(seen) == 1:
            start(url, packs)
            finish(url, packs[:1])
        else:
            finish(url, packs[1:])

    monkeypatch.setattr(cold_extract, "_pause", pause)
    result = pv("extract", f"{url}::a", "--target", out, "--wait", "--poll-interval", "0.01", *policy)
    assert len(seen) == 2
    assert seen[0] == {}  # nothing readable before the first poll
    early = seen[1]
    assert 0 < len(early) < len(source)  # the first pack's files, written before the other restores finished
    assert all(source[name] == data for name, data in early.items())
    assert "waiting for the restores of" in result.err
    # identical to a hot extract, directories included (those a pass made count as new for every policy)
    assert tree_snapshot(root) == tree_snapshot(src)


@moto_only
def test_reruns_extract_what_is_readable_and_keep_what_they_wrote(pv, cold_repo, tmp_path, manual_restores):
    url, src = cold_repo
    out = tmp_path / "out"
    root = out / str(src).lstrip("/")
    source = files_in(src)
    packs = data_packs(url)
    first = pv("extract", f"{url}::a", "--target", out, expect=3)
    assert "restore requested for" in first.err
    assert not root.exists() or files_in(root) == {}
    start(url, packs)
    finish(url, packs[:1])
    second = pv("extract", f"{url}::a", "--target", out, expect=3)  # still pending: exit 3 after writing
    assert "files extracted from the packs readable already" in second.err and "rerun" in second.err
    early = files_in(root)
    assert 0 < len(early) < len(source)
    assert all(source[name] == data for name, data in early.items())
    finish(url, packs[1:])
    last = json.loads(pv("extract", "--json", f"{url}::a", "--target", out).out)
    assert last["stats"]["skipped"] == len(early)  # written by the run before: kept, not read again
    assert last["stats"]["nfiles"] == len(source) - len(early)
    assert tree_snapshot(root) == tree_snapshot(src)
