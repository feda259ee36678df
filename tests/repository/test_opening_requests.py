"""What opening an S3 repository costs: every request of it answers something no other request answers
(issue 21: prune + compact must cost no more requests than restic's forget --prune, and every command pays
for the opening)."""

from __future__ import annotations

import os

import pytest

from packvault.errors import BucketNotFound
from packvault.repository.repository import Repository
from tests.support.settings import env_settings

PASSPHRASE = "correct horse battery staple"


def _opened(url: str, *, lock: str | None = "exclusive") -> dict[str, int]:
    """The requests of one opening (config, key, lock) of ``url``, by kind."""
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock=lock)
        return repo.request_stats()
    finally:
        repo.close()


def test_opening_sends_no_head_the_config_read_answers_it(pv, moto_endpoint, make_s3_url):
    """The bucket's existence is proven by the config's GET (a missing bucket fails that GET with its own
    error), so the opening does not ask for it first."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    assert _opened(url)["HEAD"] == 0


def test_opening_a_repository_in_a_missing_bucket_says_the_bucket_is_missing(s3_env, moto_endpoint):
    url = f"s3://no-such-bucket-pv-{os.getpid()}/repo?endpoint={moto_endpoint}&path_style=1"
    repo = Repository(url, settings=env_settings())
    with pytest.raises(BucketNotFound) as info:
        repo.open(lambda: PASSPHRASE, lock="exclusive")
    repo.close()
    assert "does not exist" in str(info.value) and info.value.exit_code == 2


def test_a_missing_bucket_is_one_line_from_the_cli(pv, s3_env, moto_endpoint):
    result = pv("list", f"s3://no-such-bucket-pv-{os.getpid()}/repo?endpoint={moto_endpoint}&path_style=1", expect=2)
    assert "does not exist" in result.err and len(result.err.strip().splitlines()) == 1


@pytest.mark.parametrize("exclusive", [True, False])
def test_taking_the_lock_writes_then_lists_once(pv, moto_endpoint, make_s3_url, exclusive):
    """The listing after our own write decides (docs/locks.md); a listing before it answers nothing that one
    does not, so an uncontended lock costs one PUT and one LIST."""
    url = make_s3_url(moto_endpoint)
    pv("init", url)
    repo = Repository(url, settings=env_settings())
    try:
        repo.open(lambda: PASSPHRASE, lock=None)
        before = repo.request_stats()
        repo.acquire_lock(exclusive=exclusive)
        after = repo.request_stats()
    finally:
        repo.close()
    assert {k: after[k] - before[k] for k in ("PUT", "LIST", "GET", "DELETE")} == {
        "PUT": 1, "LIST": 1, "GET": 0, "DELETE": 0
    }
