"""Rendering of the maintenance commands: prune decisions, the compact report, the check report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..output import escape_name, fmt_duration, fmt_size, print_json, print_table

if TYPE_CHECKING:  # the report types only: rendering must not load the engines a command does not use
    from ...maintenance.check import CheckOptions, CheckReport, Problem
    from ...maintenance.compact import CompactReport
    from ...maintenance.retention import Decision



# --- prune / compact / check ----------------------------------------------------------------------------------


def _prune_dict(decisions: list[Decision], group_by: tuple[str, ...], dry_run: bool) -> dict:
    return {
        "dry_run": dry_run,
        "group_by": list(group_by),
        "decisions": [
            {
                "name": d.archive.name,
                "id": d.archive.id,
                "time": d.archive.time.isoformat(),
                "host": d.archive.host,
                "paths": list(d.archive.paths),
                "keep": d.keep,
                "reasons": list(d.reasons),
                "group": list(d.group),
            }
            for d in decisions
        ],
    }


def prune(
    decisions: list[Decision],
    group_by: tuple[str, ...],
    requests: dict,
    *,
    dry_run: bool,
    as_json: bool,
    as_list: bool,
    compacting: bool = False,
) -> None:
    if as_json:
        print_json({**_prune_dict(decisions, group_by, dry_run), "requests": requests})
        return
    if as_list and decisions:
        rows = [
            (
                "keep" if d.keep else ("would prune" if dry_run else "pruned"),
                escape_name(d.archive.name),
                d.archive.time.isoformat(timespec="seconds"),
                escape_name(" ".join(d.group)) if d.group else "(all)",
                ", ".join(d.reasons),
            )
            for d in decisions
        ]
        print_table(rows, ("Decision", "Archive", "Time", f"Group ({', '.join(group_by) or 'none'})", "Kept by"))
    verb = "Would prune" if dry_run else "Pruned"
    pruned = sum(1 for d in decisions if not d.keep)
    groups = len({d.group for d in decisions})
    tail = "" if compacting else "; run 'packvault compact' to reclaim space"
    print(
        f"{verb} {pruned} of {len(decisions)} archives in {groups} group(s) by "
        f"{', '.join(group_by) or 'nothing'}{tail}"
    )


def prune_compact(
    decisions: list[Decision],
    group_by: tuple[str, ...],
    report: CompactReport,
    requests: dict,
    *,
    min_age_text: str,
    min_age_seconds: float,
    as_json: bool,
    as_list: bool,
) -> None:
    """``prune --compact``: prune's decisions and compact's report, one JSON object (prune's keys, and
    ``compact`` as ``compact --json`` has it) or both texts."""
    if as_json:
        compact_dict = {**report.as_dict(), "min_age_seconds": min_age_seconds}
        print_json({**_prune_dict(decisions, group_by, report.dry_run), "compact": compact_dict, "requests": requests})
        return
    prune(decisions, group_by, requests, dry_run=report.dry_run, as_json=False, as_list=as_list, compacting=True)
    compact(report, requests, min_age_text=min_age_text, min_age_seconds=min_age_seconds, as_json=False)


def compact(
    report: CompactReport, requests: dict, *, min_age_text: str, min_age_seconds: float, as_json: bool
) -> None:
    if as_json:
        print_json({"compact": {**report.as_dict(), "min_age_seconds": min_age_seconds}, "requests": requests})
        return
    prefix = "Would free" if report.dry_run else "Freed"
    print(
        f"Packs: {report.packs_total} examined, {report.packs_dropped} dropped, {report.packs_rewritten} rewritten, "
        f"{report.packs_merged} merged, {report.packs_created} created, {report.packs_too_young} too young to touch"
    )
    print(f"{prefix} {fmt_size(report.bytes_freed)}; copied {fmt_size(report.bytes_copied)} forward")
    print(
        f"Repository: {fmt_size(report.bytes_before)} -> {fmt_size(report.bytes_after)} "
        f"(live data {fmt_size(report.live_bytes)}); {fmt_duration(report.duration)}"
    )
    if report.packs_too_young:
        print(
            f"{report.packs_too_young} pack(s) younger than --min-age {min_age_text} were left alone: a backup "
            f"running now may still need them. Run compact again later, or pass a shorter --min-age (e.g. "
            f"--min-age 0) when no other client is writing to this repository."
        )
    if report.packs_cold_kept:
        print(
            f"{report.packs_cold_kept} partly dead data pack(s) in a cold storage class were kept as they are: "
            "copying their live data forward would retrieve them; they go when all of their data is dead "
            "(or give --restore-tier to restore and copy them)."
        )
    if report.packs_restored:
        print(f"{report.packs_restored} cold data pack(s) were restored and their live data copied forward.")


def problem_line(problem: Problem) -> str:
    where = []
    if problem.pack:
        where.append(f"pack {problem.pack}" + (f" @{problem.offset}" if problem.offset is not None else ""))
    if problem.object:
        where.append(f"object {problem.object}")
    if problem.archive:
        where.append(f"archive {problem.archive!r}")
    if problem.path:
        where.append(f"file {problem.path!r}")
    prefix = f"[{problem.level}] " + (", ".join(where) + ": " if where else "")
    return prefix + problem.message


def problem_dict(problem: Problem) -> dict:
    return {k: v for k, v in problem.__dict__.items() if v is not None}


def check_report(report: CheckReport, opts: CheckOptions, *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "ok": not report.problems,
                "complete": report.complete,
                "problems": [problem_dict(p) for p in report.problems],
                "repairs": report.repairs,
                "notes": report.notes,
                "stats": report.stats,
                "requests": report.stats.get("requests", {}),
            }
        )
        return
    for problem in report.problems:
        print(problem_line(problem))
    for note in report.notes:
        print(f"note: {note}")
    verb = "would" if opts.dry_run else "did"
    for action in report.repairs:
        print(f"repair ({verb}): {action}")
    s = report.stats
    print(
        f"Checked {s.get('packs_read', 0)} of {s.get('packs_data', 0) + s.get('packs_meta', 0)} packs "
        f"({s.get('objects', 0)} objects, {s.get('objects_verified', 0)} decrypted), "
        f"{s.get('index_fragments', 0)} index fragments, {s.get('archives', 0)} archives, "
        f"{s.get('files', 0)} files in {fmt_duration(s.get('duration', 0.0))}"
    )
    if report.problems:
        repairs = f"; {len(report.repairs)} repair action(s)" if opts.repair else ""
        print(f"{len(report.problems)} problem(s) found{repairs}")
    else:
        print("No problems found")
