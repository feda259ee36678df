"""The ``packvault`` command: argument parsing, dispatch, and the one place errors become exit codes.

Exit codes: 0 success; 1 finished with warnings (unreadable source files, problems found by check);
2 error (bad input, wrong passphrase, storage failure, ...); 3 stopped at a deadline (serverless, resumes
on the next run); 130 interrupted.  Expected failures print one line, ``packvault: error: ...``, never a
traceback (set PACKVAULT_DEBUG=1 to see one).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, PackvaultError
from . import early_unlock


def _add_common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output (includes request counts)")
    p.add_argument("--lock-wait", type=float, default=None, metavar="SECONDS", help="wait this long for a lock")
    g = p.add_argument_group("S3 options (override the URL's query and the AWS environment)")
    g.add_argument("--s3-endpoint", metavar="URL")
    g.add_argument("--s3-region")
    g.add_argument("--s3-profile")
    g.add_argument("--s3-storage-class", metavar="CLASS", help="storage class of data packs (e.g. STANDARD_IA)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="packvault",
        description="Deduplicating, compressing, encrypting backups into S3 buckets and local directories.",
        epilog="REPO is a path, file:///path or s3://bucket[/prefix]; it may come from PACKVAULT_REPO. "
        "Exit codes: 0 ok, 1 warnings, 2 errors, 3 deadline reached (resumable), 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"packvault {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("init", help="create a repository")
    p.add_argument("repo", nargs="?", metavar="REPO")
    p.add_argument("--encryption", choices=["repokey", "keyfile"], default="repokey")
    p.add_argument("--cipher", choices=["aes-256-gcm", "chacha20-poly1305"], default="aes-256-gcm")
    p.add_argument("--pack-size", default="32M", help="target pack size (default 32M)")
    p.add_argument("--compression", default="auto,zstd,3", help="auto | zstd[,N] | auto,zstd,N | none")
    _add_common(p)
    p.set_defaults(func="cmd_init")

    p = sub.add_parser(
        "create",
        help="back up paths into a new archive",
        description="Back up paths into a new archive. The repository and the Packvault cache are never backed "
        "up into themselves, and a PATH inside another PATH is stored once.",
        epilog="exit status: 0 archive created; 1 archive created with warnings (unreadable files, sockets); "
        "2 no archive (the repository could not be written, no PATH could be read, ...); 130/143 stopped by "
        "SIGINT/SIGTERM. The packs stored before a stop are indexed: running the command again resumes.",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE")
    p.add_argument("paths", nargs="+", metavar="PATH", help="local paths, or s3://bucket/prefix sources")
    p.add_argument("--exclude", "-e", action="append", default=[], metavar="PATTERN")
    p.add_argument("--exclude-from", action="append", default=[], metavar="FILE")
    p.add_argument("--one-file-system", "-x", action="store_true")
    p.add_argument("--comment", default="")
    p.add_argument("--no-files-cache", action="store_true", help="read every file, even unchanged ones")
    p.add_argument(
        "--progress", action="store_true", help="on a terminal: files, new bytes, bytes read, rate, current path"
    )
    p.add_argument("--stats", action="store_true", help="also print request counts")
    _add_common(p)
    p.set_defaults(func="cmd_create")

    p = sub.add_parser("list", help="list archives, or the contents of one")
    p.add_argument("location", nargs="?", metavar="REPO[::ARCHIVE]")
    p.add_argument("paths", nargs="*", metavar="PATH")
    p.add_argument("--json-lines", action="store_true", help="one JSON object per item")
    p.add_argument("--deleted", action="store_true", help="list soft-deleted archives (see undelete)")
    _add_common(p)
    p.set_defaults(func="cmd_list")

    p = sub.add_parser(
        "extract",
        help="restore an archive",
        description="Restore an archive, or the PATHs of it, into a directory or a bucket.  Nothing is written "
        "outside the target: no symlink is followed (an entry below one is skipped with a warning), and items "
        "with unsafe names (absolute, '..') are skipped.",
        epilog="Existing entries (--overwrite): 'always' (default for a directory) replaces every existing "
        "entry, 'if-changed' keeps files of the same size and mtime (symlinks with the same target), "
        "'if-newer' replaces only entries older than the archived one, 'never' keeps everything that exists. "
        "An entry is replaced only once its new version is complete, and a non-empty directory in the way of a "
        "file or link is kept (with a warning) unless --delete is given. Existing directories are merged into. "
        "Into s3://bucket/prefix each file becomes one object; a key that exists is kept unless --overwrite "
        "is given (create-only); the bucket's endpoint and credentials come from its URL "
        "(?endpoint=...&region=...) and the AWS environment. "
        "Exit codes: 0 restored, 1 restored with warnings (an entry not restored, a PATH that matches "
        "nothing, a file repaired with zeros), 2 not done.",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE")
    p.add_argument("paths", nargs="*", metavar="PATH", help="restore only these archive paths (and below)")
    p.add_argument("--target", default=".", metavar="DIR", help="a directory, or s3://bucket[/prefix]")
    p.add_argument(
        "--strip-components",
        type=int,
        default=0,
        metavar="N",
        help="drop N leading path parts (items with fewer are skipped)",
    )
    p.add_argument(
        "--overwrite",
        choices=["always", "if-changed", "if-newer", "never"],
        default=None,
        help="what to do with existing entries (default: always; for an s3:// target: create-only)",
    )
    p.add_argument(
        "--delete",
        action="store_true",
        help="make each restored directory mirror the archive: remove entries it does not have (directory "
        "targets only)",
    )
    p.add_argument("--dry-run", action="store_true", help="read and verify everything, write nothing")
    p.add_argument("--numeric-ids", action="store_true")
    p.add_argument("--progress", action="store_true")
    _add_common(p)
    p.set_defaults(func="cmd_extract")

    p = sub.add_parser("info", help="show repository or archive details")
    p.add_argument("location", nargs="?", metavar="REPO[::ARCHIVE]")
    _add_common(p)
    p.set_defaults(func="cmd_info")

    p = sub.add_parser("diff", help="compare two archives")
    p.add_argument("location", metavar="REPO::ARCHIVE1")
    p.add_argument("other", metavar="ARCHIVE2")
    _add_common(p)
    p.set_defaults(func="cmd_diff")

    p = sub.add_parser("delete", help="soft-delete archives (space is reclaimed by compact)")
    p.add_argument("location", metavar="REPO::ARCHIVE")
    p.add_argument("more", nargs="*", metavar="ARCHIVE")
    _add_common(p)
    p.set_defaults(func="cmd_delete")

    p = sub.add_parser("undelete", help="restore soft-deleted archives (until compact runs)")
    p.add_argument("location", metavar="REPO::ARCHIVE")
    p.add_argument("more", nargs="*", metavar="ARCHIVE")
    _add_common(p)
    p.set_defaults(func="cmd_undelete")

    p = sub.add_parser("prune", help="soft-delete archives by a retention policy")
    p.add_argument("repo", nargs="?", metavar="REPO")
    for rule in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        p.add_argument(f"--keep-{rule}", type=int, default=0, metavar="N")
    p.add_argument("--keep-within", metavar="DURATION", help="e.g. 2d, 36H, 1w, 6m, 1y")
    p.add_argument("--match", metavar="GLOB", help="only archives whose name matches")
    p.add_argument("--group-by", default="host,prefix", help="comma list of host, prefix (or empty)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--list", action="store_true", help="show each archive's decision and rule")
    _add_common(p)
    p.set_defaults(func="cmd_prune")

    p = sub.add_parser("compact", help="reclaim space: garbage-collect and copy live data forward")
    p.add_argument("repo", nargs="?", metavar="REPO")
    p.add_argument("--threshold", type=float, default=10.0, metavar="PERCENT", help="rewrite packs this dead")
    p.add_argument("--min-age", default="2h", metavar="DURATION", help="never touch packs younger than this")
    p.add_argument("--dry-run", action="store_true")
    _add_common(p)
    p.set_defaults(func="cmd_compact")

    p = sub.add_parser("check", help="verify the repository and archives")
    p.add_argument("repo", nargs="?", metavar="REPO")
    p.add_argument("--repository-only", action="store_true", help="structure only; needs no passphrase")
    p.add_argument("--archives-only", action="store_true")
    p.add_argument("--verify-data", action="store_true", help="decrypt and verify every referenced chunk")
    p.add_argument("--read-data-subset", metavar="N%|n/t", help="verify a rotating part of the data")
    p.add_argument("--max-duration", type=float, metavar="SECONDS", help="stop in time, resume next run")
    p.add_argument("--repair", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="with --repair: show what would change")
    p.add_argument("--progress", action="store_true")
    _add_common(p)
    p.set_defaults(func="cmd_check")

    p = sub.add_parser("break-lock", help="remove stale locks (all locks with --force)")
    p.add_argument("repo", nargs="?", metavar="REPO")
    p.add_argument("--force", action="store_true")
    _add_common(p)
    p.set_defaults(func="cmd_break_lock")

    key = sub.add_parser("key", help="export, import or re-protect the repository key")
    key_sub = key.add_subparsers(dest="key_command", metavar="KEYCOMMAND")
    p = key_sub.add_parser("export", help="write the sealed key to FILE (or stdout)")
    p.add_argument("repo", nargs="?", metavar="REPO")
    p.add_argument("file", nargs="?", metavar="FILE")
    _add_common(p, json_flag=False)
    p.set_defaults(func="cmd_key_export")
    p = key_sub.add_parser("import", help="restore the sealed key from FILE")
    p.add_argument("repo", nargs="?", metavar="REPO")
    p.add_argument("file", metavar="FILE")
    _add_common(p, json_flag=False)
    p.set_defaults(func="cmd_key_import")
    p = key_sub.add_parser("change-passphrase", help="seal the key under a new passphrase")
    p.add_argument("repo", nargs="?", metavar="REPO")
    _add_common(p, json_flag=False)
    p.set_defaults(func="cmd_key_change_passphrase")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="packvault: %(levelname)s: %(message)s"
    )
    location = early_unlock.repository_location(getattr(args, "location", None) or getattr(args, "repo", None))
    mark = early_unlock.mark()
    if args.command != "init":
        early_unlock.derive_early(location)  # before the commands (and boto3) are imported: see its docstring
    from . import commands

    try:
        return int(getattr(commands, args.func)(args) or 0)
    except PackvaultError as exc:
        if os.environ.get("PACKVAULT_DEBUG"):
            raise
        print(f"packvault: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("packvault: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_ERROR
    finally:
        early_unlock.remember(location, mark)


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
