"""Rendering of the commands that create, list, read and delete archives (text and JSON)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..output import escape_name, fmt_duration, fmt_size, name_fields, print_json, print_json_line, print_table

if TYPE_CHECKING:  # the report types only: rendering must not load the engines a command does not use
    from ...archive.archive import ArchiveMeta
    from ...archive.diff import Change
    from ...repository.config import RepoConfig
    from ...repository.repository import ArchiveEntry



def warning(path: str, message: str) -> None:
    print(f"warning: {path}: {message}", file=sys.stderr)


def requests_line(stats: dict) -> None:
    if not stats:
        return
    parts = [f"{k} {stats[k]}" for k in ("PUT", "GET", "HEAD", "LIST", "DELETE", "COPY") if stats.get(k)]
    print(
        f"Requests:          {', '.join(parts) or 'none'}; "
        f"up {fmt_size(stats.get('bytes_up', 0))}, down {fmt_size(stats.get('bytes_down', 0))}"
    )


# --- init / create ------------------------------------------------------------------------------------------


def init(location: str, config: RepoConfig, requests: dict, *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "repository": {
                    "location": location,
                    "id": config.repository_id.hex(),
                    "encryption": config.encryption,
                    "object_lock": config.object_lock,
                    "retention_seconds": config.retention_seconds,
                    "data_storage_class": config.data_storage_class,
                    "hot_storage_class": config.hot_storage_class,
                },
                "requests": requests,
            }
        )
        return
    print(f"Initialized repository {location} (id {config.repository_id.hex()[:16]}, {config.encryption})")
    if config.data_storage_class:
        print(f"Storage classes: data packs {config.data_storage_class}, the rest {config.hot_storage_class}.")
    if config.object_lock:
        days = config.retention_seconds / 86400
        print(f"Object Lock: {config.object_lock.lower()}, every object retained {days:g} days from its write.")
    if config.encryption == "keyfile":
        print("The key is stored locally only: back it up with 'packvault key export'.")


def create(
    entry: ArchiveEntry,
    stats: dict,
    warnings: list[str],
    notes: list[str],
    requests: dict,
    *,
    as_json: bool,
    show_requests: bool,
) -> None:
    if as_json:
        print_json(
            {
                "archive": {"name": entry.name, "id": entry.hex, "time": entry.time, "end": entry.end},
                "stats": stats,
                "requests": requests,
                "warnings": warnings,
                "notes": notes,
            }
        )
        return
    print(f"Archive:           {entry.name} ({entry.hex[:16]})")
    print(
        f"Files:             {stats['nfiles']} ({stats['files_read']} read, "
        f"{stats['files_unchanged']} unchanged), {stats['ndirs']} directories"
    )
    print(f"Original size:     {fmt_size(stats['original_size'])}")
    print(f"Deduplicated size: {fmt_size(stats['deduplicated_size'])} (new data)")
    print(f"Stored size:       {fmt_size(stats['compressed_size'])} (compressed, encrypted)")
    rate = fmt_size(stats["throughput"])
    print(f"Duration:          {fmt_duration(stats['duration'])} ({rate}/s)")
    if show_requests:
        requests_line(requests)
    if warnings:
        print(f"{len(warnings)} warning(s); see above.", file=sys.stderr)


def interrupted(signame: str, stored: int | None) -> None:
    if stored:
        done = f"the {stored} pack(s) stored so far are indexed; run the same command again to resume"
    elif stored == 0:
        done = "nothing was stored yet"
    else:
        done = "no archive was written"
    print(f"packvault: interrupted by {signame}: {done}", file=sys.stderr)


def no_lock_notice(location: str, reason: str | None) -> None:
    print(
        f"packvault: notice: cannot write a lock to {location} ({reason}); reading without "
        "one, so a compact running at the same time could remove data this command reads",
        file=sys.stderr,
    )


# --- list / info ----------------------------------------------------------------------------------------------


def archives(entries: list[ArchiveEntry], requests: dict, *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "archives": [
                    {
                        "name": e.name,
                        "id": e.hex,
                        "time": e.time,
                        "end": e.end,
                        "host": e.host,
                        "user": e.user,
                        "comment": e.comment,
                        "paths": list(e.paths) if e.paths is not None else None,
                        "stats": e.stats,
                        "tags": list(e.tags),
                    }
                    for e in entries
                ],
                "requests": requests,
            }
        )
        return
    rows = [(escape_name(e.name), e.time[:19].replace("T", " "), escape_name(e.host), e.hex[:16]) for e in entries]
    if any(e.tags for e in entries):  # the column only where tags are in use
        tagged = [(*row, ",".join(map(escape_name, e.tags))) for row, e in zip(rows, entries, strict=True)]
        print_table(tagged, ("Archive", "Time (UTC)", "Host", "ID", "Tags"))
    elif rows:
        print_table(rows, ("Archive", "Time (UTC)", "Host", "ID"))


def item_json(item: dict) -> dict:
    from ...archive import items as it

    out = {
        **name_fields("path", item[it.PATH]),
        "type": item[it.TYPE],
        "mode": oct(item[it.MODE]),
        "user": item.get(it.USER),
        "group": item.get(it.GROUP),
        "uid": item.get(it.UID),
        "gid": item.get(it.GID),
        "mtime_ns": item.get(it.MTIME),
        "size": item.get(it.SIZE, 0),
    }
    if it.SYMLINK_TARGET in item:
        out.update(name_fields("target", item[it.SYMLINK_TARGET]))
    if it.HARDLINK_TARGET in item:
        out.update(name_fields("hardlink_to", item[it.HARDLINK_TARGET]))
    damaged = it.damaged_chunks(item)
    if damaged is not None:
        out["damaged_chunks"] = damaged  # check --repair replaced them by zeros
        out["damage_note"] = item[it.ERROR]
    return out


def item_lines(items: Iterable[dict]) -> None:
    for item in items:
        print_json_line(item_json(item))


def item_document(archive: dict, items: Iterator[dict], requests_after: Callable[[], dict]) -> None:
    """One JSON document, written as the items stream by: an archive can hold millions of items, and the
    memory of ``list --json`` must not grow with them."""
    out = sys.stdout
    out.write('{"archive": ' + json.dumps(archive) + ', "items": [')
    separator = "\n  "
    for item in items:
        out.write(separator + json.dumps(item_json(item)))
        separator = ",\n  "
    out.write('\n], "requests": ' + json.dumps(requests_after()) + "}\n")


def item_table(items: Iterable[dict]) -> None:
    from ...archive import items as it

    for item in items:
        size = item.get(it.SIZE, 0)
        line = f"{item[it.TYPE]} {oct(item[it.MODE])[-4:]} {size:>12} {escape_name(item[it.PATH])}"
        if it.SYMLINK_TARGET in item:
            line += f" -> {escape_name(item[it.SYMLINK_TARGET])}"
        damaged = it.damaged_chunks(item)
        if damaged is not None:
            line += f"  [damaged: {damaged} chunk(s) replaced by zeros; see check]"
        print(line)


def archive_info(entry: ArchiveEntry, meta: ArchiveMeta, requests: dict, *, as_json: bool) -> None:
    info = {
        "name": entry.name,  # the metadata keeps the name given at backup; a rename changes only the entry
        "id": entry.hex,
        "time": meta.time,
        "end": meta.end,
        "host": meta.host,
        "user": meta.user,
        "comment": meta.comment,
        "paths": meta.paths,
        "command_line": meta.cmdline,
        "items": meta.nitems,
        "stats": meta.stats,
        "tags": list(entry.tags),
    }
    if as_json:
        print_json({"archive": info, "requests": requests})
        return
    for key in ("name", "id", "time", "end", "host", "user", "comment", "items"):
        print(f"{key.capitalize() + ':':<14} {escape_name(str(info[key]))}")
    print(f"{'Paths:':<14} {' '.join(escape_name(path) for path in meta.paths)}")
    if entry.tags:
        print(f"{'Tags:':<14} {', '.join(escape_name(tag) for tag in entry.tags)}")
    st = meta.stats
    print(f"{'Original:':<14} {fmt_size(st.get('original_size', 0))}")
    print(f"{'New data:':<14} {fmt_size(st.get('deduplicated_size', 0))}")


def repository_info(location: str, cfg: RepoConfig, info: dict, requests: dict, *, as_json: bool) -> None:
    if as_json:
        print_json({"repository": info, "requests": requests})
        return
    print(f"Repository:   {location}")
    print(f"ID:           {info['id']}")
    print(f"Encryption:   {cfg.encryption} ({cfg.cipher})")
    print(f"Compression:  {cfg.compression}; pack size {fmt_size(cfg.pack_size)}")
    print(f"Archives:     {info['archives']}")
    print(f"Data packs:   {info['data_packs']} ({fmt_size(info['data_bytes'])})")
    print(f"Meta packs:   {info['meta_packs']} ({fmt_size(info['meta_bytes'])})")
    print(f"Chunks:       {info['chunks_indexed']}")
    classes = ", ".join(f"{name} {fmt_size(size)}" for name, size in sorted(info["storage_classes"].items()))
    print(f"Storage:      {classes or 'empty'}")
    recorded = info["recorded_classes"]
    if recorded["data"]:
        print(f"Classes:      data packs {recorded['data']}, the rest {recorded['hot']} (recorded at init)")


# --- extract / diff -----------------------------------------------------------------------------------------


def extract(stats, requests: dict, *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        print_json({"stats": stats.as_dict(), "errors": stats.errors, "warnings": stats.warnings, "requests": requests})
    else:
        verb = "Verified" if dry_run else "Restored"
        extra = "".join(
            f", {n} {what}" for n, what in ((stats.nskipped, "kept as they were"), (stats.ndeleted, "deleted")) if n
        )
        print(
            f"{verb} {stats.nfiles} files, {stats.ndirs} directories, {fmt_size(stats.bytes_written)}{extra} "
            f"in {fmt_duration(stats.duration)}"
        )
    if stats.warnings:
        failed = f", {len(stats.errors)} entries not restored" if stats.errors else ""
        print(f"packvault: {len(stats.warnings)} warning(s){failed} (see above)", file=sys.stderr)


def restores_waiting(plan) -> None:
    """One line per look at the restores of cold data packs (extract --wait)."""
    if plan.waiting:
        print(
            f"waiting for the restores of {len(plan.waiting)} of {plan.packs} data packs "
            f"({fmt_size(plan.waiting_bytes)})",
            file=sys.stderr,
        )
    else:
        print(f"all {plan.packs} data packs are readable", file=sys.stderr)


def diff(changes: list[Change], *, as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "changes": [
                    {
                        "change": c.kind,
                        **name_fields("path", c.path.encode("utf-8", "surrogateescape")),
                        "what": list(c.what),
                    }
                    for c in changes
                ]
            }
        )
        return
    for c in changes:
        suffix = f" ({', '.join(c.what)})" if c.what else ""
        print(f"{c.kind:<9} {escape_name(c.path)}{suffix}")


# --- delete / undelete / break-lock -------------------------------------------------------------------------


def deleted(name: str) -> None:
    print(f"Deleted archive {escape_name(name)} (undelete possible until the next compact)")


def undeleted(name: str) -> None:
    print(f"Restored archive {escape_name(name)}")


def renamed(old: str, new: str) -> None:
    print(f"Renamed archive {escape_name(old)} to {escape_name(new)}")


def tagged(name: str, tags: list[str], *, changed: bool) -> None:
    shown = ", ".join(map(escape_name, tags)) if tags else "(none)"
    print(f"Tags of archive {escape_name(name)}: {shown}" + ("" if changed else " (unchanged)"))


def locks_broken(count: int, *, force: bool, as_json: bool) -> None:
    if force:
        print("warning: removed all locks; operations still running will stop with 'lock lost'", file=sys.stderr)
    if as_json:
        print_json({"removed": count})
    else:
        print(f"Removed {count} lock(s)")


def found(entry: ArchiveEntry, item: dict, *, as_json: bool) -> None:
    """One match of ``find``."""
    from ...archive import items as it

    if as_json:
        print_json_line({"archive": entry.name, "archive_time": entry.time, **item_json(item)})
        return
    mtime = datetime.fromtimestamp(item.get(it.MTIME, 0) / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
    size = item.get(it.SIZE, 0)
    print(f"{escape_name(entry.name)}  {item[it.TYPE]} {size:>12} {mtime}  {escape_name(item[it.PATH])}")
