"""kill -9 during create, then run again: completes, restores bit-exactly, re-uploads at most one checkpoint."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess

import pytest

from packvault.repository.repository import Repository
from tests.support.cli import cli_command, tree_snapshot
from tests.support.packgate import gate_command, gate_env, wait_parked
from tests.support.settings import env_settings

MiB = 1024 * 1024


@pytest.mark.slow
def test_kill_9_during_create_then_rerun(pv, tmp_path, pv_env):
    src = tmp_path / "src"
    src.mkdir()
    rnd = random.Random(1)
    for i in range(24):
        (src / f"f{i:02d}").write_bytes(rnd.randbytes(4 * MiB))
    repo = tmp_path / "repo"
    pack_size = 1 * MiB
    checkpoint_packs = 4
    pv("init", repo, "--pack-size", "1M")
    env = {**os.environ, **pv_env, "PACKVAULT_CHECKPOINT_PACKS": str(checkpoint_packs)}
    gate = tmp_path / "gate"
    proc = subprocess.Popen(
        gate_command("create", f"{repo}::a", src), env={**env, **gate_env(gate, after=40)}, stderr=subprocess.DEVNULL
    )
    wait_parked(gate, proc)  # a good part is uploaded (and the uploads held): kill hard
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    r = Repository(str(repo), settings=env_settings())
    r.open(lambda: pv_env["PACKVAULT_PASSPHRASE"], lock=None)
    uploaded = sum(info.size for info in r.list_packs(0))
    indexed = sum(r.index.get(cid).size for cid, _ in r.index.entries() if r.index.get(cid).kind == 0)
    r.close()
    assert uploaded - indexed <= checkpoint_packs * (pack_size + 4 * MiB)  # checkpoints kept the index close

    result = subprocess.run(cli_command("create", "--json", f"{repo}::a", src), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)["stats"]
    total = 24 * 4 * MiB
    # the re-run uploads what was never uploaded plus at most one checkpoint's worth of lost work
    assert stats["deduplicated_size"] <= total - indexed + checkpoint_packs * (pack_size + 4 * MiB)
    assert stats["deduplicated_size"] < total * 0.8
    pv("extract", f"{repo}::a", "--target", tmp_path / "out")
    assert tree_snapshot(tmp_path / "out" / str(src).lstrip("/")) == tree_snapshot(src)
    assert json.loads(pv("check", repo, "--json").out)["problems"] == []
