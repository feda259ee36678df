"""The state of one ``check`` run, shared by its levels (the mixins) and by repair."""

from __future__ import annotations

import time
from collections.abc import Callable

from ...archive.archive import ArchiveMeta
from ...repository.index import ChunkIndex, Location
from ...repository.repository import ArchiveEntry, Repository
from .archives import ArchiveLevel
from .packs import PackLevel
from .report import ArchiveFindings, CheckOptions, CheckReport, PackState
from .repository_level import RepositoryLevel
from .workers import VerifyPool


class Checker(RepositoryLevel, PackLevel, ArchiveLevel):
    """The state of one run.  ``close`` ends the worker processes (``start_workers``), also when a run failed
    half-way."""

    def __init__(
        self,
        repo: Repository,
        options: CheckOptions,
        report: CheckReport,
        progress: Callable[..., None],
        workers: VerifyPool | None = None,
    ):
        self.repo = repo
        self.opts = options
        self.report = report
        self.progress = progress
        self.has_key = repo.codec is not None
        self.index = ChunkIndex()  # from the fragments
        self.alt = ChunkIndex()  # intact objects the index does not point at
        self.packs: dict[str, PackState] = {}
        self.fragments: list[str] = []
        self.fragments_damaged = 0
        self.archive_objects: dict[bytes, Location] = {}  # TYPE_ARCHIVE objects found in metadata packs
        self.meta_cache: dict[str, bytes] = {}
        self.verify_pool = workers  # worker processes for the data packs (``start_workers``)
        self.use_pool = False  # this run's data packs are handed to them
        self.data_selection: tuple[list[str], bool] | None = None  # ``select_data_packs``, once listed
        self.worker_requests: dict[str, int] = {}  # store requests made by verifying worker processes
        self._meta_cache_bytes = 0
        self.deadline = time.monotonic() + options.max_duration if options.max_duration else None
        self.entries: list[tuple[str, ArchiveEntry]] = []  # live, decryptable: (store key, entry)
        self.damaged_entries: list[str] = []  # store keys of entries that do not open
        self.deleted_ids: set[bytes] = set()  # archive ids of soft-deleted entries (never resurrected)
        self.index_changed = False  # the index disagrees with the packs: repair rebuilds it
        self.lost_ids: set[bytes] = set()  # referenced chunks with no intact copy (proportional to damage)
        self.findings: dict[str, ArchiveFindings] = {}  # per entry store key
        self.metas: dict[str, ArchiveMeta] = {}  # archive metadata per entry store key
        self.orphans: list[bytes] = []  # archive metadata objects without an entry
        self.config_rewrite = False  # the config, its copy or its MAC needs to be (re)written
        self.repoint_targets: set[str] = set()  # packs holding the intact copy of a bad index entry

    def close(self) -> None:
        if self.verify_pool is not None:
            self.verify_pool.close()
            self.verify_pool = None
