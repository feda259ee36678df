"""A commit's proofs (its lock's HEAD, the epoch's GET) are asked beside the writes that go out with them: an
index fragment or an archive entry being stored must not hold them up.  To a bucket 50 ms away, a proof that
waits for a PUT is a round trip more per commit (issue 21)."""

# ruff: noqa: F811  (the pv fixtures are imported from tests.support.cli and used as arguments)

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from packvault.repository.repository import Repository
from packvault.storage import layout
from tests.support.cli import pv, pv_env  # noqa: F401  (fixtures)
from tests.support.settings import env_settings

WAIT = 60.0


@pytest.fixture
def locked_repo(pv, tmp_path: Path):
    url = f"file://{tmp_path / 'repo'}"
    pv("init", url)
    repo = Repository(url, settings=env_settings())
    repo.open(lambda: os.environ["PACKVAULT_PASSPHRASE"], lock="shared")
    try:
        yield repo
    finally:
        repo.close()


def _stalled_stores(repo: Repository, namespace: str) -> tuple[threading.Event, threading.Event]:
    """Make every store into ``namespace`` wait for the returned ``release``; ``entered`` is set once one is
    waiting."""
    backend = repo.store.backend
    real_store = backend.store
    entered, release = threading.Event(), threading.Event()

    def store(name, value):
        if name.startswith(namespace + "/"):
            entered.set()
            assert release.wait(WAIT), "the stalled store was never released"
        return real_store(name, value)

    backend.store = store
    return entered, release


@pytest.mark.parametrize("namespace", [layout.INDEX, layout.ARCHIVES])
def test_the_lock_and_epoch_proofs_are_answered_while_a_small_object_is_stored(locked_repo, namespace):
    repo = locked_repo
    entered, release = _stalled_stores(repo, namespace)
    writer = threading.Thread(target=repo.put_sealed, args=(namespace, 1, b"x" * 100))
    writer.start()
    try:
        assert entered.wait(WAIT)
        proven = threading.Event()

        def prove() -> None:
            repo.check_lock(verify=True)
            repo.epoch()
            proven.set()

        threading.Thread(target=prove, daemon=True).start()
        assert proven.wait(WAIT), "the proofs waited for the store of an unrelated object"
    finally:
        release.set()
        writer.join(WAIT)
    assert not writer.is_alive()
