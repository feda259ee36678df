"""Packs being filled by the writer (``writer.py``): in memory, or in an anonymous spool file."""

from __future__ import annotations

from pathlib import Path

from ..storage.spool import SpoolFile
from .repository import Repository


class OpenPack:
    """A pack being filled in memory (local repositories: a store there takes milliseconds)."""

    def __init__(self, kind: int):
        self.kind = kind
        self.buffer = bytearray()
        self.records: list[tuple[bytes, int, int]] = []  # (id, offset, size)

    @property
    def size(self) -> int:
        return len(self.buffer)

    def append(self, sealed: bytes) -> int:
        offset = len(self.buffer)
        self.buffer += sealed
        return offset

    def settle(self) -> None:
        """Finish writing what was appended (a spooled pack writes in the background)."""

    def store(self, repo: Repository) -> str:
        return repo.store_pack(self.kind, memoryview(self.buffer))

    def discard(self) -> None:
        self.buffer = bytearray()


class SpooledPack(OpenPack):
    """A pack being filled in an anonymous temporary file (remote repositories), see ``storage/spool.py``.

    Why: with several uploads in flight and one pack filling per kind, in-memory packs were the bulk of a
    remote backup's peak memory.  Spooled, every byte is written once to the page cache as it is sealed,
    hashed on the way (MD5 for Content-MD5, BLAKE3 for the pack name), and read back in small blocks by
    the upload; the process holds no pack at all.  The file is created with the first chunk.
    """

    def __init__(self, kind: int, repo: Repository, directory: Path | None, live: set[SpooledPack]):
        super().__init__(kind)
        self._repo = repo
        self._directory = directory
        self._live = live  # the writer's spooled packs not yet discarded (closed by RepositoryWriter.close)
        self.spool: SpoolFile | None = None

    @property
    def size(self) -> int:
        return self.spool.size if self.spool is not None else 0

    def append(self, sealed: bytes) -> int:
        if self.spool is None:
            self.spool = self._repo.new_pack_spool(self._directory)
            self._live.add(self)
        return self.spool.write(sealed)

    def settle(self) -> None:
        if self.spool is not None:
            self.spool.settle()

    def store(self, repo: Repository) -> str:
        assert self.spool is not None
        return repo.store_pack_spool(self.kind, self.spool)

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()  # removes the file
        self._live.discard(self)
