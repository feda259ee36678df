"""Level 1 of ``check``, the small objects: the config and its copy, the key blob, index fragments and
``archives/`` entries.  Their structure is verified without the key; with it, they are opened too.

A mixin of ``Checker`` (``checker.py``): the state it reads and fills is the checker's.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import msgpack

from ...crypto.keys import key_blob_repository_id
from ...errors import IntegrityError
from ...repository.config import CONFIG_COPY_NAME, CONFIG_MAC_NAME, CONFIG_NAME, RepoConfig
from ...repository.index import KIND_DATA, KIND_META
from ...repository.objects import parse_header, verify_parts
from ...repository.repository import ArchiveEntry, content_name
from ...storage import layout
from .report import PackState


class RepositoryLevel:
    # --- level 1 -----------------------------------------------------------------------------------------------

    def run_repository_level(self) -> None:
        """The listings are asked at once, while the config is read: to a distant bucket each is a round trip,
        and one after another they were most of a small repository's check."""
        repo = self.repo
        with ThreadPoolExecutor(4, thread_name_prefix="pv-check-list") as pool:
            packs = pool.submit(repo.list_packs_of_both_kinds)
            fragments = pool.submit(lambda: [info.name for info in repo.list_namespace(layout.INDEX)])
            archives = pool.submit(repo.list_namespace_split, layout.ARCHIVES)
            tombstones = None if self.opts.repository_only else pool.submit(repo.tombstones)
            self.check_config()
            self.check_key()
            for kind, infos in packs.result().items():
                for info in infos:
                    self.packs[info.name] = PackState(kind, info.name, info.size)
            self.report.stats["packs_data"] = sum(1 for p in self.packs.values() if p.kind == KIND_DATA)
            self.report.stats["packs_meta"] = sum(1 for p in self.packs.values() if p.kind == KIND_META)
            self.start_workers()
            self.load_index(fragments.result(), lambda: bool(archives.result()[0]))
            live, deleted = archives.result()
            if self.opts.repository_only:
                self.check_small_objects(layout.ARCHIVES, live)
            else:
                self.read_archive_entries(live, deleted, tombstones.result() if tombstones is not None else set())
        self.scan_packs()
        if self.has_key:
            self.compare_index()
        else:
            self.report_damage_without_key()

    def check_config(self) -> None:
        """The config and its copy by their checksums (no key needed); with the key, its MAC."""
        objects = self.repo.config_objects()
        for name in (CONFIG_NAME, CONFIG_COPY_NAME):
            raw = objects[name]
            if raw is None:
                if name == CONFIG_COPY_NAME:
                    self.config_rewrite = True
                    self.report.notes.append("the repository config has no copy yet (older repository); repair adds it")
                continue
            try:
                RepoConfig.decode(raw)
            except IntegrityError as exc:
                self.config_rewrite = True
                self.report.add("repository", "config-damaged", f"{exc}", object=name)
                continue
            if not RepoConfig.has_checksum(raw):
                self.config_rewrite = True
                self.report.notes.append(f"{name} has no checksum yet (older repository); repair adds it")
        if objects[CONFIG_NAME] and objects[CONFIG_COPY_NAME] and objects[CONFIG_NAME] != objects[CONFIG_COPY_NAME]:
            self.config_rewrite = True
            if not self.report.problems or self.report.problems[-1].kind != "config-damaged":
                self.report.add("repository", "config-damaged", "the config and its copy differ", object=CONFIG_NAME)
        if not self.has_key:
            return
        authentic = self.repo.config_mac_verifies(objects[CONFIG_MAC_NAME])
        if authentic is False:
            self.config_rewrite = True
            self.report.add(
                "repository",
                "config-unauthenticated",
                "the repository config does not authenticate under the key (changed without the key)",
                object=CONFIG_NAME,
            )
        elif authentic is None:
            self.config_rewrite = True
            self.report.notes.append("the repository config has no MAC yet (older repository); repair adds it")

    def check_key(self) -> None:
        """Structure of the key blob(s); with the key opened this already passed."""
        if self.has_key or self.repo.config.encryption != "repokey":
            return
        for info in self.repo.list_namespace(layout.KEYS):
            blob = self.repo.load_raw(layout.KEYS, info.name)
            try:
                key_blob_repository_id(blob)
            except IntegrityError as exc:
                self.report.add("repository", "key-damaged", str(exc), object=info.name)
                continue
            if content_name(blob) != info.name:
                self.report.add("repository", "key-damaged", "key blob does not match its name", object=info.name)

    def _load_small(self, namespace: str, name: str, loaded: Future) -> bytes | None:
        """A sealed small object (``loaded``: its load, ``load_raw_ahead``), structurally verified; None (and a
        problem) if damaged."""
        raw = loaded.result()
        try:
            header = parse_header(raw)
            verify_parts(header, raw)
            if header.total_size != len(raw):
                raise IntegrityError(f"object has {len(raw)} bytes, header says {header.total_size}")
            if content_name(raw) != name:
                raise IntegrityError("content does not match its name")
        except IntegrityError as exc:
            kind = "fragment-damaged" if namespace == layout.INDEX else "entry-damaged"
            self.report.add("repository", kind, f"{namespace}/ object is damaged: {exc}", object=name)
            return None
        return raw

    def check_small_objects(self, namespace: str, infos: list) -> None:
        for name, loaded in self.repo.load_raw_ahead(namespace, [info.name for info in infos]):
            self._load_small(namespace, name, loaded)

    def load_index(self, fragments: list[str], any_archives: Callable[[], bool]) -> None:
        """``fragments``: the index fragments listed; ``any_archives()``: whether any archive entry is."""
        self.fragments = fragments
        self.report.stats["index_fragments"] = len(self.fragments)
        for name, loaded in self.repo.load_raw_ahead(layout.INDEX, self.fragments):
            raw = self._load_small(layout.INDEX, name, loaded)
            if raw is None:
                self.fragments_damaged += 1
                continue
            if not self.has_key:
                continue
            try:
                self.index.apply_fragment(self.repo.codec.open(raw)[2])
            except IntegrityError as exc:
                self.fragments_damaged += 1
                self.report.add("repository", "fragment-damaged", f"index fragment does not open: {exc}", object=name)
        if self.has_key and not self.fragments and self.packs:
            if any_archives():
                self.report.add("repository", "index-missing", "the repository has packs but no index fragments")
            else:  # what the first backup leaves when it is interrupted before its first checkpoint
                self.report.notes.append(
                    "the repository has packs but no index fragments and no archives: left by an interrupted first "
                    "backup; the next backup reuses nothing of it, 'packvault compact' removes it"
                )
        if self.fragments_damaged:
            self.index_changed = True
        self.report.stats["index_entries"] = len(self.index)

    def read_archive_entries(self, live: list, deleted: list, tombstones: set[bytes]) -> None:
        """``live``, ``deleted``: the entries listed (``list_namespace_split``); ``tombstones``: the ids of the
        archives compact purged."""
        for name, loaded in self.repo.load_raw_ahead(layout.ARCHIVES, [info.name for info in live]):
            raw = self._load_small(layout.ARCHIVES, name, loaded)
            try:
                if raw is None:
                    raise IntegrityError("structurally damaged")
                entry = ArchiveEntry.decode(self.repo.codec.open(raw)[2])
            except (IntegrityError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
                self.damaged_entries.append(name)
                if raw is not None:
                    message = f"archive entry does not open: {exc}"
                    self.report.add("archives", "entry-damaged", message, object=name)
                continue
            self.entries.append((name, entry))
        for info in deleted:
            try:
                raw = self.repo.load_raw(layout.ARCHIVES, info.name, deleted=True)
                self.deleted_ids.add(ArchiveEntry.decode(self.repo.codec.open(raw)[2]).id)
            except Exception as exc:  # a damaged soft-deleted entry only matters for undelete
                self.report.notes.append(f"soft-deleted archive entry {info.name} does not open: {exc}")
        self.deleted_ids |= tombstones  # purged by compact: deleted on purpose
        self.entries.sort(key=lambda pair: (pair[1].time, pair[1].name))
        self.report.stats["archives"] = len(self.entries)
