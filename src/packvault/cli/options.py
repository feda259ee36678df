"""argparse -> the engine's option objects.

Each command's options are turned into the engine's typed options here, before the repository is opened (a
typo in a cron job fails fast and never holds a lock).  The option objects validate their own combinations,
so a caller without argparse (the scheduled job) gets the same one-line refusals.  The engines are imported
when a command needs them, not when the CLI starts.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..units import parse_duration

if TYPE_CHECKING:
    from ..maintenance.check import CheckOptions
    from ..maintenance.compact import CompactOptions
    from ..maintenance.prune import PruneOptions


def check_options(args: argparse.Namespace) -> CheckOptions:
    from ..maintenance.check import CheckOptions

    return CheckOptions(
        repository_only=bool(getattr(args, "repository_only", False)),
        archives_only=bool(getattr(args, "archives_only", False)),
        verify_data=bool(getattr(args, "verify_data", False)),
        subset=getattr(args, "read_data_subset", None),
        max_duration=getattr(args, "max_duration", None),
        repair=bool(getattr(args, "repair", False)),
        dry_run=bool(getattr(args, "dry_run", False)),
        processes=getattr(args, "processes", None),
    )


def prune_options(args: argparse.Namespace) -> PruneOptions:
    from ..maintenance.prune import PruneOptions
    from ..maintenance.retention import RetentionPolicy

    policy = RetentionPolicy(
        keep_last=args.keep_last,
        keep_within=parse_duration(args.keep_within, what="--keep-within") if args.keep_within else None,
        keep_hourly=args.keep_hourly,
        keep_daily=args.keep_daily,
        keep_weekly=args.keep_weekly,
        keep_monthly=args.keep_monthly,
        keep_yearly=args.keep_yearly,
    )
    group_by = tuple(g.strip() for g in args.group_by.split(",") if g.strip())
    from .housekeeping import check_tag

    tags = tuple(sorted({check_tag(tag) for tag in args.tag or ()}))
    return PruneOptions(policy, match=args.match, tags=tags, group_by=group_by, dry_run=args.dry_run)


def prune_compact_options(args: argparse.Namespace) -> CompactOptions | None:
    """compact's options of ``prune --compact`` (None without --compact); they mean nothing without it, so
    they are refused there rather than ignored."""
    from ..errors import UsageError
    from ..maintenance.compact import CompactOptions

    given = [flag for flag, value in (("--threshold", args.threshold), ("--min-age", args.min_age),
             ("--cold-min-age", args.cold_min_age), ("--max-unused", args.max_unused)) if value is not None]
    if not args.compact:
        if given:
            raise UsageError(f"{', '.join(given)} only apply with --compact", hint="add --compact, or drop them")
        return None
    defaults = CompactOptions()
    return compact_options(
        argparse.Namespace(
            threshold=defaults.threshold if args.threshold is None else args.threshold,
            max_unused=defaults.max_unused if args.max_unused is None else args.max_unused,
            min_age="2h" if args.min_age is None else args.min_age,
            cold_min_age=args.cold_min_age,
            dry_run=args.dry_run,
        )
    )


def compact_options(args: argparse.Namespace) -> CompactOptions:
    from ..errors import UsageError
    from ..maintenance.compact import CompactOptions

    min_age = parse_duration(args.min_age, what="--min-age", allow_zero=True)
    cold = None
    if args.cold_min_age is not None:
        cold = parse_duration(args.cold_min_age, what="--cold-min-age", allow_zero=True).total_seconds()
    if not 0 <= args.max_unused < 100:
        raise UsageError("--max-unused must be a percentage from 0 to below 100")
    return CompactOptions(
        threshold=args.threshold, min_age=min_age.total_seconds(), cold_min_age=cold, dry_run=args.dry_run,
        max_unused=args.max_unused,
    )
