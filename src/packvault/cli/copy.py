"""``copy SRC_REPO DST_REPO [ARCHIVE...]``: the command line of ``maintenance/copy.py``.

The parser imports this module before the key is derived (``early_unlock.py``) and before a backup's reader
server starts (``main.py``): what opens repositories, and the passphrase and KDF modules, are imported where
they are used, so the derivation still runs before the heavy modules load."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from ..errors import EXIT_OK, EXIT_WARNING
from .location import split_location
from .output import escape_name, print_json

if TYPE_CHECKING:
    from .run import Run

OTHER_PASSPHRASE = "PACKVAULT_OTHER_PASSPHRASE"
OTHER_PASSCOMMAND = "PACKVAULT_OTHER_PASSCOMMAND"

DESCRIPTION = (
    "Copy archives (all, or the ARCHIVEs named) from SRC_REPO into DST_REPO, e.g. a local repository to S3 "
    "for a 3-2-1 backup.  Only chunks the destination lacks are sent.  When DST_REPO was created with "
    "'init --copy-crypt-from SRC_REPO' chunks keep their ids and archives keep their ids; otherwise every file "
    "is re-chunked and re-encrypted for the destination and the archive gets a new id there.  Archives already "
    "in the destination are skipped (with shared ids also those deleted there: their retention is the "
    "destination's), so an "
    "interrupted copy is resumed by running it again.  DST_REPO is "
    "opened with the passphrase ($PACKVAULT_PASSPHRASE, $PACKVAULT_PASSCOMMAND or a prompt), SRC_REPO with "
    "$PACKVAULT_OTHER_PASSPHRASE or $PACKVAULT_OTHER_PASSCOMMAND when one is set, else with the same passphrase."
)


def add_parser(command: Callable[..., argparse.ArgumentParser], add_common: Callable[..., None]) -> None:
    """The ``copy`` subcommand, added by the parser's ``command`` and ``_add_common`` helpers."""
    p = command("copy", "copy archives into another repository", DESCRIPTION)
    p.add_argument("src", metavar="SRC_REPO", help="the repository to copy from (a path, file:///path or s3://...)")
    p.add_argument("dst", metavar="DST_REPO", help="the repository to copy into")
    p.add_argument("archives", nargs="*", metavar="ARCHIVE", help="the archives to copy (default: all)")
    add_common(p)
    p.set_defaults(func="cmd_copy")


def source_run(run: Run) -> Run:
    """The ``Run`` whose passphrase opens the other repository (copy's source, ``init --copy-crypt-from``):
    $PACKVAULT_OTHER_PASSPHRASE / $PACKVAULT_OTHER_PASSCOMMAND when set (an offsite copy usually has its own
    passphrase), else the passphrase of the repository itself."""
    from ..crypto.kdf import Passphrase
    from .passphrase import get_passphrase

    if os.environ.get(OTHER_PASSPHRASE) is None and not os.environ.get(OTHER_PASSCOMMAND):
        return run
    value = get_passphrase(prompt="Source passphrase: ", env=OTHER_PASSPHRASE, command_env=OTHER_PASSCOMMAND)
    return replace(run, early=Passphrase(value))


def cmd_copy(args, run: Run) -> int:
    from ..maintenance.copy import ArchiveCopier, select_archives
    from . import render
    from .backup import _sigterm_interrupts, _Terminated
    from .opening import open_repository

    src_location, _ = split_location(args.src)
    dst_location, _ = split_location(args.dst)

    def tell(name: str, what: str) -> None:
        if what == "conflict":
            print(
                f"packvault: warning: archive {escape_name(name)!r} not copied: the destination has another "
                "archive of that name (rename or delete one of them, then copy again)",
                file=sys.stderr,
                flush=True,
            )
        elif what == "deleted there":
            if not args.json:
                print(f"skipped {escape_name(name)} (deleted in the destination)", flush=True)
        elif not args.json:
            print(f"{what} {escape_name(name)}", flush=True)

    copier: ArchiveCopier | None = None
    try:
        with (
            _sigterm_interrupts(),
            open_repository(args, source_run(run), src_location, lock="shared") as src,
            open_repository(args, run, dst_location, lock="shared") as dst,
        ):
            copier = ArchiveCopier(src, dst, on_archive=tell)
            report = copier.run(select_archives(src, args.archives))
            source_requests, destination_requests = src.request_stats(), dst.request_stats()
    except KeyboardInterrupt as exc:
        signame, code = ("SIGTERM", 143) if isinstance(exc, _Terminated) else ("SIGINT", 130)
        render.interrupted(signame, copier.stored_packs if copier is not None else None)
        return code
    if args.json:
        print_json({**report.as_dict(), "requests": {"source": source_requests, "destination": destination_requests}})
    else:
        mode = "re-cut and re-encrypted" if report.recut else "same chunk ids"
        print(
            f"{len(report.copied)} archive(s) copied, {len(report.skipped)} already there, "
            f"{len(report.deleted_there)} deleted there, "
            f"{len(report.conflicts)} not copied ({mode}); "
            f"{report.chunks_new} new chunks, {report.bytes_new} bytes"
        )
    return EXIT_WARNING if report.conflicts else EXIT_OK
