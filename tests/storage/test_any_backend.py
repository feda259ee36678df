"""The any_backend_url fixture gives a usable, fresh location for each backend kind."""

from __future__ import annotations

import os

from packvault.storage.settings import from_environment
from packvault.storage.url import store_from_location


def test_fresh_location_round_trip(any_backend_url):
    store = store_from_location(any_backend_url, settings=from_environment(os.environ))
    store.create()
    with store:
        store.store("packs/data/00ff", b"pack")
        store.store("config/main", b"cfg")
        assert store.load("packs/data/00ff") == b"pack"
        assert [i.name for i in store.list("packs/data")] == ["00ff"]
        stats = store.backend.request_stats()
        assert stats["PUT"] == 2 and stats["bytes_up"] == 7
