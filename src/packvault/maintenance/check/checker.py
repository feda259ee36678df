"""The state of one ``check`` run, shared by its levels (the mixins) and by repair."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable

from ...archive.archive import ArchiveMeta
from ...repository.index import ChunkIndex, Location
from ...repository.repository import ArchiveEntry, Repository
from .archives import ArchiveLevel, Status
from .packs import PackLevel
from .report import ArchiveFindings, CheckOptions, CheckReport, PackState
from .repository_level import RepositoryLevel
from .workers import VerifyPool


class Checker(RepositoryLevel, PackLevel, ArchiveLevel):
    """The state of one run.  ``close`` ends the worker processes (``start_workers``), also when a run failed
    half-way.

    The archive walk (level 2) asks, for every chunk a file references, whether an intact copy exists,
    which the pack scan decides.  While worker processes verify the data packs, this process would only
    wait for them, so it walks the archives early, in a thread, into a report of its own
    (``walk_archives_early``).  That walk is kept only if nothing it looked up could have come out
    differently at the end: every lookup found a chunk the index points at, and no index entry turned out
    bad.  Then its outcome is exactly the walk's after the scan; otherwise it is dropped and the archives
    are walked again, as without workers.  A healthy repository never walks twice.
    """

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
        self._early: _EarlyWalk | None = None
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

    def walk_archives_early(self) -> None:
        """Start the early archive walk (once), when the metadata packs are scanned and workers verify the
        data packs; only where level 2 will run."""
        if self._early is not None or not self.has_key or self.opts.repository_only:
            return
        self._early = _EarlyWalk(self)

    def run_archive_level(self) -> None:
        early, self._early = self._early, None
        if early is not None and early.adopt(self):
            return
        super().run_archive_level()

    def close(self) -> None:
        if self._early is not None:
            self._early.wait()
            self._early = None
        if self.verify_pool is not None:
            self.verify_pool.close()
            self.verify_pool = None


class _EarlyWalk:
    """Level 2 on a shallow copy of the checker that shares the index, the metadata packs and the archive
    entries, and has its own report and findings; run in a thread while the data packs are verified."""

    def __init__(self, checker: Checker):
        walker = copy.copy(checker)
        walker.report = CheckReport()
        walker.findings = {}
        walker.metas = {}
        walker.lost_ids = set()
        walker.orphans = []
        walker.progress = lambda text, **counts: None  # the scan's progress is shown meanwhile
        self.walker = walker
        self.unsure = False  # a lookup found something other than an indexed chunk: the walk may differ
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pv-check-walk", daemon=True)
        self._thread.start()

    def _locate(self, chunk_id: bytes) -> tuple[Location | None, Status]:
        found = ArchiveLevel.locate(self.walker, chunk_id)
        if found[1] != "ok":
            self.unsure = True
        return found

    def _run(self) -> None:
        self.walker.locate = self._locate  # type: ignore[method-assign]
        try:
            ArchiveLevel.run_archive_level(self.walker)
        except BaseException as exc:  # the walk after the scan meets it again, and reports it as it would
            self.error = exc

    def wait(self) -> None:
        self._thread.join()

    def adopt(self, checker: Checker) -> bool:
        """Take the early walk's outcome into ``checker`` if it is the one a walk now would have."""
        self.wait()
        if self.error is not None or self.unsure or checker.report.stats.get("index_entries_bad", 0):
            return False
        walked = self.walker
        checker.findings.update(walked.findings)
        checker.metas.update(walked.metas)
        checker.lost_ids |= walked.lost_ids
        checker.orphans += walked.orphans
        checker.report.problems += walked.report.problems
        checker.report.notes += walked.report.notes
        for name, value in walked.report.stats.items():
            checker.report.count(name, value)
        return True
