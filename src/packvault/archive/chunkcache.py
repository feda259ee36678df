"""The decrypted-chunk cache of ``packvault mount`` (``mountfs.py``): one LRU bounded in bytes, shared by every
open file, with read-ahead for sequential readers."""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future

from ..errors import PackvaultError
from ..repository.reader import ChunkReader


class ChunkCache:
    """Decrypted chunks by id, the least recently used dropped first: at most ``max_bytes`` in total.

    Two readers wanting the same chunk at once share one read.  Errors are not cached, so a read that
    failed (a store that was briefly down) is tried again next time."""

    def __init__(self, reader: ChunkReader, max_bytes: int):
        self.reader = reader
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._chunks: OrderedDict[bytes, bytes] = OrderedDict()
        self._loading: dict[bytes, Future] = {}
        self._lock = threading.Lock()

    def get_many(self, ids: list[bytes], *, wanted: int | None = None) -> list[bytes | PackvaultError]:
        """Plaintext (or the error) of each id.  Only the first ``wanted`` ids (default: all) are returned;
        the others are read ahead into the cache when they have to be read anyway."""
        wanted = len(ids) if wanted is None else wanted
        results: list = [None] * wanted
        waiting: list[tuple[int, Future]] = []
        mine: dict[bytes, Future] = {}
        with self._lock:
            for position, chunk_id in enumerate(ids):
                data = self._chunks.get(chunk_id)
                if data is not None:
                    self._chunks.move_to_end(chunk_id)
                    if position < wanted:
                        results[position] = data
                        self.hits += 1
                    continue
                future = self._loading.get(chunk_id)
                if future is None:
                    future = mine.get(chunk_id)
                    if future is None and (position < wanted or mine):
                        future = mine[chunk_id] = Future()
                        self._loading[chunk_id] = future
                if position < wanted and future is not None:
                    waiting.append((position, future))
            self.misses += len(mine)
        if mine:
            self._load(mine)
        for position, future in waiting:
            results[position] = future.result()
        return results

    def _load(self, futures: dict[bytes, Future]) -> None:
        ids = list(futures)
        try:
            for chunk_id, data in zip(ids, self.reader.iter_chunks(ids), strict=True):
                if not isinstance(data, BaseException):
                    self._put(chunk_id, data)
                with self._lock:
                    self._loading.pop(chunk_id, None)
                futures[chunk_id].set_result(data)
        except BaseException as exc:
            with self._lock:
                for chunk_id, future in futures.items():
                    if not future.done():
                        self._loading.pop(chunk_id, None)
                        future.set_result(exc if isinstance(exc, PackvaultError) else PackvaultError(str(exc)))
            if not isinstance(exc, PackvaultError):
                raise

    def _put(self, chunk_id: bytes, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            if chunk_id in self._chunks:
                return
            self._chunks[chunk_id] = data
            self.size += len(data)
            while self.size > self.max_bytes:
                _, dropped = self._chunks.popitem(last=False)
                self.size -= len(dropped)
