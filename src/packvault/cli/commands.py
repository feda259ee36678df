"""One function per command: parse-level glue between argparse and the layers below (no business logic).

``main.py`` dispatches by name to the ``cmd_*`` functions of this module; the commands that write
(``backup.py``), maintain (``maintain.py``) and manage the key (``keys.py``) live beside it.
"""

from __future__ import annotations

import contextlib
import os

from ..errors import EXIT_OK, EXIT_WARNING, UsageError
from ..repository.repository import Repository
from ..units import parse_duration, parse_size
from . import render
from .backup import cmd_create
from .cold import extract_with_restores
from .copy import cmd_copy, source_run
from .housekeeping import cmd_rename, cmd_tag, with_tags
from .keys import (
    cmd_key_add,
    cmd_key_change_passphrase,
    cmd_key_export,
    cmd_key_import,
    cmd_key_list,
    cmd_key_remove,
)
from .location import split_location
from .maintain import cmd_break_lock, cmd_check, cmd_compact, cmd_prune
from .mount import cmd_mount
from .opening import archive_reader, new_passphrase, open_repository, requests_of, s3_options
from .output import print_json
from .progress import LiveProgress
from .retention import cmd_retention_extend
from .run import Run
from .scaleout import cmd_merge, cmd_plan_source
from .streaming import cmd_completion, cmd_dump, cmd_export_tar, cmd_find, item_excludes

__all__ = [
    "cmd_completion",
    "cmd_copy",
    "cmd_dump",
    "cmd_export_tar",
    "cmd_find",
    "cmd_mount",
    "cmd_break_lock",
    "cmd_check",
    "cmd_compact",
    "cmd_create",
    "cmd_delete",
    "cmd_diff",
    "cmd_extract",
    "cmd_info",
    "cmd_init",
    "cmd_key_add",
    "cmd_key_change_passphrase",
    "cmd_key_export",
    "cmd_key_import",
    "cmd_key_list",
    "cmd_key_remove",
    "cmd_list",
    "cmd_merge",
    "cmd_plan_source",
    "cmd_prune",
    "cmd_rename",
    "cmd_tag",
    "cmd_retention_extend",
    "cmd_undelete",
]


# --- init ------------------------------------------------------------------------------------------------


def _check_local_target(location: str) -> None:
    """A local repository is a directory: refuse a path that is a file, or lies under one, in one line."""
    from ..errors import RepositoryAlreadyExists
    from ..storage.url import local_path

    path = local_path(location)
    if path is None:
        return
    if os.path.lexists(path) and not os.path.isdir(path):
        raise RepositoryAlreadyExists(
            f"cannot create a repository at {location}: it exists and is not a directory",
            hint="choose a new or empty directory",
        )
    parent = os.path.dirname(path)
    while parent and not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        raise UsageError(
            f"cannot create a repository at {location}: {parent} is a file, not a directory",
            hint="choose a path under a directory",
        )


def _object_lock_options(args) -> tuple[str | None, int]:
    """``--object-lock`` and ``--retention``: both or neither."""
    if args.object_lock is None and args.retention is None:
        return None, 0
    if args.object_lock is None:
        raise UsageError("--retention needs --object-lock", hint="add --object-lock governance or compliance")
    if args.retention is None:
        raise UsageError("--object-lock needs --retention", hint="add e.g. --retention 30d")
    return args.object_lock.upper(), int(parse_duration(args.retention, what="--retention").total_seconds())


