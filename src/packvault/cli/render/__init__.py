"""Every text and JSON rendering of what a command did: the engine returns typed reports, this shows them.

Names from the repository (archive names, paths, hosts) pass ``escape_name`` before they reach a terminal;
JSON carries names that are not UTF-8 as ``*_bytes`` (``name_fields``).  Nothing here decides anything.
``archives.py`` renders what creates, lists, reads and deletes archives; ``maintenance.py`` prune, compact
and check.
"""

from .archives import (
    archive_info,
    archives,
    create,
    deleted,
    diff,
    extract,
    found,
    init,
    interrupted,
    item_document,
    item_json,
    item_lines,
    item_table,
    locks_broken,
    no_lock_notice,
    renamed,
    repository_info,
    requests_line,
    restores_waiting,
    tagged,
    undeleted,
    warning,
)
from .maintenance import check_report, compact, problem_dict, problem_line, prune, prune_compact

__all__ = [
    "archive_info",
    "archives",
    "found",
    "check_report",
    "compact",
    "create",
    "deleted",
    "diff",
    "extract",
    "init",
    "interrupted",
    "item_document",
    "item_json",
    "item_lines",
    "item_table",
    "locks_broken",
    "no_lock_notice",
    "problem_dict",
    "problem_line",
    "prune",
    "prune_compact",
    "renamed",
    "repository_info",
    "requests_line",
    "tagged",
    "restores_waiting",
    "undeleted",
    "warning",
]
