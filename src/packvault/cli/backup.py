"""``create``: the one command that writes new data, with its signal handling (SIGINT and SIGTERM stop it the
careful way) and what a backup must leave out."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator

from ..errors import EXIT_OK, EXIT_WARNING, UsageError
from ..repository.repository import Repository
from . import render, scaleout
from .location import split_location
from .opening import open_repository, requests_of
from .output import fmt_size
from .progress import LiveProgress
from .run import Run

# What ``cmd_create`` imports as it starts, by name: ``main.py`` imports them while the key is derived.
CREATE_MODULES = (
    "packvault.archive.create",
    "packvault.archive.patterns",
    "packvault.archive.sources",
    "packvault.archive.walker",
    "packvault.units",
)

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
    from ..repository.write_errors import write_failure

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
    from ..archive.create import ArchiveCreator, DeadlineReached
    from ..archive.patterns import ExcludeMatcher
    from ..archive.sources import build_source, read_path_list
    from ..archive.walker import Selection
    from ..units import parse_size

    location, archive = split_location(args.location, need_archive=True)
    excludes = ExcludeMatcher.from_options(args.exclude, args.exclude_from)
    paths = list(args.paths)
    for listed, nul in [(f, False) for f in args.files_from] + [(f, True) for f in args.files_from0]:
        paths += read_path_list(listed, nul=nul)
    if not paths:
        raise UsageError("nothing to back up: give PATHs, --files-from FILE, or '-' for standard input")
    larger = args.exclude_larger_than
    selection = Selection(
        exclude_caches=args.exclude_caches,
        exclude_if_present=tuple(args.exclude_if_present),
        exclude_larger_than=parse_size(larger, what="--exclude-larger-than") if larger else None,
    )
    key_range, meta_extra = scaleout.part_options(args, archive, paths)
    deadline = scaleout.deadline_of(args)
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
                paths,
                excludes,
                args.one_file_system,
                lambda path, msg: creator.warn(path, msg),
                note=lambda path, msg: creator.note(path, msg),
                skip_dirs=_skip_dirs(location, run),
                stdin=sys.stdin.buffer,
                stdin_name=args.stdin_name,
                stdin_command=args.stdin_from_command,
                selection=selection,
                storage_settings=run.settings.storage,
                key_range=key_range,
            )
            files_cache_name = scaleout.part_cache_name(files_cache_name, meta_extra)
            creator = ArchiveCreator(
                repo,
                archive,
                comment=args.comment,
                use_files_cache=not args.no_files_cache,
                progress=report if live.enabled else None,
                files_cache_name=files_cache_name,
                on_warning=lambda path, msg: live.print(f"warning: {path}: {msg}"),
                on_note=lambda path, msg: live.print(f"note: {path}: {msg}"),
                deadline=deadline,
                meta_extra=meta_extra,
            )
            live.start("create")
            entry = creator.run(source, paths=paths, cmdline=sys.argv)
            live.stop()
            requests = requests_of(repo)
    except DeadlineReached:
        return scaleout.incomplete(archive)
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
