"""The cold repository fixture (``helpers.py`` has the rest)."""

from __future__ import annotations

import pytest

from tests.cold.helpers import source_tree


@pytest.fixture
def cold_repo(pv, tmp_path, any_backend_url):
    """A repository whose data packs are in DEEP_ARCHIVE, with two archives of ``source_tree``."""
    url = any_backend_url + "&storage_class=DEEP_ARCHIVE"
    src = source_tree(tmp_path / "src")
    pv("init", url, "--pack-size", "256K")
    pv("create", f"{url}::a", src)
    pv("create", f"{url}::b", src)
    return url, src
