"""compact's copy-forward (step 5 of ``compact.py``): the live objects of the packs being rewritten, copied into
new content-named packs, each new pack verified before the index is repointed at it.

Two ways.  A local repository copies with ``Store.defrag`` and reads the new pack back to verify it.  A remote
one (and restored cold packs) goes through memory: the live ranges are read, verified, and stored as one pack.
On S3 a server-side range copy never sees the bytes, so the new pack had to be read back in full to verify
it: a multipart upload (start, copies, uploaded parts, complete) and a GET of every byte, where reading the
live ranges and one PUT download the same bytes with fewer requests."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..errors import IntegrityError
from ..repository.index import FLAG_USED, KIND_META, ChunkIndex, Entry
from ..repository.objects import iter_headers, verify_parts
from ..repository.repository import Repository, content_name, defrag_pack_name

if TYPE_CHECKING:
    from .compact import CompactReport, _PackPlan


_OBJ = struct.Struct("<32sIII")  # id, offset, size, flags: live objects of one pack, packed


def _live_objects_by_pack(index: ChunkIndex, packs: set[int]) -> dict[int, bytearray]:
    """Live objects of the packs being rewritten, as packed records per pack (not Python objects per chunk)."""
    result: dict[int, bytearray] = {no: bytearray() for no in packs}
    for chunk_id, entry in index.entries():
        if entry.flags & FLAG_USED and entry.pack in result:
            result[entry.pack] += _OBJ.pack(chunk_id, entry.offset, entry.size, entry.flags)
    return result


def copy_forward(
    repo: Repository,
    index: ChunkIndex,
    kind: int,
    sources: list[_PackPlan],
    report: CompactReport,
    existing: set[str],
    *,
    through_memory: bool = False,
):
    """Copy live objects of ``sources`` into new packs and repoint the index.  Returns new pack names.
    ``through_memory``: read, verify, then write each new pack (cold packs, module doc step 8)."""
    numbers = sorted(index.packs.lookup(p.name) for p in sources if index.packs.lookup(p.name) is not None)
    by_pack = _live_objects_by_pack(index, set(numbers))
    write = _write_pack_through_memory if through_memory else _write_pack
    created = []
    batch: list[tuple[bytes, Entry]] = []
    batch_size = 0
    for no in numbers:
        # in offset order, so neighbours in an old pack stay neighbours and coalesce into one range
        records = sorted(_OBJ.iter_unpack(by_pack.pop(no)), key=lambda r: r[1])
        for chunk_id, offset, size, flags in records:
            batch.append((chunk_id, Entry(no, offset, size, flags)))
            batch_size += size
            if batch_size >= repo.config.pack_size:
                created.append(write(repo, index, kind, batch, report, existing))
                batch, batch_size = [], 0
        if kind == KIND_META and batch:  # one source pack's metadata stays apart from the others'
            created.append(write(repo, index, kind, batch, report, existing))
            batch, batch_size = [], 0
    if batch:
        created.append(write(repo, index, kind, batch, report, existing))
    return created


def _ranges(index: ChunkIndex, batch) -> list[list]:
    """The batch's objects as [pack, offset, size] ranges, neighbours in a pack coalesced."""
    ranges: list[list] = []
    for _, entry in batch:
        pack = index.packs.names[entry.pack]
        last = ranges[-1] if ranges else None
        if last and last[0] == pack and last[1] + last[2] == entry.offset:
            last[2] += entry.size
        else:
            ranges.append([pack, entry.offset, entry.size])
    return ranges


def _repoint(index: ChunkIndex, kind: int, new_name: str, batch, report: CompactReport) -> None:
    new_no = index.packs.number(new_name, kind)
    offset = 0
    for chunk_id, entry in batch:
        index.table[chunk_id] = Entry(new_no, offset, entry.size, entry.flags)
        offset += entry.size
    report.bytes_copied += offset
    report.packs_created += 1


def _write_pack_through_memory(
    repo: Repository, index: ChunkIndex, kind: int, batch, report: CompactReport, existing: set[str]
) -> str:
    """A new pack from live ranges read here (in parallel, neighbours sharing a read), every object verified,
    then stored (Content-MD5 protects the upload).  At most one pack's bytes in memory (and the pieces they
    are joined from, while they are).  Used for remote repositories and restored cold packs (``compact``)."""
    repo.check_lock()
    buf = repo.gather_pack_ranges(kind, [tuple(r) for r in _ranges(index, batch)])
    _verify_pack_bytes(buf, batch, index)
    target = defrag_pack_name((chunk_id, entry.size) for chunk_id, entry in batch)
    new_name = content_name(buf) if target in existing else target
    if new_name not in existing:
        repo.store_pack_as(kind, new_name, buf)
    existing.add(new_name)
    _repoint(index, kind, new_name, batch, report)
    return new_name


def _write_pack(
    repo: Repository, index: ChunkIndex, kind: int, batch, report: CompactReport, existing: set[str]
) -> str:
    ranges = _ranges(index, batch)
    repo.check_lock()
    target = defrag_pack_name((chunk_id, entry.size) for chunk_id, entry in batch)
    if target in existing:
        # A pack of that name is already there (a crashed compact made it, or another copy of the same chunks
        # was): its bytes may differ from this copy, so name this one by its bytes instead (client-side copy).
        new_name = repo.copy_forward(kind, [tuple(r) for r in ranges])
    else:
        new_name = repo.copy_forward(kind, [tuple(r) for r in ranges], target=target)
    existing.add(new_name)
    _verify_copy(repo, kind, new_name, batch, index)
    _repoint(index, kind, new_name, batch, report)
    return new_name


def _verify_copy(repo: Repository, kind: int, pack: str, batch, index: ChunkIndex) -> None:
    """Read the new pack back: it must hold exactly the batch's objects, in order, intact.

    A server-side copy never sees the bytes, so this is the moment the copies are proven; the sources are
    still there and nothing points at the new pack yet, so a failure leaves the repository as it was."""
    _verify_pack_bytes(repo.load_pack_range(kind, pack), batch, index)


def _verify_pack_bytes(buf: bytes, batch, index: ChunkIndex) -> None:
    """``buf`` must hold exactly the batch's objects, in order, intact (``_verify_copy``)."""
    expected = iter(batch)
    try:
        for offset, header in iter_headers(buf):
            chunk_id, entry = next(expected, (None, None))
            if chunk_id is None or header.object_id != chunk_id or header.total_size != entry.size:
                raise IntegrityError(f"unexpected object {header.object_id.hex()} at offset {offset}")
            verify_parts(header, buf, offset)
        chunk_id, entry = next(expected, (None, None))
        if chunk_id is not None:
            raise IntegrityError(f"object {chunk_id.hex()} is missing from the copy")
    except IntegrityError as exc:
        source = index.packs.names[entry.pack] if entry is not None else "?"
        raise IntegrityError(
            f"copying live objects forward from pack {source} produced a pack that does not verify ({exc}): "
            "a live object there is damaged; nothing was deleted",
            hint="run 'packvault check --repair', then compact again",
        ) from None
