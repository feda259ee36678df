"""One function per command: parse-level glue between argparse and the layers below (no business logic)."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from ..crypto.kdf import Passphrase
from ..errors import EXIT_OK, EXIT_WARNING, UsageError
from ..repository.repository import Repository
from ..units import parse_size
from . import options, render
from .gc_policy import freeze_long_lived_objects
from .output import escape_name, fmt_size, has_control_characters, print_json
from .progress import LiveProgress
from .run import Run

# --- locations and opening -----------------------------------------------------------------------------


def split_location(text: str | None, *, need_archive: bool = False) -> tuple[str, str | None]:
    """``REPO::ARCHIVE`` -> (repo, archive); the repo part may come from PACKVAULT_REPO."""
    text = text or ""
    repo, archive = text, None
    if "::" in text:
        repo, archive = text.rsplit("::", 1)
        archive = archive or None
    if not repo:
        repo = os.environ.get("PACKVAULT_REPO", "")
    if not repo:
        raise UsageError("no repository given", hint="pass REPO or set PACKVAULT_REPO")
    if need_archive and not archive:
        raise UsageError("no archive name given", hint="use REPO::ARCHIVE")
    if archive is not None and ("/" in archive or archive.startswith(".")):
        raise UsageError(f"invalid archive name {escape_name(archive)!r}", hint="no '/' and no leading '.'")
    if archive is not None and has_control_characters(archive):
        # control characters (or bytes that are not UTF-8) in a name would reach every terminal that lists it
        raise UsageError(
            f"invalid archive name '{escape_name(archive)}': it holds control characters or bytes that are not UTF-8",
            hint="use printable characters only",
        )
    return repo, archive


def s3_options(args) -> dict[str, str]:
    options = {}
    for name in ("endpoint", "region", "profile", "storage_class"):
        value = getattr(args, f"s3_{name}", None)
        if value:
            options[name] = value
    return options


def new_passphrase(args, run: Run, **sources) -> Passphrase:
    """A passphrase to seal a key under (init, change-passphrase): empty only when the user asked for that,
    since an empty passphrase leaves the backups readable by anyone who can read the repository."""
    from ..errors import PassphraseError

    value = run.new_passphrase(**sources)
    if not value.text and not args.allow_empty_passphrase:
        raise PassphraseError(
            "the new passphrase is empty", hint="choose one, or pass --allow-empty-passphrase to really use none"
        )
    return value


@contextlib.contextmanager
def open_repository(
    args, run: Run, location: str, *, lock: str | None = "shared", key: bool = True
) -> Iterator[Repository]:
    """Open ``location`` and take its lock: ``"exclusive"``, ``"shared"`` or None.

    A command that only reads (its parser declares ``--no-lock``) takes no lock with ``--no-lock``, and
    reads without one, after a one-line notice, from a repository where the lock cannot be written (a
    read-only mount, a bucket that denies PUT), as restic does with ``--no-lock``.
    """
    reading = hasattr(args, "no_lock")
    if lock == "shared" and reading and args.no_lock:
        lock = None
    repo = Repository(location, settings=run.settings, s3_options=s3_options(args))
    try:
        repo.open(run.passphrase if key else None, lock=None)
        if key and lock:
            held = repo.acquire_lock(exclusive=(lock == "exclusive"), wait=args.lock_wait, if_writable=reading)
            if not held:
                render.no_lock_notice(location, repo.lock_refused)
        freeze_long_lived_objects()  # the S3 client and the key live as long as the command
        yield repo
    finally:
        repo.close()


def requests_of(repo: Repository) -> dict:
    return repo.request_stats()


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


def cmd_init(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    _check_local_target(location)
    pack_size = parse_size(args.pack_size, what="--pack-size")
    passphrase = new_passphrase(args, run)
    repo = Repository(location, settings=run.settings, s3_options=s3_options(args))
    try:
        config = repo.create(
            passphrase,
            encryption=args.encryption,
            pack_size=pack_size,
            compression=args.compression,
            cipher=args.cipher,
        )
        requests = requests_of(repo)
    finally:
        repo.close()
    render.init(location, config, requests, as_json=args.json)
    return EXIT_OK


# --- create ------------------------------------------------------------------------------------------


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so that ``create`` stops the
    same careful way (a checkpoint of what is stored) instead of being killed where it stands."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    def raise_terminated(signum, frame) -> None:
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _skip_dirs(location: str, run: Run) -> dict[str, str]:
    """Directories a backup must not store: the repository it writes to, and Packvault's own cache."""
    from ..storage.url import local_path

    skip = {str(run.settings.cache_dir): "the Packvault cache"}
    repo_path = local_path(location)
    if repo_path is not None:
        skip[repo_path] = "the repository this backup is written to"
    return skip


