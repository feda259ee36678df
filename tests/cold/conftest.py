"""The cold repository fixture (``helpers.py`` has the rest)."""

from __future__ import annotations

import pytest

from tests.cold.helpers import STEPS, source_tree


@pytest.fixture
def cold_repo(pv, tmp_path, any_backend_url):
    """A repository whose data packs are in DEEP_ARCHIVE, with two archives of ``source_tree``."""
    url = any_backend_url + "&storage_class=DEEP_ARCHIVE"
    src = source_tree(tmp_path / "src")
    pv("init", url, "--pack-size", "256K")
    pv("create", f"{url}::a", src)
    pv("create", f"{url}::b", src)
    return url, src


@pytest.fixture
def manual_restores(moto_endpoint):
    """Restores finish only after STEPS reads of the object, which the test drives (``finish``)."""
    import requests

    api = f"{moto_endpoint}/moto-api/state-manager"
    requests.post(
        f"{api}/set-transition",
        json={"model_name": "s3::keyrestore", "transition": {"progression": "manual", "times": STEPS}},
        timeout=10,
    ).raise_for_status()
    try:
        yield
    finally:
        requests.post(f"{api}/unset-transition", json={"model_name": "s3::keyrestore"}, timeout=10)
