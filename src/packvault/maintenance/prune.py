"""``prune``: apply a retention policy by soft-deleting archive entries.

The decisions come from ``retention.plan_prune`` (pure, tested on its own); this module only feeds it
the repository's archive list and soft-deletes what it rejects; the caller shows the decisions.  Soft
deletion is O(1) per archive and reversible with ``undelete`` until ``compact`` runs.

``prune_and_compact`` (``prune --compact``) is restic's ``forget --prune``: one command, one opening, one
exclusive lock, and the pruned archives purged by compact instead of renamed first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ..repository.catalogue import ArchiveEntry
from ..repository.repository import Repository
from .compact import CompactOptions, CompactReport, compact
from .retention import DEFAULT_GROUP_BY, ArchiveSummary, Decision, RetentionPolicy, plan_prune


def _paths_of(repo: Repository, entries: list) -> dict[str, tuple[str, ...]]:
    """Backed-up paths per archive id: from the entry, or, for entries written before entries recorded them,
    from the archive metadata (one small read per such archive)."""
    result = {e.hex: e.paths for e in entries if e.paths is not None}
    older = [e for e in entries if e.paths is None]
    if older:
        from ..archive.archive import load_archive
        from ..repository.reader import ChunkReader

        with ChunkReader(repo) as reader:
            for entry in older:
                result[entry.hex] = tuple(load_archive(reader, entry).paths)
    return result


@dataclass(frozen=True)
class PruneOptions:
    policy: RetentionPolicy
    match: str | None = None  # only archives whose name matches this glob
    tags: tuple[str, ...] = ()  # only archives that carry all of these (a tagged series is pruned on its own)
    group_by: tuple[str, ...] = DEFAULT_GROUP_BY
    dry_run: bool = False
    now: datetime | None = None  # the policy's "now"; None: the current time


def decide(
    repo: Repository, opts: PruneOptions, listed: list[ArchiveEntry]
) -> tuple[list[Decision], list[ArchiveEntry]]:
    """Every archive's decision, and the entries of the archives to prune (none removed yet)."""
    wanted = set(opts.tags)
    entries = {e.hex: e for e in listed if wanted <= set(e.tags)}
    paths = _paths_of(repo, list(entries.values())) if "paths" in opts.group_by else {}
    summaries = [
        ArchiveSummary(
            id=e.hex, name=e.name, time=datetime.fromisoformat(e.time), host=e.host, paths=paths.get(e.hex, ())
        )
        for e in entries.values()
    ]
    now = opts.now or datetime.now(UTC)
    decisions = plan_prune(summaries, opts.policy, now=now, match=opts.match, group_by=opts.group_by)
    return decisions, [entries[d.archive.id] for d in decisions if not d.keep]


def prune(repo: Repository, opts: PruneOptions) -> list[Decision]:
    """Every archive's decision (kept, and why, or pruned); the pruned ones are soft-deleted unless a dry run."""
    decisions, pruned = decide(repo, opts, repo.archive_entries())
    if not opts.dry_run:
        for entry in pruned:
            repo.check_lock()
            repo.soft_delete_archive(entry)
    return decisions


def prune_and_compact(
    repo: Repository, opts: PruneOptions, compact_opts: CompactOptions
) -> tuple[list[Decision], CompactReport]:
    """``prune --compact``: decide, then compact at once with the pruned archives gone, under the caller's
    exclusive lock and with what the opening loaded (config, key, index).

    The archives are listed once, strictly (compact must know every archive: a damaged entry stops both
    before anything changes), and that listing is what both the decisions and compact's mark use.  A pruned
    archive is not soft-deleted first: compact would purge the renamed entry right away, so it is purged
    directly (tombstone, then entry), in compact's purge step, after the mark succeeded.  Nothing changes
    when the mark refuses.  ``opts.dry_run`` makes compact a dry run too: the report then shows what compact
    would free once the pruned archives are gone, and nothing is changed."""
    listed = repo.archive_entries(strict=True)
    decisions, pruned = decide(repo, opts, listed)
    gone = {id(entry) for entry in pruned}
    live = [entry for entry in listed if id(entry) not in gone]
    if opts.dry_run:
        compact_opts = replace(compact_opts, dry_run=True)
    report = compact(repo, compact_opts, live=live, pruned=[] if compact_opts.dry_run else pruned)
    return decisions, report