@contextlib.contextmanager
def _opened_for_writing(args, run, location: str) -> Iterator[Repository]:
    """``open_repository``, where a repository that cannot be written to (opening and locking write: a
    read-only or full disk, an S3 service refusing the lock) is one line naming it, like any other write
    failure of ``create``."""
    from ..errors import StorageError
    from ..repository.writer import write_failure

    stack = contextlib.ExitStack()
    try:
        repo = stack.enter_context(open_repository(args, run, location))
    except (OSError, StorageError) as exc:
        raise write_failure(exc, f"repository {location}", "opening it and taking its lock") from exc
    with stack:
        yield repo


def cmd_create(args, run: Run) -> int:
    """Exit 0 or 1 only once the archive's entry is written (see ``archive/create.py``); 2 when it was not,
    130/143 after SIGINT/SIGTERM (what was stored is indexed first, so a rerun resumes)."""
    from ..archive.create import ArchiveCreator
    from ..archive.patterns import ExcludeMatcher
    from ..archive.sources import build_source

    location, archive = split_location(args.location, need_archive=True)
    excludes = ExcludeMatcher.from_options(args.exclude, args.exclude_from)
    live = LiveProgress(args.progress)
    creator: ArchiveCreator | None = None

    def report(stats, path: str) -> None:
        live.update(
            completed=stats.bytes_read,
            counts=f"{stats.nfiles} files, {fmt_size(stats.deduplicated_size)} new; read",
            path=path,
        )

    try:
        with _sigterm_interrupts(), _opened_for_writing(args, run, location) as repo, live:
            source, files_cache_name = build_source(
                args.paths,
                excludes,
                args.one_file_system,
                lambda path, msg: creator.warn(path, msg),
                note=lambda path, msg: creator.note(path, msg),
                skip_dirs=_skip_dirs(location, run),
            )
            creator = ArchiveCreator(
                repo,
                archive,
                comment=args.comment,
                use_files_cache=not args.no_files_cache,
                progress=report if live.enabled else None,
                files_cache_name=files_cache_name,
                on_warning=lambda path, msg: live.print(f"warning: {path}: {msg}"),
                on_note=lambda path, msg: live.print(f"note: {path}: {msg}"),
            )
            live.start("create")
            entry = creator.run(source, paths=list(args.paths), cmdline=sys.argv)
            live.stop()
            requests = requests_of(repo)
    except KeyboardInterrupt as exc:
        signame, code = ("SIGTERM", 143) if isinstance(exc, _Terminated) else ("SIGINT", 130)
        render.interrupted(signame, creator.stored_packs if creator is not None else None)
        return code
    render.create(
        entry,
        creator.stats.as_dict(),
        creator.stats.warnings,
        creator.stats.notes,
        requests,
        as_json=args.json,
        show_requests=args.stats,
    )
    return EXIT_WARNING if creator.stats.warnings else EXIT_OK


# --- list / info -------------------------------------------------------------------------------------------


def cmd_list(args, run: Run) -> int:
    from ..archive.archive import iter_archive_items, load_archive, path_filter
    from ..repository.reader import ChunkReader

    location, archive = split_location(args.location)
    with open_repository(args, run, location) as repo:
        if archive is None:
            entries = repo.archive_entries(deleted=args.deleted)
            render.archives(entries, requests_of(repo) if args.json else {}, as_json=args.json)
            return EXIT_OK
        with ChunkReader(repo) as reader:
            entry = repo.find_archive(archive)
            meta = load_archive(reader, entry)
            selected = path_filter(args.paths)
            items = (item for item in iter_archive_items(reader, meta) if selected(item))
            if args.json_lines:
                render.item_lines(items)
            elif args.json:
                render.item_document({"name": entry.name, "id": entry.hex}, items, lambda: requests_of(repo))
            else:
                render.item_table(items)
    return EXIT_OK


def cmd_info(args, run: Run) -> int:
    from ..archive.archive import load_archive
    from ..repository.reader import ChunkReader

    location, archive = split_location(args.location)
    with open_repository(args, run, location) as repo:
        cfg = repo.config
        if archive is not None:
            entry = repo.find_archive(archive)
            with ChunkReader(repo) as reader:
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
        }
        render.repository_info(location, cfg, info, requests_of(repo) if args.json else {}, as_json=args.json)
    return EXIT_OK


# --- extract / diff ----------------------------------------------------------------------------------------


