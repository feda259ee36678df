"""Scale-out commands: ``plan-source`` (split a bucket into key ranges) and ``merge`` (join the part archives),
and the options ``create`` takes to back up one part (``--source-range``, ``--part``, ``--deadline``).

The engine is ``archive/partition.py``, ``archive/inventory.py`` and ``maintenance/merge.py``; the flow and its
limits are in docs/serverless.md ("Scale-out").
"""

from __future__ import annotations

import argparse
import fnmatch
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import EXIT_OK, UsageError
from .location import split_location
from .output import print_json

if TYPE_CHECKING:
    from .run import Run

EXIT_INCOMPLETE = 75  # EX_TEMPFAIL: a part stopped at its --deadline; the same command finishes it
PART_SUFFIX = re.compile(r"\.part(\d+)$")

PLAN_DESCRIPTION = (
    "Split the objects of s3://bucket[/prefix] into at most N key ranges of roughly equal bytes, from a listing "
    "of the bucket or from an S3 Inventory report (--inventory), without reading any object.  The plan is a JSON "
    'array of {"part", "parts", "source", "start", "end", "objects", "bytes"}: start inclusive, end exclusive '
    "(null: to the last key), in the order a backup walks the keys.  It is what a Step Functions Distributed Map "
    "reads (ItemReader, InputType JSON); each element becomes one 'packvault create REPO::NAME.partK SOURCE "
    "--source-range START END', and 'packvault merge' joins the parts."
)

MERGE_DESCRIPTION = (
    "Join the part archives of a scale-out backup (create --source-range) into one archive NAME whose items are "
    "the parts' items in key order, referencing the same chunks (no file data is read or copied), then "
    "soft-delete the parts' entries.  The merged archive is committed before any part goes: a merge that stops "
    "in between is finished by running it again.  Refuses, changing nothing, when a part is missing or "
    "incomplete, or the parts' ranges overlap or leave a gap.  PART may be a pattern such as 'NAME.part*' "
    "(quoted), matched against the archive list."
)


def add_parsers(command: Callable[..., argparse.ArgumentParser], add_common: Callable[..., None]) -> None:
    """The ``plan-source`` and ``merge`` subcommands, added by the parser's helpers."""
    p = command("plan-source", "split a bucket into key ranges for a scale-out backup", PLAN_DESCRIPTION)
    p.add_argument("source", metavar="s3://BUCKET[/PREFIX]", help="the source the parts will back up")
    p.add_argument("--parts", type=int, required=True, metavar="N", help="the number of parts (at most)")
    p.add_argument(
        "--inventory",
        metavar="s3://BUCKET/KEY/manifest.json",
        help="plan from this S3 Inventory report (CSV or Parquet) instead of listing the bucket",
    )
    p.add_argument(
        "--output", metavar="FILE|s3://BUCKET/KEY", help="write the plan there instead of to standard output"
    )
    p.add_argument("--stats", action="store_true", help="print what the plan cost (requests) on standard error")
    p.set_defaults(func="cmd_plan_source")

    p = command("merge", "join the part archives of a scale-out backup into one archive", MERGE_DESCRIPTION)
    p.add_argument("location", metavar="REPO::NAME", help="the repository and the merged archive's name")
    p.add_argument(
        "parts", nargs="+", metavar="PART", help="the part archives: REPO::NAME.partK, NAME.partK or a pattern"
    )
    add_common(p)
    p.set_defaults(func="cmd_merge")


def add_create_options(p: argparse.ArgumentParser) -> None:
    """``create``'s options for one part of a scale-out backup."""
    g = p.add_argument_group("scale-out (see plan-source and merge)")
    g.add_argument(
        "--source-range",
        nargs=2,
        metavar=("START", "END"),
        help="back up only the keys from START (inclusive) to END (exclusive; '' for to the last key) of the one "
        "s3:// source, in the order of the plan; the range is recorded for merge",
    )
    g.add_argument(
        "--part",
        metavar="K/N",
        help="with --source-range: this is part K of a plan of N parts (recorded, so merge can tell a missing "
        "part; default: K from the archive name's .partK suffix, N not recorded)",
    )
    g.add_argument(
        "--deadline",
        type=float,
        metavar="SECONDS",
        help="stop after SECONDS, storing and indexing what was read: exit 75 (incomplete); the same command "
        "run again finishes the archive",
    )


