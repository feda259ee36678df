"""compact's opt-in restore of cold data packs (``compact --restore-tier``; ``compact.py``, step 8).

By default compact never copies a GLACIER/DEEP_ARCHIVE data pack forward, since that reads it.  Asked to,
it restores the partly dead ones worth a rewrite (``repository/restores.py``, with a record of its own in
the cache) and rewrites those that are readable; the others stay as they are until a later compact finds
their restores done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..repository.repository import Repository
from ..repository.restores import PackRestorer, RestorePlan

if TYPE_CHECKING:  # compact.py imports this module
    from .compact import CompactReport, _PackPlan

RESTORES_RECORD = "cold-restores-compact.json"  # compact's own record (``PackRestorer``)


@dataclass(frozen=True)
class ColdRestore:
    """How compact restores the cold packs it copies forward (``compact --restore-tier ...``)."""

    tier: str
    days: int
    wait: bool = False
    poll: float = 300.0  # with ``wait``: seconds between two looks at the restores
    progress: Callable[[RestorePlan], None] | None = None


def restore_cold_packs(
    repo: Repository, plans: list[_PackPlan], threshold: float, restore: ColdRestore, report: CompactReport
) -> None:
    """Make the partly dead cold packs worth a rewrite readable, and plan their rewrite (module doc, step 8):
    readable ones become "rewrite", the others "restoring" (left as they are)."""
    candidates = [p for p in plans if p.action == "cold" and (p.size - p.live) * 100.0 >= threshold * p.size]
    if not candidates:
        return
    if repo.cold_data_packs:  # GLACIER_IR needs no restore: its packs are read like hot ones
        restorer = PackRestorer(repo, tier=restore.tier, days=restore.days, record=RESTORES_RECORD)
        pending = restorer.prepare({p.name for p in candidates})
        if pending.waiting and restore.wait:
            restorer.wait(pending, poll=restore.poll, progress=restore.progress)
        waiting = set(pending.waiting)
    else:
        waiting = set()
    for p in candidates:
        if p.name in waiting:
            p.action = "restoring"
        else:
            p.action = "rewrite"
            report.packs_restored += 1