def cmd_extract(args, run: Run) -> int:
    from ..archive.archive import iter_archive_items, load_archive
    from ..archive.extract import Extractor, PathSelector
    from ..repository.reader import ChunkReader
    from .allocator import tune_for_chunk_reads

    location, archive = split_location(args.location, need_archive=True)
    to_bucket = args.target.startswith("s3://")
    if to_bucket and args.delete:
        raise UsageError("--delete applies to a directory target only", hint="a bucket target is create-only per key")
    if args.strip_components < 0:
        raise UsageError("--strip-components must not be negative")
    tune_for_chunk_reads()
    live = LiveProgress(args.progress)
    with open_repository(args, run, location) as repo, ChunkReader(repo) as reader, live:
        meta = load_archive(reader, repo.find_archive(archive))
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
            )
        # the whole archive's size is known (a time left can be shown); a selection's is not
        live.start(
            "verify" if args.dry_run else "extract", total=None if args.paths else meta.stats.get("original_size")
        )
        try:
            stats = extractor.run(item for item in iter_archive_items(reader, meta) if selected(item))
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
    with open_repository(args, run, location) as repo, ChunkReader(repo) as reader:
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


# --- maintenance -------------------------------------------------------------------------------------------


def cmd_prune(args, run: Run) -> int:
    from ..maintenance.prune import prune

    location, _ = split_location(args.repo)
    opts = options.prune_options(args)  # before the repository is opened: a typo in a cron job fails fast
    with open_repository(args, run, location) as repo:
        decisions = prune(repo, opts)
        requests = requests_of(repo)
    render.prune(decisions, opts.group_by, requests, dry_run=opts.dry_run, as_json=args.json, as_list=args.list)
    return EXIT_OK


def cmd_compact(args, run: Run) -> int:
    from ..maintenance.compact import compact

    location, _ = split_location(args.repo)
    opts = options.compact_options(args)  # before the exclusive lock is taken: a typo must not hold up others
    with open_repository(args, run, location, lock="exclusive") as repo:
        report = compact(repo, opts)
        requests = requests_of(repo)
    render.compact(report, requests, min_age_text=args.min_age, min_age_seconds=opts.min_age, as_json=args.json)
    return EXIT_OK


def cmd_check(args, run: Run) -> int:
    from ..maintenance.check import check
    from .output import Progress

    location, _ = split_location(args.repo)
    opts = options.check_options(args)
    repo = Repository(location, settings=run.settings, s3_options=s3_options(args))
    bar = Progress(bool(getattr(args, "progress", False)))
    try:
        repo.open(None, lock=None)
        repo.tolerate_config_damage = True  # check reports it (and repair restores it) instead of refusing
        if not opts.repository_only:
            repo.unlock(run.passphrase())
            repo.acquire_lock(exclusive=opts.repair, wait=getattr(args, "lock_wait", None))
        try:
            report = check(repo, opts, bar.update)
        finally:
            bar.finish()
    finally:
        repo.close()
    render.check_report(report, opts, as_json=bool(getattr(args, "json", False)))
    return EXIT_WARNING if report.problems else EXIT_OK


def cmd_break_lock(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock=None) as repo:
        count = repo.new_lock_manager().break_locks(force=args.force)
    render.locks_broken(count, force=args.force, as_json=args.json)
    return EXIT_OK


# --- key ---------------------------------------------------------------------------------------------------

_ARMOR_BEGIN = "-----BEGIN PACKVAULT KEY-----"
_ARMOR_END = "-----END PACKVAULT KEY-----"


def cmd_key_export(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock=None) as repo:
        blob = repo.key_blobs()[0]
    body = base64.encodebytes(blob).decode("ascii")
    text = f"{_ARMOR_BEGIN}\n{body}{_ARMOR_END}\n"
    if args.file and args.file != "-":
        from ..crypto.keys import write_key_file

        write_key_file(Path(args.file), text.encode("ascii"))
        print(f"Key written to {args.file} (still protected by the passphrase)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_key_import(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    try:
        with open(args.file, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read key file {args.file}: {exc}") from None
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
    try:
        blob = base64.b64decode("".join(lines), validate=True)
    except ValueError:
        raise UsageError(f"{args.file} is not an exported Packvault key") from None
    repo = Repository(location, settings=run.settings, s3_options=s3_options(args))
    try:
        repo.open(None)
        repo.store_key_blob(blob)
    finally:
        repo.close()
    print("Key imported", file=sys.stderr)
    return EXIT_OK


def cmd_key_change_passphrase(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock="exclusive") as repo:
        new = new_passphrase(args, run, prompt="New passphrase: ", env="PACKVAULT_NEW_PASSPHRASE", command_env=None)
        repo.reseal_key(new)
    print("Passphrase changed", file=sys.stderr)
    return EXIT_OK
