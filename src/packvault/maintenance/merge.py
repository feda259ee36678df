"""``merge``: join the part archives of a scale-out backup into one archive, then retire the parts.

Each part (``create NAME.partK SOURCE --source-range START END``) holds the keys of one range of a plan
(``archive/partition.py``) and records that range in its metadata.  Merge proves the parts cover the key space
exactly once (``partition.prove_coverage``), then writes one archive whose item stream is the parts' item
streams laid end to end in key order.  Items keep their chunk lists, so no file data is read, copied or
uploaded: only the item stream (metadata) is read and written again.  The stream is cut anew by the same
content-defined chunker, so the merged archive has the item-stream chunks one backup of the whole source
would have had, and a later backup of an unchanged bucket deduplicates against them.

Where two parts join, the second starts with the directories of its first key, which the first part already
holds (and the bucket's directory, also in an empty part): while the next part's leading items are directories
that enclose the last item written, they are dropped, so the merged stream equals the stream of a single
backup of the same keys.

Write order is create's, then the parts go: the merged archive's metadata records the parts it was made of
(their names and archive ids), its ``archives/`` entry is committed, and only then are the parts' entries
soft-deleted (``delete`` semantics: compact collects what nothing else references).  A crash in between
leaves the merged archive and some parts; merge run again finds NAME made of exactly these parts and only
retires them.  Never is there neither.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..archive import items as it
from ..archive.archive import ArchiveMeta, iter_archive_items, load_archive
from ..archive.partition import META_PART, PartRecord, prove_coverage
from ..errors import ArchiveExists, UsageError
from ..repository.objects import TYPE_ARCHIVE
from ..repository.reader import ChunkReader
from ..repository.repository import ArchiveEntry, Repository
from ..repository.writer import RepositoryWriter

META_MERGED = "scaleout_merged"
"""Key of the merged archive's metadata: ``{"source": ..., "parts": [{"name", "id", "start", "end"}, ...]}``."""

_SUMMED_STATS = (
    "files_read",
    "files_unchanged",
    "bytes_read",
    "deduplicated_size",
    "compressed_size",
    "chunks",
    "chunks_new",
    "warnings",
)


@dataclass
class MergeReport:
    name: str
    status: str = "merged"  # "merged", or "already-merged" (a rerun that only retired the parts)
    archive_id: str = ""
    parts: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)  # part entries soft-deleted by this run
    nitems: int = 0
    nfiles: int = 0
    original_size: int = 0
    dropped_dirs: int = 0  # directory items of later parts that the earlier parts already held
    item_chunks_read: int = 0
    item_chunks_written: int = 0
    requests: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "status": self.status,
            "id": self.archive_id,
            "parts": self.parts,
            "retired": self.retired,
            "nitems": self.nitems,
            "nfiles": self.nfiles,
            "original_size": self.original_size,
            "dropped_dirs": self.dropped_dirs,
            "item_chunks_read": self.item_chunks_read,
            "item_chunks_written": self.item_chunks_written,
            "requests": self.requests,
        }


Event = Callable[[str, str], None]  # (what, archive name): "retired" after each part entry is soft-deleted


