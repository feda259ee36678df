"""What a process other than the repository's own needs to turn file bytes into sealed objects.

create's reader processes (``archive/filereaders.py``) cut, hash, compress and seal small files next to the
backup's own process.  They get the repository's key material, chunker parameters and compression, and
nothing else: no store, no index, no lock.  Each builds its own writer session (``SessionSealer`` draws a
random session id), so the nonces of the processes never meet: that is why a kit carries the master key
and not a ready codec.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..chunking.chunker import Chunker, ChunkerParams
from ..chunking.compression import CompressionSpec, Compressor
from ..crypto.keys import ChunkIdHasher, KeyMaterial
from .objects import ObjectCodec


@dataclass(frozen=True)
class SealingKit:
    """Picklable: it travels to a reader process once, when the process starts."""

    key: KeyMaterial
    chunker_params: ChunkerParams
    compression: str

    def chunker(self) -> Chunker:
        return Chunker(self.chunker_params, self.key.chunker_seed)

    def chunk_id_hasher(self) -> ChunkIdHasher:
        return self.key.chunk_id_hasher()

    def codec(self) -> ObjectCodec:
        """A codec with a writer session of its own (never share one across processes: nonces)."""
        return ObjectCodec(self.key.new_session(), Compressor(CompressionSpec.parse(self.compression)))
