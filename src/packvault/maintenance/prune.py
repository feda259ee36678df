"""``prune``: apply a retention policy by soft-deleting archive entries.

The decisions come from ``retention.plan_prune`` (pure, tested on its own); this module only feeds it
the repository's archive list and soft-deletes what it rejects.  Soft deletion is O(1) per archive and
reversible with ``undelete`` until ``compact`` runs.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..repository.repository import Repository
from ..units import parse_duration
from .retention import ArchiveSummary, RetentionPolicy, plan_prune


def policy_from_args(args) -> RetentionPolicy:
    return RetentionPolicy(
        keep_last=args.keep_last,
        keep_within=parse_duration(args.keep_within, what="--keep-within") if args.keep_within else None,
        keep_hourly=args.keep_hourly,
        keep_daily=args.keep_daily,
        keep_weekly=args.keep_weekly,
        keep_monthly=args.keep_monthly,
        keep_yearly=args.keep_yearly,
    )


def prune(
    repo: Repository,
    policy: RetentionPolicy,
    *,
    match: str | None = None,
    group_by: tuple[str, ...] = ("host", "prefix"),
    dry_run: bool = False,
    now: datetime | None = None,
):
    entries = {e.hex: e for e in repo.archive_entries()}
    summaries = [
        ArchiveSummary(id=e.hex, name=e.name, time=datetime.fromisoformat(e.time), host=e.host)
        for e in entries.values()
    ]
    decisions = plan_prune(summaries, policy, now=now or datetime.now(UTC), match=match, group_by=group_by)
    if not dry_run:
        for decision in decisions:
            if not decision.keep:
                repo.check_lock()
                repo.soft_delete_archive(entries[decision.archive.id])
    return decisions


def run_prune(repo: Repository, args) -> int:
    from ..cli.output import print_json, print_table

    policy = policy_from_args(args)
    group_by = tuple(g.strip() for g in args.group_by.split(",") if g.strip())
    decisions = prune(repo, policy, match=args.match, group_by=group_by, dry_run=args.dry_run)
    pruned = [d for d in decisions if not d.keep]
    if args.json:
        print_json(
            {
                "dry_run": args.dry_run,
                "decisions": [
                    {
                        "name": d.archive.name,
                        "id": d.archive.id,
                        "time": d.archive.time.isoformat(),
                        "host": d.archive.host,
                        "keep": d.keep,
                        "reasons": list(d.reasons),
                        "group": list(d.group),
                    }
                    for d in decisions
                ],
                "requests": repo.request_stats(),
            }
        )
        return 0
    if args.list:
        rows = [
            (
                "keep" if d.keep else ("would prune" if args.dry_run else "pruned"),
                d.archive.name,
                d.archive.time.isoformat(timespec="seconds"),
                d.archive.host,
                ", ".join(d.reasons),
            )
            for d in decisions
        ]
        if rows:
            print_table(rows, ("Decision", "Archive", "Time", "Host", "Kept by"))
    verb = "Would prune" if args.dry_run else "Pruned"
    print(f"{verb} {len(pruned)} of {len(decisions)} archives; run 'packvault compact' to reclaim space")
    return 0
