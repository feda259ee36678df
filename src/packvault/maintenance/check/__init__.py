"""``check``: verify a repository from the bytes up, and (with ``repair.py``) put it back in order.

What is checked, in the order a damaged repository needs it (see docs/check.md for the user's view):

1. **Repository level.**  Every pack is read whole, once (one GET each on S3): each object's header
   checksum, each sealed part's xxh64, and the pack name against the blake3 of its bytes.  The sealed
   small objects in ``index/`` and ``archives/`` and the key blob get the same structural check.  None of
   this needs the key, so ``--repository-only`` runs without a passphrase.  With the key, the index is
   loaded fresh from its fragments (never from the local cache, which could hide damage in the store) and
   compared with what the packs really hold: an entry must point at an intact object with its id, and
   every intact object should be indexed.
2. **Archive level** (needs the key).  Every ``archives/`` entry is read from the store (not the local
   plaintext cache) and decrypted; its archive metadata must parse and be complete; its item stream is
   decoded and every chunk a file references must resolve to an intact object.
3. **Data level** (``--verify-data``, ``--read-data-subset``).  Every object of the data packs read is
   decrypted, authenticated and its id (a keyed MAC of the plaintext) recomputed.  This rides on the
   same single read of each pack as level 1: verifying data costs CPU, not a second download.  Metadata
   packs are always decrypted when the key is there (they are small, and their objects are what
   level 2 reads).  The data packs of this pass are downloaded and verified by worker processes, one per
   CPU (``workers.py``); the checker compares what they found with the index.

Memory stays bounded (DESIGN principle 5): the index lives in its ``borghash`` table, whose flag bits
record "seen intact" and "bad" per entry; intact objects the index does not point at (unindexed, or a
second copy of an indexed chunk) go into a second ``ChunkIndex``, which is small unless the index itself
is lost, when it *is* the rebuilt index.  Per-pack state is one small record per pack; per-problem state
is proportional to the damage.

``--max-duration`` bounds the data-pack pass (by far the largest); where it stopped is kept in the
local cache and the next run resumes there.  The index, metadata-pack and archive checks always run to
completion: they read metadata only.

The package: ``report.py`` (problems, the report, options), ``repository_level.py`` (config, key, index
fragments, archive entries), ``packs.py`` (the pack scan and the index comparison), ``verify.py`` (one
pack's objects, wherever it is verified), ``workers.py`` (the worker processes), ``archives.py``
(level 2 and the chunk lookups), ``checker.py`` (the state of one run), ``repair.py`` (acting on it).
The engine reports; ``cli/render.py`` shows the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...processes import usable_processes
from ...repository.packreading import PackReadingKit
from ...repository.repository import Repository
from ...settings import Settings
from .checker import Checker
from .repair import repair
from .report import ArchiveFindings, CheckOptions, CheckReport, Problem
from .workers import VerifyPool

__all__ = ["ArchiveFindings", "CheckOptions", "CheckReport", "Checker", "Problem", "check", "start_workers"]


def start_workers(
    location: str, settings: Settings, s3_options: dict[str, str], opts: CheckOptions
) -> VerifyPool | None:
    """Start the worker processes a data pass will use, before the repository is opened and its key
    unlocked, so that their start-up (on S3: an S3 client each) overlaps the key derivation; None when
    ``opts`` read no data packs or there is one CPU.  The caller hands them to ``check``."""
    if not (opts.verify_data or opts.subset):
        return None
    processes = usable_processes(opts.processes)
    if processes < 1:
        return None
    pool = VerifyPool(PackReadingKit(location, settings, dict(s3_options)), processes)
    pool.start()
    return pool


def check(
    repo: Repository,
    opts: CheckOptions,
    progress: Callable[..., None] = lambda text, **counts: None,
    *,
    workers: VerifyPool | None = None,
) -> CheckReport:
    """Run the check (and repair) on an opened repository; returns the report.

    ``workers``: processes for the data packs, started before the key was unlocked (``start_workers``);
    without, the check starts its own where they help.  Either way they are ended when the check returns."""
    started = time.monotonic()
    report = CheckReport()
    checker = Checker(repo, opts, report, progress, workers)
    try:
        checker.run_repository_level()
        if checker.has_key and not opts.repository_only:
            checker.run_archive_level()
        if opts.repair:
            repair(checker, dry_run=opts.dry_run)
    finally:
        checker.close()
    # every request of ``repo``'s store, its opening and lock included, as the other commands report them;
    # the worker processes' (``workers.py``) went through stores of their own: added here
    made = repo.request_stats()
    extra = checker.worker_requests
    report.stats["requests"] = {k: made.get(k, 0) + extra.get(k, 0) for k in made}
    report.stats["duration"] = round(time.monotonic() - started, 3)
    return report
