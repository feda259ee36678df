"""The maintenance commands: ``prune``, ``compact``, ``check`` and ``break-lock``."""

from __future__ import annotations

from dataclasses import replace

from ..errors import EXIT_OK, EXIT_WARNING
from ..repository.repository import Repository
from . import options, render
from .cold import compact_restore, compact_restores_pending, restore_for_check
from .location import split_location
from .opening import open_repository, requests_of, s3_options
from .run import Run

# --- maintenance -------------------------------------------------------------------------------------------


def cmd_prune(args, run: Run) -> int:
    from ..maintenance.prune import prune

    location, _ = split_location(args.repo)
    opts = options.prune_options(args)  # before the repository is opened: a typo in a cron job fails fast
    compact_opts = options.prune_compact_options(args)
    if compact_opts is not None:
        return _prune_compact(args, run, location, opts, compact_opts)
    with open_repository(args, run, location) as repo:
        decisions = prune(repo, opts)
        requests = requests_of(repo)
    render.prune(decisions, opts.group_by, requests, dry_run=opts.dry_run, as_json=args.json, as_list=args.list)
    return EXIT_OK


def _prune_compact(args, run: Run, location: str, opts, compact_opts) -> int:
    """``prune --compact``: both under compact's exclusive lock, in one opening (``prune_and_compact``)."""
    from ..maintenance.prune import prune_and_compact
    from .retention import extend_after_compact, render_held, render_retention

    with open_repository(args, run, location, lock="exclusive") as repo:
        decisions, report = prune_and_compact(repo, opts, compact_opts)
        extended = extend_after_compact(repo, args)  # Object Lock: what is still live stays protected
        report.retention = extended.as_dict() if extended is not None else None
        requests = requests_of(repo)
    render.prune_compact(
        decisions,
        opts.group_by,
        report,
        requests,
        min_age_text=args.min_age or "2h",
        min_age_seconds=compact_opts.min_age,
        as_json=args.json,
        as_list=args.list,
    )
    if not args.json:
        render_held(report.packs_held)
        if extended is not None:
            render_retention(extended, {}, as_json=False)
    return EXIT_OK


def cmd_compact(args, run: Run) -> int:
    from ..maintenance.compact import compact
    from .retention import extend_after_compact, render_held, render_retention

    location, _ = split_location(args.repo)
    opts = options.compact_options(args)  # before the exclusive lock is taken: a typo must not hold up others
    opts = replace(opts, restore=compact_restore(args))
    with open_repository(args, run, location, lock="exclusive") as repo:
        report = compact(repo, opts)
        extended = extend_after_compact(repo, args)  # Object Lock: what is still live stays protected
        report.retention = extended.as_dict() if extended is not None else None
        requests = requests_of(repo)
    render.compact(report, requests, min_age_text=args.min_age, min_age_seconds=opts.min_age, as_json=args.json)
    if not args.json:
        render_held(report.packs_held)
        if extended is not None:
            render_retention(extended, {}, as_json=False)
    pending = compact_restores_pending(report)
    if pending is not None:  # everything else is done (and reported); a rerun copies the restored packs
        raise pending
    return EXIT_OK


def cmd_check(args, run: Run) -> int:
    from ..maintenance.check import check, start_workers
    from .output import Progress

    location, _ = split_location(args.repo)
    opts = options.check_options(args)
    # the data pass's worker processes start up while the store is made, the key derived and the lock taken
    workers = start_workers(location, run.settings, s3_options(args), opts)
    bar = Progress(bool(getattr(args, "progress", False)))
    repo: Repository | None = None
    try:
        repo = Repository(location, settings=run.settings, s3_options=s3_options(args))
        repo.open(None, lock=None)
        repo.tolerate_config_damage = True  # check reports it (and repair restores it) instead of refusing
        if not opts.repository_only:
            repo.unlock(run.passphrase())
            # a check that repairs nothing only reads: from a repository where no lock can be written it reads
            # without one, after a notice, like the other reading commands
            if not repo.acquire_lock(
                exclusive=opts.repair, wait=getattr(args, "lock_wait", None), if_writable=not opts.repair
            ):
                render.no_lock_notice(location, repo.lock_refused)
        restore_for_check(args, repo, reads_data=bool(opts.verify_data or opts.subset))
        try:
            report = check(repo, opts, bar.update, workers=workers)
        finally:
            bar.finish()
    finally:
        if workers is not None:
            workers.close()
        if repo is not None:
            repo.close()
    render.check_report(report, opts, as_json=bool(getattr(args, "json", False)))
    return EXIT_WARNING if report.problems else EXIT_OK


def cmd_break_lock(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock=None) as repo:
        count = repo.new_lock_manager().break_locks(force=args.force)
    render.locks_broken(count, force=args.force, as_json=args.json)
    return EXIT_OK