def cmd_init(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    _check_local_target(location)
    pack_size = parse_size(args.pack_size, what="--pack-size")
    object_lock, retention_seconds = _object_lock_options(args)
    with contextlib.ExitStack() as stack:
        share_ids_from = None
        if args.copy_crypt_from:
            # opened first: a source that does not open leaves no half-made destination behind
            source_location, _ = split_location(args.copy_crypt_from)
            share_ids_from = stack.enter_context(open_repository(args, source_run(run), source_location, lock=None))
        passphrase = new_passphrase(args, run)
        repo = Repository(location, settings=run.settings, s3_options=s3_options(args))
        try:
            config = repo.create(
                passphrase,
                encryption=args.encryption,
                pack_size=pack_size,
                compression=args.compression,
                cipher=args.cipher,
                share_ids_from=share_ids_from,
                object_lock=object_lock,
                retention_seconds=retention_seconds,
            )
            requests = requests_of(repo)
        finally:
            repo.close()
    render.init(location, config, requests, as_json=args.json)
    return EXIT_OK


# --- list / info -------------------------------------------------------------------------------------------


def cmd_list(args, run: Run) -> int:
    from ..archive.archive import iter_archive_items, load_archive, path_filter

    location, archive = split_location(args.location)
    with open_repository(args, run, location) as repo:
        if archive is None:
            entries = with_tags(repo.archive_entries(deleted=args.deleted), args.tag)
            render.archives(entries, requests_of(repo) if args.json else {}, as_json=args.json)
            return EXIT_OK
        with archive_reader(repo, archive) as (entry, reader):
            meta = load_archive(reader, entry)
            selected = path_filter(args.paths)
            excluded = item_excludes(args)
            items = (i for i in iter_archive_items(reader, meta) if selected(i) and not excluded(i))
            if args.json_lines:
                render.item_lines(items)
            elif args.json:
                render.item_document({"name": entry.name, "id": entry.hex}, items, lambda: requests_of(repo))
            else:
                render.item_table(items)
    return EXIT_OK


def cmd_info(args, run: Run) -> int:
    from ..archive.archive import load_archive

    location, archive = split_location(args.location)
    with open_repository(args, run, location) as repo:
        cfg = repo.config
        if archive is not None:
            with archive_reader(repo, archive) as (entry, reader):
                meta = load_archive(reader, entry)
            render.archive_info(entry, meta, requests_of(repo) if args.json else {}, as_json=args.json)
            return EXIT_OK
        data = [info.size for info in repo.list_packs(0)]
        meta_packs = [info.size for info in repo.list_packs(1)]
        entries = repo.archive_entries()
        info = {
            "location": location,
            "id": cfg.repository_id.hex(),
            "encryption": cfg.encryption,
            "cipher": cfg.cipher,
            "pack_size": cfg.pack_size,
            "compression": cfg.compression,
            "created": cfg.created,
            "archives": len(entries),
            "data_packs": len(data),
            "data_bytes": sum(data),
            "meta_packs": len(meta_packs),
            "meta_bytes": sum(meta_packs),
            "chunks_indexed": len(repo.index),
            "storage_classes": repo.bytes_by_storage_class(),
            "recorded_classes": {"data": cfg.data_storage_class, "hot": cfg.hot_storage_class},
        }
        render.repository_info(location, cfg, info, requests_of(repo) if args.json else {}, as_json=args.json)
    return EXIT_OK


# --- extract / diff ----------------------------------------------------------------------------------------


def cmd_extract(args, run: Run) -> int:
    from ..allocator import tune_for_chunk_reads
    from ..archive.archive import iter_archive_items, load_archive
    from ..archive.extract import Extractor, PathSelector
    from ..archive.restorers import prepare_restore_processes
    from ..processes import usable_processes

    location, archive = split_location(args.location, need_archive=True)
    to_bucket = args.target.startswith("s3://")
    if to_bucket and args.delete:
        raise UsageError("--delete applies to a directory target only", hint="a bucket target is create-only per key")
    if args.strip_components < 0:
        raise UsageError("--strip-components must not be negative")
    tune_for_chunk_reads()
    if not (to_bucket or args.dry_run or args.paths):  # a whole archive: most likely many files
        prepare_restore_processes(usable_processes(run.settings.read_processes))
    live = LiveProgress(args.progress)
    with (
        open_repository(args, run, location) as repo,
        archive_reader(repo, archive) as (entry, reader),
        live,
    ):
        meta = load_archive(reader, entry)
        selected = PathSelector(args.paths)

        def report(stats, path: str) -> None:
            live.update(completed=stats.bytes_arrived, counts=f"{stats.nfiles} files", path=path)

        if to_bucket:
            from ..archive.s3restore import S3Restorer

            extractor = S3Restorer(
                reader,
                args.target,
                dry_run=args.dry_run,
                strip_components=args.strip_components,
                overwrite=args.overwrite or "never",
                progress=report if live.enabled else None,
                warn=render.warning,
                settings=run.settings.storage,
            )
        else:
            extractor = Extractor(
                reader,
                args.target,
                dry_run=args.dry_run,
                numeric_ids=args.numeric_ids,
                overwrite=args.overwrite or "always",
                delete=args.delete,
                strip_components=args.strip_components,
                progress=report if live.enabled else None,
                warn=render.warning,
                processes=run.settings.read_processes,
            )
        excluded = item_excludes(args)

        def wanted():
            return (i for i in iter_archive_items(reader, meta) if selected(i) and not excluded(i))

        # the whole archive's size is known (a time left can be shown); a selection's is not
        live.start(
            "verify" if args.dry_run else "extract", total=None if args.paths else meta.stats.get("original_size")
        )
        try:
            stats = extract_with_restores(args, repo, extractor, wanted)
        finally:
            live.stop()
        for path in selected.unmatched():
            stats.warnings.append(f"{path}: matches nothing in the archive")
            render.warning(path, "matches nothing in the archive")
        if meta.lost_item_chunks:
            message = (
                f"archive is damaged: {len(meta.lost_item_chunks)} part(s) of its file list could not be read by "
                "check --repair, the files listed there were not restored"
            )
            stats.warnings.append(f"{archive}: {message}")
            render.warning(archive, message)
        requests = requests_of(repo)
        if to_bucket:
            requests = {"repository": requests, "target": extractor.requests.snapshot()}
    render.extract(stats, requests, as_json=args.json, dry_run=args.dry_run)
    return EXIT_WARNING if stats.warnings else EXIT_OK


def cmd_diff(args, run: Run) -> int:
    from ..archive.archive import iter_archive_items, load_archive
    from ..archive.diff import diff_items
    from ..repository.reader import ChunkReader

    location, first = split_location(args.location, need_archive=True)
    with open_repository(args, run, location) as repo, ChunkReader(repo, meta_packs=repo.meta_pack_cache()) as reader:
        meta_a = load_archive(reader, repo.find_archive(first))
        meta_b = load_archive(reader, repo.find_archive(args.other))
        changes = list(diff_items(iter_archive_items(reader, meta_a), iter_archive_items(reader, meta_b)))
    render.diff(changes, as_json=args.json)
    return EXIT_OK


# --- delete / undelete -----------------------------------------------------------------------------------


def cmd_delete(args, run: Run) -> int:
    from ..errors import ArchiveNotFound

    location, first = split_location(args.location, need_archive=True)
    names = list(dict.fromkeys([first, *args.more]))
    with open_repository(args, run, location) as repo:
        try:
            entries = [repo.find_archive(name) for name in names]  # all found, or nothing is deleted
        except ArchiveNotFound as exc:
            raise ArchiveNotFound(f"{exc}; nothing was deleted", hint=exc.hint) from None
        for name, entry in zip(names, entries, strict=True):
            repo.soft_delete_archive(entry)
            if not args.json:
                render.deleted(name)
        requests = requests_of(repo)
    if args.json:
        print_json({"deleted": names, "requests": requests})
    return EXIT_OK


def cmd_undelete(args, run: Run) -> int:
    from ..errors import ArchiveNotFound

    location, first = split_location(args.location, need_archive=True)
    names = list(dict.fromkeys([first, *args.more]))
    with open_repository(args, run, location) as repo:
        deleted = {e.name: e for e in repo.archive_entries(deleted=True)}
        missing = [name for name in names if name not in deleted]
        if missing:  # all found, or nothing is restored
            raise ArchiveNotFound(
                f"no soft-deleted archive named {', '.join(map(repr, missing))}; nothing was restored",
                hint="see 'packvault list --deleted'",
            )
        for name in names:
            repo.undelete_archive(deleted[name])
            if not args.json:
                render.undeleted(name)
        requests = requests_of(repo)
    if args.json:
        print_json({"undeleted": names, "requests": requests})
    return EXIT_OK
