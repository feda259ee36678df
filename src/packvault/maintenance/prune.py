"""``prune``: apply a retention policy by soft-deleting archive entries.

The decisions come from ``retention.plan_prune`` (pure, tested on its own); this module only feeds it
the repository's archive list and soft-deletes what it rejects; the caller shows the decisions.  Soft
deletion is O(1) per archive and reversible with ``undelete`` until ``compact`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ..repository.repository import Repository
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


def prune(repo: Repository, opts: PruneOptions) -> list[Decision]:
    """Every archive's decision (kept, and why, or pruned); the pruned ones are soft-deleted unless a dry run."""
    wanted = set(opts.tags)
    entries = {e.hex: e for e in repo.archive_entries() if wanted <= set(e.tags)}
    paths = _paths_of(repo, list(entries.values())) if "paths" in opts.group_by else {}
    summaries = [
        ArchiveSummary(
            id=e.hex, name=e.name, time=datetime.fromisoformat(e.time), host=e.host, paths=paths.get(e.hex, ())
        )
        for e in entries.values()
    ]
    now = opts.now or datetime.now(UTC)
    decisions = plan_prune(summaries, opts.policy, now=now, match=opts.match, group_by=opts.group_by)
    if not opts.dry_run:
        for decision in decisions:
            if not decision.keep:
                repo.check_lock()
                repo.soft_delete_archive(entries[decision.archive.id])
    return decisions
