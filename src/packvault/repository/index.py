"""The chunk index: chunk id -> (pack, offset, size), in a compact C hash table.

This is the one structure that grows with the repository (DESIGN principle 5), so it lives in a
``borghash`` table with fixed-size binary values, never in per-entry Python objects: 32 bytes of key and
16 bytes of value per chunk plus the table's slack.  Packs are numbered locally in a ``PackTable`` (one
Python string per pack, i.e. per ~32 MiB of data), and entries store the pack number.

The same chunk may sit in several packs (two writers uploaded it, a pack was retried).  Whatever the order
in which fragments are read, the index keeps the location with the smallest (pack name, offset), so every
client agrees on the surviving copy, and compact reclaims the others as dead space.

Persistence is as sealed *fragments* in ``index/``: a msgpack map with the packs it mentions and a packed
array of ``(id, pack#, offset, size)`` records.  Fragments only ever describe packs that were already
stored when the fragment was written.
"""

from __future__ import annotations

import struct
from collections import namedtuple
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgpack
from borghash import HashTableNT

from ..errors import IntegrityError

ID_SIZE = 32
KIND_DATA = 0
KIND_META = 1

FLAG_USED = 1  # set by compact's mark phase

Entry = namedtuple("Entry", "pack offset size flags")
_ENTRY_FORMAT = Entry("I", "I", "I", "I")
_RECORD = struct.Struct("<32sIII")


@dataclass(frozen=True)
class Location:
    pack: str  # hex pack name
    kind: int
    offset: int
    size: int


class PackTable:
    """Pack numbers <-> (pack name, kind); one entry per pack, not per chunk."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.kinds: list[int] = []
        self._numbers: dict[str, int] = {}

    def number(self, name: str, kind: int) -> int:
        no = self._numbers.get(name)
        if no is None:
            no = len(self.names)
            self.names.append(name)
            self.kinds.append(kind)
            self._numbers[name] = no
        return no

    def lookup(self, name: str) -> int | None:
        return self._numbers.get(name)

    def __len__(self) -> int:
        return len(self.names)

    def to_list(self) -> list:
        return [self.names, self.kinds]

    @classmethod
    def from_list(cls, data: list) -> PackTable:
        table = cls()
        for name, kind in zip(data[0], data[1], strict=True):
            table.number(name, kind)
        return table


def new_table(capacity: int = 1000) -> HashTableNT:
    return HashTableNT(key_size=ID_SIZE, value_type=Entry, value_format=_ENTRY_FORMAT, capacity=capacity)


class ChunkIndex:
    def __init__(self, table: HashTableNT | None = None, packs: PackTable | None = None):
        self.table = table if table is not None else new_table()
        self.packs = packs if packs is not None else PackTable()

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, chunk_id: bytes) -> bool:
        return chunk_id in self.table

    def add(self, chunk_id: bytes, pack: str, kind: int, offset: int, size: int) -> bool:
        """Record a location; returns True if it became the index's location for the id."""
        pack_no = self.packs.number(pack, kind)
        old = self.table.get(chunk_id)
        if old is not None:
            old_name = self.packs.names[old.pack]
            if (old_name, old.offset) <= (pack, offset):
                return False
        self.table[chunk_id] = Entry(pack_no, offset, size, 0 if old is None else old.flags)
        return True

    def get(self, chunk_id: bytes) -> Location | None:
        entry = self.table.get(chunk_id)
        if entry is None:
            return None
        return Location(self.packs.names[entry.pack], self.packs.kinds[entry.pack], entry.offset, entry.size)

    def pack_name(self, chunk_id: bytes) -> str | None:
        """The name of the pack holding the chunk (no ``Location`` made: a restore asks once per small file)."""
        entry = self.table.get(chunk_id)
        return None if entry is None else self.packs.names[entry.pack]

    def entries(self) -> Iterator[tuple[bytes, Entry]]:
        return self.table.items()

    # --- fragments -----------------------------------------------------------------------------------

    def apply_fragment(self, plaintext: bytes) -> int:
        """Merge one fragment's entries; returns how many records it held."""
        try:
            doc = msgpack.unpackb(plaintext)
            names, kinds, records = doc["packs"], doc["kinds"], doc["entries"]
        except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
            raise IntegrityError(f"index fragment does not parse: {exc}") from None
        if len(records) % _RECORD.size:
            raise IntegrityError("index fragment has a truncated record array")
        count = 0
        for chunk_id, pack_idx, offset, size in _RECORD.iter_unpack(records):
            self.add(chunk_id, names[pack_idx], kinds[pack_idx], offset, size)
            count += 1
        return count


def encode_fragment(records: Iterable[tuple[bytes, str, int, int, int]]) -> bytes:
    """Fragment plaintext for (chunk id, pack name, kind, offset, size) records."""
    names: list[str] = []
    kinds: list[int] = []
    numbers: dict[str, int] = {}
    packed = bytearray()
    for chunk_id, pack, kind, offset, size in records:
        no = numbers.get(pack)
        if no is None:
            no = numbers[pack] = len(names)
            names.append(pack)
            kinds.append(kind)
        packed += _RECORD.pack(chunk_id, no, offset, size)
    return msgpack.packb({"packs": names, "kinds": kinds, "entries": bytes(packed)})


def encode_index_fragments(index: ChunkIndex, max_records: int = 65_536) -> Iterator[bytes]:
    """The whole index as a series of fragment plaintexts (used by compact and repair).

    Streams from the hash table into packed records of bounded slices, so no whole-index copy is built
    in Python containers.
    """
    names = index.packs.names
    kinds = index.packs.kinds
    packed = bytearray()
    used: dict[int, int] = {}  # global pack number -> fragment-local number, bounded by packs per slice
    count = 0
    for chunk_id, entry in index.entries():
        local = used.get(entry.pack)
        if local is None:
            local = used[entry.pack] = len(used)
        packed += _RECORD.pack(chunk_id, local, entry.offset, entry.size)
        count += 1
        if count >= max_records:
            yield _pack_fragment(used, names, kinds, packed)
            packed, used, count = bytearray(), {}, 0
    if count or len(index) == 0:
        yield _pack_fragment(used, names, kinds, packed)


def _pack_fragment(used: dict[int, int], names: list[str], kinds: list[int], packed: bytearray) -> bytes:
    order = sorted(used, key=used.__getitem__)
    return msgpack.packb(
        {"packs": [names[no] for no in order], "kinds": [kinds[no] for no in order], "entries": bytes(packed)}
    )
