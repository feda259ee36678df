"""SIGINT / SIGTERM during ``create`` (a real subprocess): exit 130 / 143 after a checkpoint of the packs
already stored, no archive, and a rerun that sends less than one pack per kind a second time."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
from borgstore.constants import TMP_SUFFIX

from packvault.repository.repository import Repository
from tests.support.cli import cli_command
from tests.support.packgate import gate_command, gate_env, wait_parked
from tests.support.settings import env_settings

KiB = 1024
MiB = 1024 * KiB
PACK_SIZE = 256 * KiB


def _stored_packs(repo: Path, kind: str) -> dict[str, int]:
    return {
        p.name: p.stat().st_size
        for p in (repo / "packs" / kind).rglob("*")
        if p.is_file() and not p.name.endswith(TMP_SUFFIX)
    }


def _indexed(repo: Path, passphrase: str) -> dict[int, dict[str, int]]:
    """kind -> pack -> bytes of it the index points at."""
    r = Repository(str(repo), settings=env_settings())
    r.open(lambda: passphrase, lock=None)
    try:
        out: dict[int, dict[str, int]] = {0: {}, 1: {}}
        for cid, _ in r.index.entries():
            loc = r.index.get(cid)
            out[loc.kind][loc.pack] = out[loc.kind].get(loc.pack, 0) + loc.size
    finally:
        r.close()
    return out


def _unreferenced_bytes(repo: Path, passphrase: str) -> dict[str, int]:
    """Per kind: bytes in stored packs that no index entry points at, i.e. uploaded for nothing."""
    indexed = _indexed(repo, passphrase)
    return {
        kind: sum(_stored_packs(repo, kind).values()) - sum(indexed[number].values())
        for number, kind in ((0, "data"), (1, "meta"))
    }


SOURCE_MIB = 96  # 1 MiB files: a pack each


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_create_checkpoints_and_the_rerun_resends_less_than_a_pack(pv, pv_env, tmp_path, signum, code):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(signum)
    # the signal comes while the uploads are held after 40 packs: the backup is part way, however
    # slow the machine
    for i in range(SOURCE_MIB):
        (src / f"f{i:02d}").write_bytes(rnd.randbytes(1 * MiB))
    repo = tmp_path / "repo"
    pv("init", repo, "--pack-size", "256K")
    passphrase = pv_env["PACKVAULT_PASSPHRASE"]
    # no periodic checkpoint during the run: what is indexed after the signal is the signal's checkpoint
    env = {**os.environ, **pv_env, "PACKVAULT_CHECKPOINT_PACKS": "100000", "PACKVAULT_CHECKPOINT_SECONDS": "100000"}
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        gate_command("create", f"{repo}::a", src),
        env={**env, **gate_env(gate, after=40)},  # 40 of ~96 packs
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_parked(gate, proc)  # 40 packs are stored and the uploads held: the backup is still running
    proc.send_signal(signum)
    gate.touch()
    out, err = proc.communicate(timeout=120)

    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("packvault: interrupted by "), err
    assert "indexed" in lines[0]
    assert json.loads(pv("list", "--json", repo).out)["archives"] == []
    indexed = _indexed(repo, passphrase)
    stored_data = _stored_packs(repo, "data")
    assert set(indexed[0]) <= set(stored_data) and set(indexed[1]) <= set(_stored_packs(repo, "meta"))
    assert sum(indexed[0].values()) >= 40 * PACK_SIZE * 0.9  # the checkpoint holds what was stored
    assert _unreferenced_bytes(repo, passphrase)["data"] < PACK_SIZE

    rerun = subprocess.run(
        cli_command("create", "--json", "--stats", f"{repo}::a", src), env=env, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    # everything stored twice is now unreferenced pack bytes: less than one pack per kind
    wasted = _unreferenced_bytes(repo, passphrase)
    assert wasted["data"] < PACK_SIZE and wasted["meta"] < PACK_SIZE, wasted
    sent = json.loads(rerun.stdout)["stats"]["compressed_size"]
    assert sent <= SOURCE_MIB * MiB + 256 * KiB - sum(indexed[0].values()) + PACK_SIZE
    assert json.loads(pv("check", repo, "--json").out)["problems"] == []
