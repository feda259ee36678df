"""Level 2 of ``check``: every archive's metadata and item stream, and every chunk a file references resolved
to an intact object; plus the lookups repair shares (where an intact copy of a chunk is, its plaintext).

A mixin of ``Checker`` (``checker.py``): the state it reads and fills is the checker's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from ...archive import items as it
from ...archive.archive import ArchiveMeta, IncompleteArchiveMeta
from ...archive.items import iter_items_robust
from ...errors import IntegrityError, PackvaultError
from ...repository.index import Location
from .report import FLAG_BAD, ArchiveFindings

Status = Literal["ok", "unindexed", "repointed", "lost"]


class ArchiveLevel:
    # --- lookups used by level 2 and repair -----------------------------------------------------------------

    def locate(self, chunk_id: bytes) -> tuple[Location | None, Status]:
        """Where an intact copy of ``chunk_id`` is: (location, "ok" | "unindexed" | "repointed" | "lost")."""
        entry = self.index.table.get(chunk_id)
        if entry is not None and not entry.flags & FLAG_BAD:
            names, kinds = self.index.packs.names, self.index.packs.kinds
            return Location(names[entry.pack], kinds[entry.pack], entry.offset, entry.size), "ok"
        loc = self.alt.get(chunk_id)
        if loc is not None:
            return loc, ("repointed" if entry is not None else "unindexed")
        return None, "lost"

    def read_object(self, chunk_id: bytes, loc: Location) -> bytes:
        """Plaintext of an object, authenticated and id-checked (from the metadata cache when possible)."""
        cached = self.meta_cache.get(loc.pack)
        if cached is not None:
            buf, offset = cached, loc.offset
        else:
            buf, offset = self.repo.load_pack_range(loc.kind, loc.pack, loc.offset, loc.size), 0
        data = self.repo.codec.open(buf, offset, expected_id=chunk_id)[2]
        if self.repo.chunk_id(data) != chunk_id:
            raise IntegrityError("plaintext does not match its id (MAC)")
        return data

    # --- level 2 -------------------------------------------------------------------------------------------------

    def load_archive_meta(self, archive_id: bytes, label: str) -> ArchiveMeta | None:
        loc, status = self.locate(archive_id)
        if loc is None:
            self.report.add(
                "archives",
                "archive-meta-lost",
                "archive metadata object is missing or damaged",
                archive=label,
                object=archive_id.hex(),
            )
            return None
        try:
            meta = ArchiveMeta.decode(self.read_object(archive_id, loc), archive_id)
        except IncompleteArchiveMeta as exc:
            self.report.add(
                "archives",
                "archive-meta-incomplete",
                f"archive metadata {exc}",
                archive=label,
                object=archive_id.hex(),
            )
            return None
        except IntegrityError as exc:
            self.report.add(
                "archives",
                "archive-meta-lost",
                f"archive metadata does not open: {exc}",
                archive=label,
                object=archive_id.hex(),
                pack=loc.pack,
                offset=loc.offset,
            )
            return None
        if status != "ok":
            self.report.count("chunks_unindexed_referenced")
        return meta

    def walk_archive(self, label: str, meta: ArchiveMeta) -> ArchiveFindings:
        """Decode an archive's item stream and resolve every chunk; problems are reported as found."""
        findings = ArchiveFindings()
        report = self.report

        def chunks() -> Iterator[bytes | None]:
            for item_id in meta.item_ids:
                loc, status = self.locate(item_id)
                data = None
                if loc is not None:
                    try:
                        data = self.read_object(item_id, loc)
                    except PackvaultError as exc:
                        report.add(
                            "archives",
                            "items-lost",
                            f"item metadata chunk unreadable: {exc}",
                            archive=label,
                            object=item_id.hex(),
                            pack=loc.pack,
                            offset=loc.offset,
                        )
                else:
                    report.add(
                        "archives",
                        "items-lost",
                        "item metadata chunk is lost: the items in it are gone",
                        archive=label,
                        object=item_id.hex(),
                    )
                if data is None:
                    findings.lost_item_chunks += 1
                    findings.lost_item_ids.append(item_id)
                elif status != "ok":
                    findings.unindexed += 1
                yield data

        for item in iter_items_robust(chunks()):
            findings.items += 1
            unsafe = it.unsafe_item_reason(item)
            if unsafe is not None:
                report.add(
                    "archives",
                    "item-unsafe",
                    f"item would leave the restore target ({unsafe}); extract skips it",
                    archive=label,
                    path=it.path_str(item) if isinstance(item.get(it.PATH), bytes) else repr(item.get(it.PATH)),
                )
            if item.get(it.TYPE) != it.FILE:
                continue
            findings.files += 1
            path = it.path_str(item)
            chunk_list = item.get(it.CHUNKS) or []
            lost = 0
            for chunk_id, _size in chunk_list:
                _, status = self.locate(chunk_id)
                if status == "lost":
                    lost += 1
                    self.lost_ids.add(chunk_id)
                elif status != "ok":
                    findings.unindexed += 1
            report.count("chunks_referenced", len(chunk_list))
            if lost:
                findings.damaged_files += 1
                report.add(
                    "archives",
                    "file-damaged",
                    f"{lost} of {len(chunk_list)} chunk(s) missing or damaged",
                    archive=label,
                    path=path,
                )
            elif sum(size for _, size in chunk_list) != item.get(it.SIZE, 0):
                report.add(
                    "archives", "file-size", "chunk sizes do not add up to the file size", archive=label, path=path
                )
            healthy = item.get(it.ORIGINAL_CHUNKS)
            if healthy is not None:
                if all(self.locate(cid)[1] != "lost" for cid, _ in healthy):
                    findings.healable += 1
                    findings.healable_paths.add(item[it.PATH])
                    report.notes.append(
                        f"archive {label!r}: file {path!r} was repaired with zeros; its original "
                        "chunks are back, repair restores it"
                    )
                else:
                    findings.known_damaged += 1
            if it.ERROR in item:
                # a repaired file is still damaged: it restores with zeros, so it stays a problem until healed
                report.add("archives", "file-repaired", str(item[it.ERROR]), archive=label, path=path)
        if findings.lost_item_chunks == 0 and findings.items != meta.nitems:
            report.add(
                "archives",
                "archive-meta-incomplete",
                f"metadata says {meta.nitems} items, the item stream has {findings.items}",
                archive=label,
            )
        if findings.unindexed:
            report.add(
                "archives",
                "chunks-unindexed",
                f"{findings.unindexed} referenced chunk(s) are intact but not where the index points "
                "(repair re-indexes them)",
                archive=label,
            )
        lost_before = meta.lost_item_chunks
        if lost_before:
            report.add(
                "archives",
                "archive-damaged",
                f"an earlier repair could not read {len(lost_before)} part(s) of the file list: the files listed "
                "there are missing from this archive, and compact keeps all data until the archive is deleted",
                archive=label,
            )
        report.count("files", findings.files)
        return findings

    def run_archive_level(self) -> None:
        referenced = {entry.id for _, entry in self.entries}
        for key, entry in self.entries:
            self.progress(f"check: archive {entry.name}")
            meta = self.load_archive_meta(entry.id, entry.name)
            if meta is None:
                continue
            self.metas[key] = meta
            self.findings[key] = self.walk_archive(entry.name, meta)
        names = {entry.name for _, entry in self.entries}
        for archive_id in sorted(self.archive_objects):
            if archive_id in referenced or archive_id in self.deleted_ids:
                continue
            name = "?"
            try:
                loc, _ = self.locate(archive_id)
                name = ArchiveMeta.name_of(self.read_object(archive_id, loc))
            except Exception:  # reported later by repair when it tries to use it
                pass
            if name in names:
                # the interrupted first attempt of an archive whose rerun committed: garbage, not a lost archive
                self.report.notes.append(
                    f"archive metadata {archive_id.hex()[:16]} of {name!r} has no entry: an interrupted attempt of "
                    "an archive that exists; 'packvault compact' removes it"
                )
                continue
            self.orphans.append(archive_id)
            if self.damaged_entries:  # most likely the archive of a damaged entry: a problem, repair brings it back
                self.report.add(
                    "archives",
                    "entry-missing",
                    "archive metadata has no archives/ entry (its entry is damaged or lost); repair re-creates it",
                    archive=name,
                    object=archive_id.hex(),
                )
            else:  # what a create interrupted between its metadata and its entry leaves behind
                self.report.notes.append(
                    f"archive metadata {archive_id.hex()[:16]} of {name!r} has no archives/ entry: left by an "
                    "interrupted backup (or its entry was deleted); 'packvault check --repair' makes it an archive "
                    "again, 'packvault compact' removes it"
                )
