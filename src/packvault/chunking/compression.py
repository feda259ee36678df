"""zstd compression with an ``auto`` mode that stores incompressible data as it is.

Compression runs in worker threads; zstd contexts are not thread-safe, so each thread keeps its own.
``auto`` compresses and keeps the result only if it saves at least 3 %: zstd gives up on random data
quickly, so the attempt is cheap, and restore never pays for decompressing data that did not shrink.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import zstandard

from ..errors import IntegrityError, UsageError

NONE = 0
ZSTD = 1
_MIN_SAVING = 0.03


@dataclass(frozen=True)
class CompressionSpec:
    algorithm: int = ZSTD
    level: int = 3
    auto: bool = True

    @classmethod
    def parse(cls, text: str) -> CompressionSpec:
        """``auto``, ``auto,zstd,N``, ``zstd``, ``zstd,N`` or ``none``."""
        parts = [p.strip() for p in text.lower().split(",") if p.strip()]
        auto = bool(parts) and parts[0] == "auto"
        if auto:
            parts = parts[1:] or ["zstd"]
        if parts == ["none"]:
            return cls(algorithm=NONE, level=0, auto=False)
        if parts and parts[0] == "zstd" and len(parts) <= 2:
            try:
                level = int(parts[1]) if len(parts) == 2 else 3
            except ValueError:
                level = -1000
            if 1 <= level <= 22:
                return cls(algorithm=ZSTD, level=level, auto=auto)
        raise UsageError(f"invalid compression {text!r}", hint="use auto, zstd, zstd,N (1-22) or none")

    def __str__(self) -> str:
        if self.algorithm == NONE:
            return "none"
        return f"{'auto,' if self.auto else ''}zstd,{self.level}"


class Compressor:
    def __init__(self, spec: CompressionSpec):
        self.spec = spec
        self._local = threading.local()

    def _zc(self) -> zstandard.ZstdCompressor:
        zc = getattr(self._local, "zc", None)
        if zc is None:
            zc = self._local.zc = zstandard.ZstdCompressor(level=self.spec.level)
        return zc

    def _zd(self) -> zstandard.ZstdDecompressor:
        zd = getattr(self._local, "zd", None)
        if zd is None:
            zd = self._local.zd = zstandard.ZstdDecompressor()
        return zd

    def compress(self, data: bytes | memoryview) -> tuple[int, bytes | memoryview]:
        """(algorithm id, payload)."""
        if self.spec.algorithm == NONE:
            return NONE, data
        compressed = self._zc().compress(data)
        if self.spec.auto and len(compressed) > len(data) * (1 - _MIN_SAVING):
            return NONE, data
        return ZSTD, compressed

    def decompress(self, algorithm: int, payload: bytes, size: int) -> bytes:
        if algorithm == NONE:
            return payload
        if algorithm == ZSTD:
            try:
                return self._zd().decompress(payload, max_output_size=size)
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"chunk does not decompress: {exc}") from None
        raise IntegrityError(f"unknown compression id {algorithm}")
