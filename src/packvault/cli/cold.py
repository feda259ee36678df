"""The CLI's side of cold data packs (S3 GLACIER/DEEP_ARCHIVE): which command restores what, and what it
tells the user (``repository/restores.py`` does the work).

extract restores the packs it needs whenever a restore can be needed; check --verify-data reads every data
pack, so it restores only when the user asked for it with a restore option (retrieval is charged per GB).
Either way a restore not finished stops the command with exit 3 (rerun later) unless --wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..errors import ColdObject, RestorePending, UsageError
from ..repository.repository import Repository
from ..repository.restores import DEFAULT_DAYS, DEFAULT_POLL_SECONDS, DEFAULT_TIER, PackRestorer
from . import render


def restore_options_given(args) -> bool:
    return bool(args.wait or args.restore_tier is not None or args.restore_days is not None)


def check_restore_options(args) -> None:
    if args.restore_days is not None and args.restore_days < 1:
        raise UsageError("--restore-days must be at least 1")
    if args.poll_interval is not None and args.poll_interval <= 0:
        raise UsageError("--poll-interval must be positive")


def restorer_for(args, repo: Repository) -> PackRestorer:
    check_restore_options(args)
    return PackRestorer(repo, tier=args.restore_tier or DEFAULT_TIER, days=args.restore_days or DEFAULT_DAYS)


def restore_or_stop(args, restorer: PackRestorer, packs: set[str]) -> None:
    """Request the restores of ``packs``; return once all are readable (--wait), else stop with exit 3."""
    plan = restorer.prepare(packs)
    if not plan.waiting:
        return
    if not args.wait:
        raise plan.pending_error()
    restorer.wait(plan, poll=args.poll_interval or DEFAULT_POLL_SECONDS, progress=render.restores_waiting)


def extract_with_restores(args, repo: Repository, extractor, items: Callable[[], Iterator[dict]]):
    """Run an extract of ``items`` (a fresh iterator per call), restoring the packs it needs (only those)
    where a restore can be needed: the repository's data packs are cold, the user named a restore option,
    or an earlier run left restores pending; a hot repository pays nothing for it.  Files are written as
    their packs become readable (``archive/cold_extract.py``).

    A rerun while restores are pending resumes: unless ``--overwrite`` says otherwise, a directory target
    keeps the files whose size and mtime match (``if-changed``), which are the ones the run before wrote,
    so their packs are not read again (a bucket target is create-only by default anyway)."""
    from ..archive.cold_extract import ColdExtract
    from ..archive.extract import OVERWRITE_IF_CHANGED, Extractor

    restorer = restorer_for(args, repo)
    resuming = restorer.has_pending()
    if not (restore_options_given(args) or repo.cold_data_packs or resuming):
        return extractor.run(items())
    if resuming and args.overwrite is None and isinstance(extractor, Extractor):
        extractor.overwrite = OVERWRITE_IF_CHANGED
    return ColdExtract(extractor, restorer, items).run(
        wait=args.wait, poll=args.poll_interval or DEFAULT_POLL_SECONDS, progress=render.restores_waiting
    )


def compact_restore(args):
    """compact's restore of partly dead cold packs (``maintenance/compact.py``, step 8): only when the user
    asked for it with a restore option (retrieval is charged per GB); None otherwise."""
    from ..maintenance.cold_compact import ColdRestore

    if not restore_options_given(args):
        return None
    check_restore_options(args)
    return ColdRestore(
        tier=args.restore_tier or DEFAULT_TIER,
        days=args.restore_days or DEFAULT_DAYS,
        wait=args.wait,
        poll=args.poll_interval or DEFAULT_POLL_SECONDS,
        progress=render.restores_waiting,
    )


def compact_restores_pending(report) -> RestorePending | None:
    """The exit-3 error of a compact that left cold packs to copy once their restores are done."""
    if not report.packs_restore_pending:
        return None
    return RestorePending(
        f"restore requested for {report.packs_restore_pending} cold packs, "
        f"{report.bytes_restore_pending / 1024**3:.2f} GiB, to copy their live data forward; rerun compact "
        "with the same options to continue"
    )


def restore_for_check(args, repo: Repository, *, reads_data: bool) -> None:
    """check --verify-data (or a data subset) over cold data packs: refuse unless a restore was asked for
    (now, or by the run before, which a rerun without the options continues)."""
    if not (reads_data and repo.cold_data_packs):
        return
    restorer = restorer_for(args, repo)
    if not (restore_options_given(args) or restorer.has_pending()):
        raise ColdObject(
            "check --verify-data reads every data pack, and this repository's data packs are in a cold "
            "storage class",
            hint="add --restore-tier bulk|standard|expedited (retrieval is charged per GB) and rerun, or check "
            "without --verify-data",
        )
    restore_or_stop(args, restorer, {info.name for info in repo.list_packs(0)})
