"""A local, authenticated cache of metadata packs, for compact's mark and the commands that read an
archive's items (like restic's cache of tree packs).

Why: compact marks by reading every live archive's metadata and item stream, which on S3 is one or two
GETs per metadata pack on every run; extract, list, info, diff and mount read an archive's metadata and
then its item stream, two round trips in a row before the first data GET.  The client that wrote a backup
already had those bytes.  So a remote repository's metadata packs are kept in
``<cache dir>/<repository id>/meta-packs/`` when they are uploaded, and when mark fetches one (whole, in one
GET, when the listing says it is small enough).

Trust: a file there is never believed as such.  Each holds a tag and the pack's bytes; the tag is a keyed
BLAKE3 over the pack's name and bytes, under a key derived from the repository's master key, and it is
checked on every read.  A file that does not verify (damaged, truncated, another pack's bytes under this
name, another repository's pack) is removed and the pack is read from the store again.  The objects in a
pack are authenticated once more when they are opened, as always.

Only what asks for it reads here: compact's mark and those reading commands, which fetch a pack whole only
when a listing told its size (compact's), and otherwise read ranges of what is not cached.  ``check``
never does; it verifies the store itself.

Bounds: packs above ``MAX_CACHED_PACK`` are not cached (a mark then reads ranges, as without a cache); the
directory is trimmed to ``LIMIT_BYTES``, least recently used first; in memory there is one pack, the one
being read.  Packs compact deletes are removed from the cache too.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

import blake3

from ..crypto.aead import hkdf
from .cache import RepositoryCache
from .index import KIND_META

DIRECTORY = "meta-packs"
MAX_CACHED_PACK = 32 * 1024 * 1024  # the default pack size: a metadata pack is rarely larger
LIMIT_BYTES = 256 * 1024 * 1024
TAG_SIZE = 32


class MetaPackCache:
    """The metadata-pack cache of one opened repository (module doc).  Thread-safe."""

    def __init__(self, repo, *, limit_bytes: int = LIMIT_BYTES, max_pack: int = MAX_CACHED_PACK):
        assert repo.config is not None and repo.key is not None
        self.repo = repo
        self.path = RepositoryCache(repo.settings.cache_dir, repo.config.repository_id).path / DIRECTORY
        self.limit_bytes = limit_bytes
        self.max_pack = max_pack
        self._key = hkdf(repo.key.master_key, salt=repo.config.repository_id, info=b"packvault meta pack cache v1")
        self._sizes: dict[str, int] = {}
        self._current: tuple[str, bytes] | None = None
        self._lock = threading.Lock()
        self.stats = {"hits": 0, "fetched": 0, "rejected": 0}

    def _tag(self, pack: str, data: bytes | memoryview) -> bytes:
        mac = blake3.blake3(key=self._key)
        mac.update(pack.encode("ascii"))
        mac.update(data)
        return mac.digest()

    def know_sizes(self, infos: Iterable) -> None:
        """Sizes of metadata packs from a listing (``ItemInfo``): which are small enough to fetch whole."""
        for info in infos:
            self._sizes[info.name] = info.size

    def read_range(self, pack: str, offset: int, size: int) -> bytes:
        """Bytes [offset, offset + size) of metadata pack ``pack``: from the cache, or from the store (the whole
        pack in one read, kept, when its listed size allows; else just the range)."""
        with self._lock:
            data = self._pack(pack)
        if data is None or offset + size > len(data):
            return self.repo.load_pack_range(KIND_META, pack, offset, size)
        return data[offset : offset + size]

    def _pack(self, pack: str) -> bytes | None:
        if self._current is not None and self._current[0] == pack:
            return self._current[1]
        data = self._load(pack)
        if data is None:
            listed = self._sizes.get(pack)
            if listed is None or listed > self.max_pack:
                return None
            data = self.repo.load_pack_range(KIND_META, pack)
            self.stats["fetched"] += 1
            self.put(pack, data)
        else:
            self.stats["hits"] += 1
        self._current = (pack, data)
        return data

    def _load(self, pack: str) -> bytes | None:
        """The cached bytes of ``pack`` if the file is there and verifies; a file that does not is removed."""
        path = self.path / pack
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        data = memoryview(raw)[TAG_SIZE:]
        if len(raw) < TAG_SIZE or not hmac.compare_digest(raw[:TAG_SIZE], self._tag(pack, data)):
            self.stats["rejected"] += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: trimmed last
        return bytes(data)

    def put(self, pack: str, data: bytes | memoryview) -> None:
        """Keep a metadata pack's bytes (just stored or just read in full); a cache that cannot be written only
        costs the GET next time."""
        if len(data) > self.max_pack:
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(self._tag(pack, data))
                    f.write(data)
                os.replace(tmp, self.path / pack)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            self._trim()
        except OSError:
            return

    def forget(self, packs: Iterable[str]) -> None:
        """Remove the entries of packs that no longer exist (compact deleted them)."""
        for pack in packs:
            with contextlib.suppress(OSError):
                (self.path / pack).unlink()

    def _trim(self) -> None:
        entries = []
        with os.scandir(self.path) as it:
            for entry in it:
                if entry.is_file() and not entry.name.startswith("."):
                    st = entry.stat()
                    entries.append((st.st_mtime, st.st_size, entry.path))
        total = sum(size for _, size, _ in entries)
        for _, size, path in sorted(entries):
            if total <= self.limit_bytes:
                break
            with contextlib.suppress(OSError):
                os.unlink(path)
            total -= size
