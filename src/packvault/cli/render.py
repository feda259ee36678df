"""Every text and JSON rendering of an engine report: the engine returns typed reports, this shows them."""

from __future__ import annotations

from ..maintenance.check import CheckOptions, CheckReport, Problem
from .output import fmt_duration, print_json


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
