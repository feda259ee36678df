"""What a backup counts while it runs: reported live to the caller's progress callback and stored, at the
end, in the archive metadata and the archive's entry (``as_dict``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class CreateStats:
    nfiles: int = 0
    ndirs: int = 0
    nother: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    files_read_by_readers: int = 0  # of files_read: by reader processes (``filereaders.py``)
    original_size: int = 0
    bytes_read: int = 0
    deduplicated_size: int = 0  # plaintext bytes of new chunks
    compressed_size: int = 0  # stored bytes of new chunks (sealed)
    chunks: int = 0
    chunks_new: int = 0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was left out on purpose (the repository itself, ...)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    def as_dict(self) -> dict:
        throughput = self.original_size / self.duration if self.duration else 0.0
        return {
            "nfiles": self.nfiles,
            "ndirs": self.ndirs,
            "nother": self.nother,
            "files_read": self.files_read,
            "files_unchanged": self.files_unchanged,
            "files_read_by_readers": self.files_read_by_readers,
            "original_size": self.original_size,
            "bytes_read": self.bytes_read,
            "deduplicated_size": self.deduplicated_size,
            "compressed_size": self.compressed_size,
            "chunks": self.chunks,
            "chunks_new": self.chunks_new,
            "duration": round(self.duration, 3),
            "throughput": round(throughput, 1),
            "warnings": len(self.warnings),
        }
