"""What an opening remembers in the cache directory so that it asks a distant bucket less: the name of the
key blob that opened the repository (by repository and by location) and the config MAC it verified.

A part of ``Keyring`` (``keyring.py``), whose store, settings and config it uses.  Only names and a MAC are
kept, never key material: whatever a hint leads to is unsealed and checked like anything listed.
"""

from __future__ import annotations

import contextlib
import re
from concurrent.futures import Future, ThreadPoolExecutor

from borgstore.backends.errors import ObjectNotFound

from ..settings import Settings
from ..storage import layout
from ..storage.store import Store, load_beside
from .cache import RepositoryCache
from .config import RepoConfig

CONFIG_MAC_HINT_NAME = "config-mac"  # see ``KeyHints._remembered_config_mac``
KEY_HINT_NAME = "key-name"  # in the repository's cache directory: see ``KeyHints._remembered_key_blob``
LOCATION_KEY_HINTS = "key-names"  # in the cache directory, by location: see ``KeyHints.prefetch_remembered_key``
KEY_NAME = re.compile(r"[0-9a-f]{64}")  # a key blob's store name (``content_name``)


class KeyHints:
    store: Store
    settings: Settings
    location: str
    config: RepoConfig | None

    # The name of the key blob that opened the repository last time, in its cache directory: the next opening
    # reads that blob without listing keys/ first (a LIST on every command).  Only a name is kept, never key
    # material: the blob read by it is unsealed and checked like any listed one, and a name that is gone,
    # damaged or of another passphrase's blob only means the keys are listed as before.

    def _key_hint(self) -> RepositoryCache | None:
        if self.config is None or self.config.encryption != "repokey":
            return None
        return RepositoryCache(self.settings.cache_dir, self.config.repository_id)

    def _remembered_key_blob(self) -> tuple[str, bytes] | None:
        hint = self._key_hint()
        prefetched, self._prefetched_key = self._prefetched_key, None
        try:
            raw = hint.read(KEY_HINT_NAME) if hint is not None else None
        except OSError:
            return None
        name = raw.decode("ascii", "replace").strip() if raw else ""
        if not KEY_NAME.fullmatch(name):
            return None
        blob = None
        if prefetched is not None and prefetched[0] == name:
            try:
                blob = prefetched[1].result()
            except ObjectNotFound:
                return None
            except Exception:  # noqa: BLE001 - any other failure: read again below, and fail as usual
                blob = None
        if blob is None:
            try:
                blob = self.store.load(f"{layout.KEYS}/{name}")
            except ObjectNotFound:
                return None
        self._remember_location_key(name)
        return name, blob

    # The same name is kept once more under a digest of the location, which an opening knows before it has
    # read the config (the repository's own cache directory is named by the id in the config): the remembered
    # blob is then read beside the config, not after it, a round trip less on every opening of a distant
    # bucket.  The blob so read is used only if the repository's own hint names it, and is unsealed and
    # checked like any other.

    _prefetched_key: tuple[str, Future] | None = None

    def prefetch_remembered_key(self) -> None:
        """Start reading the key blob that opened this location last time (before the config is read)."""
        try:
            raw = self._location_hint().read(KEY_HINT_NAME)
        except OSError:
            return
        name = raw.decode("ascii", "replace").strip() if raw else ""
        if not KEY_NAME.fullmatch(name):
            return
        pool = ThreadPoolExecutor(1, thread_name_prefix="pv-key")
        self._prefetched_key = (name, pool.submit(load_beside, self.store, f"{layout.KEYS}/{name}"))
        pool.shutdown(wait=False)

    def drop_prefetched_key(self) -> None:
        """Wait for a prefetch nobody took (an opening that failed first), so it never outlives the store."""
        prefetched, self._prefetched_key = self._prefetched_key, None
        if prefetched is not None:
            prefetched[1].exception()

    def _location_hint(self) -> RepositoryCache:
        return RepositoryCache.at(self.settings.location_hints(LOCATION_KEY_HINTS, self.location))

    def _remember_location_key(self, name: str) -> None:
        hint = self._location_hint()
        with contextlib.suppress(OSError):  # a cache that cannot be written costs the round trip next time
            if hint.read(KEY_HINT_NAME) != name.encode("ascii"):
                hint.write(KEY_HINT_NAME, name.encode("ascii"))

    # The config's MAC as this client last verified it against the stored one, in the cache directory.  It is
    # a MAC under the master key, so it can only equal ``config_mac`` of the config read now if that config is
    # the one verified then (changed without the key, it cannot match): the opening then reads no MAC.  A
    # config changed since, or a file damaged or missing, means the stored MAC is read and checked as before.

    def _remembered_config_mac(self) -> bytes | None:
        if self.config is None:
            return None
        try:
            mac = RepositoryCache(self.settings.cache_dir, self.config.repository_id).read(CONFIG_MAC_HINT_NAME)
        except OSError:
            return None
        return mac or None

    def _remember_config_mac(self, mac: bytes) -> None:
        if self.config is None:
            return
        with contextlib.suppress(OSError):
            RepositoryCache(self.settings.cache_dir, self.config.repository_id).write(CONFIG_MAC_HINT_NAME, mac)

    def _remember_key_blob(self, name: str) -> None:
        hint = self._key_hint()
        if hint is not None:
            with contextlib.suppress(OSError):  # a cache that cannot be written costs a LIST next time
                hint.write(KEY_HINT_NAME, name.encode("ascii"))
            self._remember_location_key(name)