def merge_parts(repo: Repository, name: str, part_names: list[str], *, on_event: Event | None = None) -> MergeReport:
    """Merge the archives ``part_names`` into a new archive ``name`` and retire them (see the module docstring).

    Refuses (UsageError / ArchiveNotFound / ArchiveExists, nothing changed) when a part is missing or is no
    part archive, when the ranges overlap or leave a gap, or when ``name`` exists and is not their merge."""
    from ..errors import ArchiveNotFound

    report = MergeReport(name)
    part_names = list(dict.fromkeys(part_names))
    if name in part_names:
        raise UsageError(f"the merged archive {name!r} cannot also be one of its parts")
    entries = {entry.name: entry for entry in repo.archive_entries()}
    existing = entries.get(name)
    with ChunkReader(repo) as reader:
        if existing is not None:
            return _finish_earlier_merge(repo, reader, existing, part_names, entries, report, on_event)
        missing = [p for p in part_names if p not in entries]
        if missing:
            raise ArchiveNotFound(
                f"part archive(s) {', '.join(map(repr, missing))} not found (not run, or not complete yet); "
                "nothing was merged",
                hint="run the missing parts (the same create command finishes an incomplete part)",
            )
        parts: list[tuple[ArchiveEntry, ArchiveMeta, PartRecord]] = []
        for part_name in part_names:
            entry = entries[part_name]
            meta = load_archive(reader, entry)
            if META_PART not in meta.extra:
                raise UsageError(
                    f"archive {part_name!r} is not a part of a scale-out backup (no --source-range); nothing was merged"
                )
            parts.append((entry, meta, PartRecord.decode(meta.extra[META_PART], part_name)))
        by_name = {entry.name: (entry, meta) for entry, meta, _ in parts}
        ordered = prove_coverage([(entry.name, record) for entry, _, record in parts])
        report.parts = [part_name for part_name, _ in ordered]
        writer = RepositoryWriter(repo)
        committed = False
        try:
            stream = it.ItemStreamWriter(repo.chunker(), repo.chunk_id, writer.put_chunk)
            stats = _merged_stats()
            metas = [by_name[part_name][1] for part_name in report.parts]
            for item in _joined_items(reader, metas, report):
                _count(stats, item)
                stream.add(item)
            item_ids = stream.finish()
            report.nitems = stream.count
            report.item_chunks_written = len(item_ids)
            writer.flush()  # item stream -> its index fragment, before the metadata references it
            first = by_name[report.parts[0]][1]
            for meta in metas:
                for key in _SUMMED_STATS:
                    stats[key] += int(meta.stats.get(key, 0) or 0)
            report.nfiles, report.original_size = stats["nfiles"], stats["original_size"]
            stats["duration"] = round(sum(float(m.stats.get("duration", 0) or 0) for m in metas), 3)
            merged_from = {
                "source": ordered[0][1].source,
                "parts": [
                    {"name": pn, "id": by_name[pn][0].id, "start": rec.start, "end": rec.end} for pn, rec in ordered
                ],
                "merged": datetime.now(UTC).isoformat(),
            }
            meta = ArchiveMeta(
                id=b"",
                name=name,
                time=min(m.time for m in metas),
                end=max(m.end for m in metas),
                host=first.host,
                user=first.user,
                comment=first.comment,
                paths=list(first.paths),
                cmdline=list(first.cmdline),
                item_ids=item_ids,
                nitems=stream.count,
                stats=stats,
                extra={META_MERGED: merged_from},
            )
            plaintext = meta.encode()
            archive_id = repo.chunk_id(plaintext)
            writer.put_chunk(archive_id, plaintext, TYPE_ARCHIVE)
            # the merged archive exists from here on; the parts go after it
            writer.commit_archive(meta.entry(archive_id))
            committed = True
            repo.remember_written_fragments(writer.fragments_written)
        finally:
            if not committed:
                with contextlib.suppress(Exception):  # only saves a rerun uploads; never hides the cause
                    writer.checkpoint_stored()
            writer.close()
        report.archive_id = archive_id.hex()
    for part_name in report.parts:
        _retire(repo, by_name[part_name][0], report, on_event)
    report.requests = repo.request_stats()
    return report


def _finish_earlier_merge(
    repo: Repository,
    reader: ChunkReader,
    existing: ArchiveEntry,
    part_names: list[str],
    entries: dict[str, ArchiveEntry],
    report: MergeReport,
    on_event: Event | None,
) -> MergeReport:
    """``name`` exists: if it is the merge of exactly these parts (a merge that stopped before it retired them
    all), retire those still listed; anything else is a refusal."""
    meta = load_archive(reader, existing)
    merged = meta.extra.get(META_MERGED)
    made_of = {p["name"]: p["id"] for p in merged.get("parts", [])} if isinstance(merged, dict) else {}
    strangers = [p for p in part_names if p in entries and made_of.get(p) != entries[p].id]
    if not made_of or strangers:
        raise ArchiveExists(
            f"an archive named {existing.name!r} already exists"
            + (f" and was not made of {', '.join(map(repr, strangers))}" if made_of else "")
            + "; nothing was merged"
        )
    report.status = "already-merged"
    report.archive_id = existing.hex
    report.parts = list(made_of)
    report.nitems = meta.nitems
    report.nfiles = int(meta.stats.get("nfiles", 0) or 0)
    report.original_size = int(meta.stats.get("original_size", 0) or 0)
    for part_name in made_of:
        if part_name in entries and entries[part_name].id == made_of[part_name]:
            _retire(repo, entries[part_name], report, on_event)
    report.requests = repo.request_stats()
    return report


def _retire(repo: Repository, entry: ArchiveEntry, report: MergeReport, on_event: Event | None) -> None:
    repo.soft_delete_archive(entry)
    report.retired.append(entry.name)
    if on_event is not None:
        on_event("retired", entry.name)


def _joined_items(reader: ChunkReader, metas: list[ArchiveMeta], report: MergeReport) -> Iterator[dict]:
    last_path: bytes | None = None
    last_is_dir = False
    for meta in metas:
        report.item_chunks_read += len(meta.item_ids)
        enclosing: set[bytes] = set()
        if last_path is not None:
            parts = last_path.split(b"/")
            enclosing = {b"/".join(parts[:n]) for n in range(1, len(parts))}
            if last_is_dir:
                enclosing.add(last_path)
        joining = True
        for item in iter_archive_items(reader, meta):
            if joining and item[it.TYPE] == it.DIR and item[it.PATH] in enclosing:
                report.dropped_dirs += 1
                continue
            joining = False
            last_path, last_is_dir = item[it.PATH], item[it.TYPE] == it.DIR
            yield item


def _merged_stats() -> dict:
    stats = {"nfiles": 0, "ndirs": 0, "nother": 0, "original_size": 0}
    stats.update({key: 0 for key in _SUMMED_STATS})
    return stats


def _count(stats: dict, item: dict) -> None:
    kind = item[it.TYPE]
    if kind == it.DIR:
        stats["ndirs"] += 1
    elif kind in (it.FILE, it.HARDLINK):
        stats["nfiles"] += 1
        stats["original_size"] += int(item.get(it.SIZE, 0) or 0)
    else:
        stats["nother"] += 1
