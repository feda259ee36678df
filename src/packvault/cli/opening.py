"""Opening a repository for a command: its S3 options, the passphrase, the lock, and what a command that only
reads does when the lock cannot be written."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..crypto.kdf import Passphrase
from ..repository.repository import Repository
from . import render
from .gc_policy import freeze_long_lived_objects
from .run import Run

if TYPE_CHECKING:
    from ..repository.catalogue import ArchiveEntry
    from ..repository.reader import ChunkReader


def s3_options(args) -> dict[str, str]:
    options = {}
    for name in ("endpoint", "region", "profile", "storage_class", "hot_storage_class"):
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


@contextlib.contextmanager
def archive_reader(repo: Repository, name: str) -> Iterator[tuple[ArchiveEntry, ChunkReader]]:
    """The archive ``name``, found while the index loads (two round trips at once), and a reader that takes
    metadata packs from the local, authenticated cache (``repository/metapacks.py``)."""
    from ..repository.reader import ChunkReader

    entry = repo.find_archive(name, load_index=True)
    with ChunkReader(repo, meta_packs=repo.meta_pack_cache()) as reader:
        yield entry, reader


def requests_of(repo: Repository) -> dict:
    return repo.request_stats()
