"""Verifying one pack held whole in memory: the part of ``check`` that needs the pack's bytes and nothing of
the checker's state, so that it can run in the checker's process or in a worker (``workers.py``) with the
same result.

What comes out is compact (``PackFindings``): counts, the damaged byte ranges with the reason, and one small
packed record per intact object.  The checker compares those with the index (``packs.py``); the pack's
bytes and the plaintext of its objects never leave the function.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ...errors import IntegrityError, ObjectMissing
from ...repository.objects import TYPE_ARCHIVE, ObjectCodec, parse_header, resync, verify_parts
from ...repository.repository import pack_name_matches

# one intact object: offset in the pack, stored size, object id, 1 if an archive metadata object
_INTACT = struct.Struct("<QI32sB")

ChunkIdHasher = Callable[[bytes | memoryview], bytes]
# (offset, stored size, object id) -> True if the object must be opened under the key to count as intact
NeedsKey = Callable[[int, int, bytes], bool]


@dataclass
class PackFindings:
    """What verifying one pack found (picklable, and small: no bytes of the pack)."""

    size: int  # bytes the pack really has
    misnamed: bool  # its bytes match neither its content name nor its copy-forward name
    objects: int = 0  # structurally intact objects
    verified: int = 0  # of those, opened under the key with their id recomputed
    damaged: list[tuple[int, int, str]] = field(default_factory=list)  # [start, end) and why
    intact: bytearray = field(default_factory=bytearray)  # ``_INTACT`` records, in pack order
    requests: dict[str, int] = field(default_factory=dict)  # store requests a worker made for this pack
    missing: bool = False  # listed a moment ago, gone when read: reported as a missing pack

    @classmethod
    def gone(cls) -> PackFindings:
        return cls(size=0, misnamed=False, missing=True)

    def intact_objects(self) -> Iterator[tuple[int, int, bytes, bool]]:
        """(offset, stored size, object id, is archive metadata) of every intact object, in pack order."""
        for offset, size, object_id, archive in _INTACT.iter_unpack(self.intact):
            yield offset, size, object_id, bool(archive)


def verify_pack(
    name: str,
    buf: bytes,
    *,
    codec: ObjectCodec | None,
    chunk_id: ChunkIdHasher | None,
    decrypt: bool,
    needs_key: NeedsKey | None = None,
) -> PackFindings:
    """Verify every object of the pack ``name`` whose bytes are ``buf``.

    Without a ``codec`` (no key) only the structure is verified: headers, the parts' checksums, the pack
    name.  With ``decrypt`` every object is also opened and its id recomputed from the plaintext.  With a
    codec but without ``decrypt``, an object is opened only where ``needs_key`` says so: an object the index
    does not vouch for must be this repository's before repair may index it (an intact object sealed under
    another key passes every key-less check).
    """
    findings = PackFindings(size=len(buf), misnamed=not pack_name_matches(name, buf))
    damaged = findings.damaged
    offset = 0
    end_of_pack = len(buf)
    while offset < end_of_pack:
        try:
            header = parse_header(buf, offset)
        except IntegrityError as exc:
            nxt = resync(buf, offset)
            damaged.append((offset, nxt, str(exc)))
            offset = nxt
            continue
        end = offset + header.total_size
        if end > end_of_pack:
            damaged.append((offset, end_of_pack, f"truncated object (pack ends {end - end_of_pack} bytes early)"))
            break
        try:
            verify_parts(header, buf, offset)
        except IntegrityError as exc:
            damaged.append((offset, end, str(exc)))
            offset = end
            continue
        findings.objects += 1
        archive = False
        if codec is not None and decrypt:
            assert chunk_id is not None
            try:
                _, meta, data = codec.open(buf, offset, expected_id=header.object_id)
                if chunk_id(data) != header.object_id:
                    raise IntegrityError("plaintext does not match its id (MAC)")
            except IntegrityError as exc:
                damaged.append((offset, end, f"does not authenticate: {exc}"))
                offset = end
                continue
            findings.verified += 1
            archive = meta.type == TYPE_ARCHIVE
        elif codec is not None and needs_key is not None and needs_key(offset, header.total_size, header.object_id):
            try:
                codec.open(buf, offset, expected_id=header.object_id)
            except IntegrityError as exc:
                damaged.append((offset, end, f"does not authenticate under this key: {exc}"))
                offset = end
                continue
        findings.intact += _INTACT.pack(offset, header.total_size, header.object_id, archive)
        offset = end
    return findings


def read_and_verify(
    load_pack_range: Callable[..., bytes],
    kind: int,
    name: str,
    listed_size: int,
    verify: Callable[[bytes], PackFindings],
) -> PackFindings:
    """Read pack ``name`` (``listed_size`` bytes when it was listed) and ``verify`` it.

    Why not one plain whole-object read: from S3 that read is checked against the MD5 stored with the object,
    so that damage in transit is read again rather than reported, and on two cores that MD5 was ~0.6
    CPU-seconds per 400 MB checked.  ``verify_pack`` covers every byte anyway (the pack's content name, every
    object's MAC), so the pack is read as one range of its listed size, which S3 does not MD5-check, and only
    a pack in which verification finds something wrong is read again whole, with the MD5 check, and verified
    again: what transit damaged is repeated away, and damage at rest is reported, as before.
    """
    try:
        buf = load_pack_range(kind, name, 0, listed_size) if listed_size > 0 else load_pack_range(kind, name)
        findings = verify(buf)
        del buf  # one pack in memory at a time
        if not findings.damaged and not findings.misnamed and findings.size == listed_size:
            return findings
        return verify(load_pack_range(kind, name))
    except ObjectMissing:
        return PackFindings.gone()  # listed a moment ago, gone now: reported as a missing pack