def part_options(args, archive: str, paths: list[str]) -> tuple[object | None, dict]:
    """(key range or None, archive metadata to record) from ``create``'s scale-out options."""
    if args.source_range is None:
        if args.part:
            raise UsageError("--part needs --source-range")
        return None, {}
    # only now: the S3 source's modules cost a backup of a local tree ~80 ms of start-up
    from ..archive.partition import META_PART, PartRecord
    from ..archive.s3source import KeyRange

    start, end = args.source_range
    key_range = KeyRange(start, end or None)
    part, parts = None, None
    if args.part:
        match = re.fullmatch(r"(\d+)/(\d+)", args.part)
        if not match or int(match[1]) >= int(match[2]):
            raise UsageError(f"--part {args.part!r} is not K/N with 0 <= K < N")
        part, parts = int(match[1]), int(match[2])
    elif (suffix := PART_SUFFIX.search(archive)) is not None:
        part = int(suffix[1])
    source = paths[0] if len(paths) == 1 else ""
    record = PartRecord(source, key_range.start, key_range.end, part, parts)
    return key_range, {META_PART: record.encode()}


def part_cache_name(name: str, meta_extra: dict) -> str:
    """Parts running side by side on one machine keep a files cache each (the cache is saved whole: one
    shared cache would keep only the last part's entries), so a rerun of part K finds its own."""
    if not meta_extra:
        return name  # not a part (and no import of the S3 source's modules for a local backup)
    from ..archive.partition import META_PART

    part = meta_extra.get(META_PART, {}).get("part")
    return f"{name}-part{part}" if part is not None else name


def deadline_of(args) -> Callable[[], bool] | None:
    if args.deadline is None:
        return None
    if args.deadline <= 0:
        raise UsageError("--deadline must be a positive number of seconds")
    end = time.monotonic() + args.deadline
    return lambda: time.monotonic() >= end


def incomplete(archive: str) -> int:
    print(
        f"packvault: archive {archive} incomplete, rerun: stopped at its --deadline; what was stored is indexed "
        "and the same command finishes it",
        file=sys.stderr,
    )
    return EXIT_INCOMPLETE


def cmd_plan_source(args, run: Run) -> int:
    from ..archive.partition import plan_json, plan_source, write_plan

    if not args.source.startswith("s3://"):
        raise UsageError(f"{args.source} is no s3:// source", hint="plan-source splits a bucket: s3://bucket/prefix")
    report = plan_source(args.source, args.parts, inventory_url=args.inventory, settings=run.settings.storage)
    if args.output and args.output.startswith("s3://"):
        write_plan(report.plan, args.output, run.settings.storage)
    elif args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(plan_json(report.plan))
        except OSError as exc:
            raise UsageError(f"cannot write the plan to {args.output}: {exc.strerror}") from None
    else:
        sys.stdout.write(plan_json(report.plan))
    if args.stats:
        cost = report.as_dict()
        print(
            f"planned {cost['parts']} part(s) of {cost['objects']} objects, {cost['bytes']} bytes; requests: "
            + ", ".join(f"{k} {v}" for k, v in sorted(cost["requests"].items()) if v),
            file=sys.stderr,
        )
    return EXIT_OK


def _expand_parts(patterns: list[str], location: str, names: list[str]) -> list[str]:
    """Part names from the arguments: REPO::NAME or NAME, a pattern matched against ``names``."""
    out: list[str] = []
    for pattern in patterns:
        if "::" in pattern:
            repo, _, pattern = pattern.partition("::")
            if repo and repo != location:
                raise UsageError(f"part {pattern!r} is in another repository ({repo}) than the merge ({location})")
        if any(c in pattern for c in "*?["):
            out += [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        else:
            out.append(pattern)
    return list(dict.fromkeys(out))


def cmd_merge(args, run: Run) -> int:
    from ..maintenance.merge import merge_parts
    from .opening import open_repository

    location, name = split_location(args.location, need_archive=True)
    with open_repository(args, run, location) as repo:
        names = [entry.name for entry in repo.archive_entries()]
        parts = _expand_parts(args.parts, location, names)
        if not parts and name in names:
            parts = []  # a rerun after every part was retired: merge_parts says so
        elif not parts:
            raise UsageError(f"no archive matches {' '.join(args.parts)}; nothing was merged")

        def retired(what: str, part: str) -> None:
            if not args.json:
                print(f"retired part {part}", flush=True)

        report = merge_parts(repo, name, parts, on_event=retired)
    if args.json:
        print_json(report.as_dict())
    elif report.status == "already-merged":
        print(f"archive {name} was merged already ({report.nitems} items); its parts are retired")
    else:
        print(
            f"merged {len(report.parts)} parts into {name}: {report.nitems} items, "
            f"{report.item_chunks_written} item-stream chunks written, no file data copied"
        )
    return EXIT_OK
