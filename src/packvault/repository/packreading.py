"""What a process other than the repository's own needs to read whole packs: the store's location.

``check --verify-data`` verifies data packs in worker processes (``maintenance/check/workers.py``): each
worker downloads a pack itself and opens every object in it, so neither the pack's bytes nor its plaintext
ever cross a process boundary.  A worker gets the repository's location, location options and settings
(to build a store of its own: a ``Store`` and its S3 client cannot be shared across processes), and nothing
else: no index, no lock, no config.  The key material comes separately, with the work (a ``SealingKit``),
so a worker can start, import its libraries and open its store while the passphrase is still being turned
into a key.  It only reads: packs are immutable and content-named, so a second reader needs no
coordination with the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..settings import Settings
from ..storage.store import Store, backend_of
from ..storage.url import is_s3_url, store_from_location
from .packs import PackStore

if TYPE_CHECKING:
    from .repository import Repository


@dataclass(frozen=True)
class PackReadingKit:
    """Picklable: it travels to a worker process once, when the process starts."""

    location: str
    settings: Settings
    s3_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, repo: Repository) -> PackReadingKit:
        return cls(repo.location, repo.settings, dict(repo.s3_options))

    def backend_modules(self) -> list[str]:
        """The modules a worker process needs to open this location's store, for its pool to load once."""
        return ["packvault.storage.s3.backend"] if is_s3_url(self.location) else []

    def open_reader(self) -> PackReader:
        """A store of this process's own over the repository's location, opened without proving the store
        exists (on S3 a HEAD): the repository's own opening did, and a first pack read fails the same way."""
        store = store_from_location(
            self.location, self.s3_options, cache_dir=self.settings.cache_dir, settings=self.settings.storage
        )
        backend_of(store).skip_open_check()
        store.open()
        return PackReader(store)


class PackReader(PackStore):
    """Reads packs (``load_pack_range``) through a store of its own and counts the requests it makes."""

    def __init__(self, store: Store):
        self.store = store

    def request_stats(self) -> dict[str, int]:
        return dict(backend_of(self.store).request_stats())

    def close(self) -> None:
        self.store.close()
