"""The command line: every command, its options with their help text and defaults, and argument parsing
whose errors are one line (exit 2).  ``main.py`` runs what is parsed here.

One declaration of every command, in the order ``--help`` lists them: it is long because each option
carries its help text, and it stays one unit so that a command's options are read in one place.
"""

from __future__ import annotations

import argparse

from .. import __version__
from ..errors import EXIT_ERROR
from . import copy, mount, scaleout


class _Formatter(argparse.HelpFormatter):
    """Shows every option's default, so nothing a command does by default is a surprise."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            action.option_strings
            and "%(default)" not in text
            and default not in (None, False, argparse.SUPPRESS, "", [])
            and not isinstance(action, argparse._VersionAction)
        ):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, like every other expected failure."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_ERROR, f"packvault: error: {message} (see '{self.prog} --help')\n")


def _add_verbose(p: argparse.ArgumentParser) -> None:
    # SUPPRESS: "-v" before the command sets it and a subcommand that does not see "-v" must not reset it
    p.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log progress details to stderr"
    )


def _add_common(p: argparse.ArgumentParser, *, json_flag: bool = True, reading: bool = False) -> None:
    if json_flag:
        p.add_argument("--json", action="store_true", help="machine-readable output (includes request counts)")
    if reading:
        p.add_argument(
            "--no-lock",
            action="store_true",
            help="read without taking the shared lock (a repository that cannot be written is read without one "
            "anyway); a compact running at the same time may then delete what this command reads",
        )
    p.add_argument(
        "--lock-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="wait this long for another operation's lock (default: $PACKVAULT_LOCK_WAIT, else 60)",
    )
    _add_verbose(p)
    g = p.add_argument_group("S3 options (override the URL's query and the AWS environment)")
    g.add_argument("--s3-endpoint", metavar="URL", help="S3 endpoint URL, e.g. http://127.0.0.1:9000 for MinIO")
    g.add_argument("--s3-region", metavar="REGION", help="the bucket's region (default: from the AWS config)")
    g.add_argument("--s3-profile", metavar="PROFILE", help="AWS profile to take credentials from")
    g.add_argument(
        "--s3-storage-class",
        metavar="CLASS",
        help="storage class of data packs (e.g. STANDARD_IA, DEEP_ARCHIVE); recorded by init, which decides for "
        "every later client",
    )
    g.add_argument(
        "--s3-hot-storage-class",
        metavar="CLASS",
        help="storage class of metadata packs, index, archives, keys and config (not lock records); recorded by "
        "init (default STANDARD)",
    )


def _add_tag_filter(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--tag",
        action="append",
        metavar="TAG",
        help=f"only {what} archives that carry TAG (see 'packvault tag'); repeated: every one of the TAGs",
    )


def _add_cold_restore(p: argparse.ArgumentParser) -> None:
    """The options of a command that may restore data packs from S3 GLACIER/DEEP_ARCHIVE first."""
    p.add_argument(
        "--restore-tier",
        choices=["bulk", "standard", "expedited"],
        default=None,
        help="cold data packs: the retrieval tier of their restores (default: standard; bulk is cheapest)",
    )
    p.add_argument(
        "--restore-days",
        type=int,
        default=None,
        metavar="N",
        help="cold data packs: days the restored copies stay readable (default: 3)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="cold data packs: wait for their restores (polling) instead of exiting with 3",
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --wait: seconds between two looks at the restores (default: 300)",
    )


def _add_item_excludes(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--exclude",
        "-e",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out items matching PATTERN (docs/patterns.md)",
    )
    p.add_argument("--exclude-from", action="append", default=[], metavar="FILE", help="read PATTERNs from FILE")


_REPO_HELP = "the repository: a path, file:///path or s3://bucket[/prefix] (default: $PACKVAULT_REPO)"
_EXIT_CODES = (
    "exit codes: 0 done; 1 done with warnings (the archive or result is committed; the warnings are on "
    "stderr and counted at the end); 2 not done (one line on stderr says why); 3 a time-boxed serverless run "
    "stopped at its deadline and resumes on the next, or an extract requested restores of cold data packs and "
    "finishes when rerun after them; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM)"
)

_PRUNE_DESCRIPTION = (
    "Soft-delete archives that no --keep-* rule keeps.  Archives are first split into groups (--group-by), "
    "and the rules apply to each group on its own.  The default groups by host and backed-up paths, like "
    "restic: every archive of the same paths from the same machine is one series, whatever its name, so "
    "'--keep-last 2' over a1..a4 keeps a3 and a4.  --list shows each archive's group, decision and rule.  "
    "Space is reclaimed by 'packvault compact'; until then 'packvault undelete' brings an archive back.  "
    "With --compact, compact runs right after in the same process (one opening, one exclusive lock, as "
    "restic's forget --prune) and the pruned archives are purged for good; --threshold, --min-age and "
    "--cold-min-age are compact's.  --dry-run --compact changes nothing and shows both the decisions and what "
    "compact would free once the pruned archives are gone."
)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="packvault",
        description="Deduplicating, compressing, encrypting backups into S3 buckets and local directories.",
        epilog="REPO is a path, file:///path or s3://bucket[/prefix]; it may come from PACKVAULT_REPO "
        "(then write ::ARCHIVE).  Options may come before or after the positional arguments.  " + _EXIT_CODES,
    )
    parser.add_argument("--version", action="version", version=f"packvault {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(
        name: str, help_text: str, description: str | None = None, *, before_exit_codes: str = "", **kwargs
    ) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=description or help_text[:1].upper() + help_text[1:] + ".",
            epilog=f"{before_exit_codes} {_EXIT_CODES}" if before_exit_codes else _EXIT_CODES,
            **kwargs,
        )

    p = command(
        "init",
        "create a repository",
        "Create an empty repository at REPO and seal a new random key under the passphrase "
        "($PACKVAULT_PASSPHRASE, $PACKVAULT_PASSCOMMAND or a prompt; an empty passphrase needs "
        "--allow-empty-passphrase).",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument(
        "--encryption",
        choices=["repokey", "keyfile"],
        default="repokey",
        help="repokey: the sealed key lives in the repository; keyfile: only on this machine",
    )
    p.add_argument(
        "--cipher", choices=["aes-256-gcm", "chacha20-poly1305"], default="aes-256-gcm", help="the AEAD cipher"
    )
    p.add_argument("--pack-size", default="32M", metavar="SIZE", help="target pack size, 64K..1G")
    p.add_argument("--compression", default="auto,zstd,3", metavar="SPEC", help="auto | zstd[,N] | auto,zstd,N | none")
    p.add_argument(
        "--object-lock",
        choices=["governance", "compliance"],
        help="S3 Object Lock mode of every object written (the bucket must have Object Lock enabled); "
        "recorded in the repository, needs --retention",
    )
    p.add_argument(
        "--retention",
        metavar="DURATION",
        help="with --object-lock: how long each object is retained from its write or extension, e.g. 30d",
    )
    p.add_argument(
        "--allow-empty-passphrase",
        action="store_true",
        help="accept an empty passphrase (anyone who can read the repository can then read the backups)",
    )
    p.add_argument(
        "--copy-crypt-from",
        metavar="OTHER_REPO",
        default=None,
        help="share OTHER_REPO's chunk-id key and chunker parameters (opened with $PACKVAULT_OTHER_PASSPHRASE or "
        "$PACKVAULT_OTHER_PASSCOMMAND when set, else the same passphrase), so "
        "'packvault copy' between the two sends chunks as they are instead of re-chunking every file",
    )
    _add_common(p)
    p.set_defaults(func="cmd_init")

    p = command(
        "create",
        "back up paths into a new archive",
        "Back up local paths (or s3://bucket/prefix objects) into a new archive.  Relative paths are stored "
        "as absolute paths.  The repository and the Packvault cache are never backed up into themselves, and a "
        "PATH inside another PATH is stored once.",
        before_exit_codes="For create: 0 archive created; 1 archive created with warnings (unreadable files, "
        "sockets); 2 no archive (the repository could not be written, no PATH could be read, ...); 75 stopped at "
        "its --deadline (incomplete, rerun); 130/143 stopped by SIGINT/SIGTERM. The packs stored before a stop are "
        "indexed: running the command again resumes.",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE", help="the repository and the new archive's name")
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="local paths, s3://bucket/prefix sources, '-' for standard input, or with --stdin-from-command "
        "the command and its arguments (after '--')",
    )
    p.add_argument(
        "--exclude", "-e", action="append", default=[], metavar="PATTERN", help="leave out paths matching PATTERN"
    )
    p.add_argument(
        "--exclude-from", action="append", default=[], metavar="FILE", help="read exclude patterns from FILE"
    )
    p.add_argument(
        "--files-from",
        action="append",
        default=[],
        metavar="FILE",
        help="back up the paths listed in FILE, one per line ('-': standard input), besides any PATHs",
    )
    p.add_argument(
        "--files-from0",
        action="append",
        default=[],
        metavar="FILE",
        help="like --files-from, with NUL-separated paths (find -print0)",
    )
    p.add_argument(
        "--exclude-caches",
        action="store_true",
        help="leave out the contents of directories tagged as caches (CACHEDIR.TAG with its signature)",
    )
    p.add_argument(
        "--exclude-if-present",
        action="append",
        default=[],
        metavar="NAME",
        help="leave out the contents of directories that contain a file NAME (repeatable)",
    )
    p.add_argument(
        "--exclude-larger-than",
        metavar="SIZE",
        default=None,
        help="leave out files larger than SIZE (e.g. 100M)",
    )
    p.add_argument("--one-file-system", "-x", action="store_true", help="stay on the file system of each PATH")
    p.add_argument("--comment", default="", help="a comment stored with the archive")
    p.add_argument(
        "--stdin-name",
        metavar="NAME",
        default=None,
        help="the file name under which standard input or the command's output is stored (default: stdin)",
    )
    p.add_argument(
        "--stdin-from-command",
        action="store_true",
        help="run the PATHs as a command (after '--') and back up its output as one file; a command that "
        "fails (exit status not 0) fails the backup: no archive",
    )
    p.add_argument("--no-files-cache", action="store_true", help="read every file, even unchanged ones")
    p.add_argument(
        "--progress", action="store_true", help="on a terminal: files, new bytes, bytes read, rate, current path"
    )
    p.add_argument("--stats", action="store_true", help="also print request counts")
    scaleout.add_create_options(p)
    _add_common(p)
    p.set_defaults(func="cmd_create")

    p = command(
        "list",
        "list archives, or the contents of one",
        "List the archives of REPO, or the items of REPO::ARCHIVE (optionally only those at or below PATH).  "
        "Control characters and undecodable bytes in names are shown escaped (\\n, \\xNN); --json and "
        "--json-lines carry names that are not UTF-8 losslessly in a base64 'path_bytes' field.",
    )
    p.add_argument("location", nargs="?", metavar="REPO[::ARCHIVE]", help=_REPO_HELP + ", and an archive")
    p.add_argument("paths", nargs="*", metavar="PATH", help="only items at or below these archive paths")
    _add_item_excludes(p)
    p.add_argument("--json-lines", action="store_true", help="one JSON object per item, one per line")
    p.add_argument("--deleted", action="store_true", help="list soft-deleted archives (see undelete)")
    _add_tag_filter(p, "list")
    _add_common(p, reading=True)
    p.set_defaults(func="cmd_list")

    p = command(
        "extract",
        "restore an archive",
        "Restore an archive, or the PATHs of it, into a directory or a bucket.  Nothing is written outside the "
        "target: no symlink is followed (an entry below one is skipped with a warning), and items with unsafe "
        "names (absolute, '..') are skipped.",
        before_exit_codes="Existing entries (--overwrite): 'always' (default for a directory) replaces every "
        "existing entry, 'if-changed' keeps files of the same size and mtime (symlinks with the same target), "
        "'if-newer' replaces only entries older than the archived one, 'never' keeps everything that exists. "
        "An entry is replaced only once its new version is complete, and a non-empty directory in the way of a "
        "file or link is kept (with a warning) unless --delete is given. Existing directories are merged into. "
        "Into s3://bucket/prefix each file becomes one object; a key that exists is kept unless --overwrite "
        "is given (create-only); the bucket's endpoint and credentials come from its URL "
        "(?endpoint=...&region=...) and the AWS environment. For extract: 1 also means an entry not restored, "
        "a PATH that matches nothing, or a file repaired with zeros. Data packs in S3 GLACIER or DEEP_ARCHIVE "
        "(recorded at init): extract first asks S3 to restore the packs it needs (only those), records that in "
        "the cache, writes the files whose packs are readable, and exits with 3; rerun it when the restores "
        "are done (hours: a rerun keeps the files written before, --overwrite if-changed unless given), or give "
        "--wait to write the files as their packs become readable.",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE", help="the repository and the archive to restore")
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
    _add_item_excludes(p)
    p.add_argument("--dry-run", action="store_true", help="read and verify everything, write nothing")
    p.add_argument("--numeric-ids", action="store_true", help="restore owners by uid/gid, not by name")
    p.add_argument("--progress", action="store_true", help="show progress on the terminal")
    _add_cold_restore(p)
    _add_common(p, reading=True)
    p.set_defaults(func="cmd_extract")

    p = command(
        "dump",
        "write one file of an archive to standard output",
        "Write the file PATH of an archive to standard output; a directory (or '/' for the whole archive) is "
        "written as a tar stream (POSIX format, as export-tar), named from the directory itself.",
        before_exit_codes="A chunk that cannot be read is written as zeros of its size, with a warning (exit 1).",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE", help="the repository and the archive")
    p.add_argument("path", metavar="PATH", help="the archive path of a file or directory (leading '/' optional)")
    _add_common(p, reading=True, json_flag=False)
    p.set_defaults(func="cmd_dump")

    p = command(
        "export-tar",
        "write an archive as a tar stream",
        "Write the archive (or only PATHs of it) as a tar stream (POSIX/PAX: modes, owners, nanosecond mtimes, "
        "symlinks, hardlinks, fifos, devices, extended attributes) to FILE, or to standard output with '-'. "
        "GNU tar, bsdtar and Python's tarfile read it.",
        before_exit_codes="A chunk that cannot be read is written as zeros of its size, with a warning (exit 1).",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE", help="the repository and the archive")
    p.add_argument("file", metavar="FILE", help="where to write the tar stream ('-': standard output)")
    p.add_argument("paths", nargs="*", metavar="PATH", help="only items at or below these archive paths")
    _add_item_excludes(p)
    _add_common(p, reading=True)
    p.set_defaults(func="cmd_export_tar")

    p = command("info", "show repository or archive details")
    p.add_argument("location", nargs="?", metavar="REPO[::ARCHIVE]", help=_REPO_HELP + ", and optionally an archive")
    _add_common(p, reading=True)
    p.set_defaults(func="cmd_info")

    p = command("diff", "compare two archives", "Show the paths added, removed or modified from ARCHIVE1 to ARCHIVE2.")
    p.add_argument("location", metavar="REPO::ARCHIVE1", help="the repository and the older archive")
    p.add_argument("other", metavar="ARCHIVE2", help="the newer archive")
    _add_common(p, reading=True)
    p.set_defaults(func="cmd_diff")

    p = command(
        "find",
        "find paths across archives",
        "List every item of every archive (or of those whose name matches --archive) that matches one of the "
        "PATTERNs: which backups hold a file, and its size and mtime in each.  Patterns as for --exclude "
        "(docs/patterns.md): '*.pdf', 'node_modules', 'home/me/docs/report.odt'.",
        before_exit_codes="For find: 1 when nothing matches.",
    )
    p.add_argument("repo", metavar="REPO", help=_REPO_HELP)
    p.add_argument("patterns", nargs="+", metavar="PATTERN", help="a glob, a base name, or an archive path")
    p.add_argument("--archive", metavar="GLOB", default=None, help="only archives whose name matches GLOB")
    p.add_argument("--json-lines", action="store_true", help="one JSON object per match, one per line")
    _add_tag_filter(p, "search")
    _add_common(p, reading=True, json_flag=False)
    p.set_defaults(func="cmd_find")

    p = command(
        "delete",
        "soft-delete archives (space is reclaimed by compact)",
        "Soft-delete archives: 'packvault undelete' brings them back until 'packvault compact' runs.  Every "
        "name is checked first; if one is not found, nothing is deleted.",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE", help="the repository and an archive")
    p.add_argument("more", nargs="*", metavar="ARCHIVE", help="more archives to delete")
    _add_common(p)
    p.set_defaults(func="cmd_delete")

    p = command(
        "rename",
        "give an archive another name",
        "Give the archive OLD the name NEW (refused if an archive named NEW exists).  Only the small archives/ "
        "entry is rewritten: the new entry is written before the old one is retired, so an interruption "
        "leaves the archive under both names (delete either), never under none.",
    )
    p.add_argument("location", metavar="REPO::OLD", help="the repository and the archive")
    p.add_argument("new", metavar="NEW", help="the new name")
    _add_common(p)
    p.set_defaults(func="cmd_rename")

    p = command(
        "tag",
        "add, remove or set the tags of an archive",
        "Change the tags of an archive: labels that 'list', 'prune' and 'find' select by with --tag (e.g. "
        "'prune --tag daily' applies its policy to the archives tagged daily only).  Without an option, show "
        "the tags.  Like rename, only the archives/ entry is rewritten.",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE", help="the repository and the archive")
    p.add_argument("--add", action="append", metavar="TAG", help="add TAG (repeatable)")
    p.add_argument("--remove", action="append", metavar="TAG", help="remove TAG (repeatable)")
    p.add_argument(
        "--set", action="extend", nargs="*", metavar="TAG", help="replace all tags by these (none: clear them)"
    )
    _add_common(p)
    p.set_defaults(func="cmd_tag")

    p = command(
        "undelete",
        "restore soft-deleted archives (until compact runs)",
        "Bring soft-deleted archives back (see 'packvault list --deleted').  Every name is checked first; if "
        "one is not found, nothing is restored.",
    )
    p.add_argument("location", metavar="REPO::ARCHIVE", help="the repository and a soft-deleted archive")
    p.add_argument("more", nargs="*", metavar="ARCHIVE", help="more soft-deleted archives")
    _add_common(p)
    p.set_defaults(func="cmd_undelete")

    p = command("prune", "soft-delete archives by a retention policy", _PRUNE_DESCRIPTION)
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    for rule, what in (
        ("last", "the N newest archives"),
        ("hourly", "the newest archive of each of the N latest hours that have one"),
        ("daily", "the newest archive of each of the N latest days that have one"),
        ("weekly", "the newest archive of each of the N latest ISO weeks that have one"),
        ("monthly", "the newest archive of each of the N latest months that have one"),
        ("yearly", "the newest archive of each of the N latest years that have one"),
    ):
        p.add_argument(f"--keep-{rule}", type=int, default=0, metavar="N", help=f"keep {what} (0: rule off)")
    p.add_argument(
        "--keep-within",
        metavar="DURATION",
        help="keep every archive younger than DURATION: s, min, h, d, w, m (months), y, e.g. 36h, 2w, 6m",
    )
    p.add_argument("--match", metavar="GLOB", help="only consider archives whose name matches (others are kept)")
    _add_tag_filter(p, "consider (others are kept)")
    p.add_argument(
        "--group-by",
        default="host,paths",
        metavar="KEYS",
        help="comma list of host, paths (the backed-up paths), prefix (the archive name without its trailing "
        "date or counter); empty: one group",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="decide and show, delete nothing; with --compact, also show what compact would free once the "
        "pruned archives are gone",
    )
    p.add_argument("--list", action="store_true", help="show each archive's group, decision and rule")
    p.add_argument(
        "--compact",
        action="store_true",
        help="reclaim space right away, like 'packvault compact' run next but in the same process and under one "
        "exclusive lock (restic's forget --prune); pruned archives are purged for good, not soft-deleted",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="PERCENT",
        help="with --compact: rewrite packs at least this much dead (default: 10)",
    )
    p.add_argument(
        "--max-unused",
        type=float,
        default=None,
        metavar="PERCENT",
        help="with --compact: leave partly dead packs as they are while dead data is at most this share of the "
        "repository, rewriting the most dead first (restic's default is 5; default: 0, rewrite them all)",
    )
    p.add_argument(
        "--min-age",
        default=None,
        metavar="DURATION",
        help="with --compact: never touch packs younger than this: s, min, h, d, w, m (months), y, or 0 "
        "(default: 2h)",
    )
    p.add_argument(
        "--cold-min-age",
        default=None,
        metavar="DURATION",
        help="with --compact: data packs in GLACIER, DEEP_ARCHIVE or GLACIER_IR are never deleted younger "
        "than this (default: the class's minimum storage duration, 90d, 180d, 90d)",
    )
    _add_common(p)
    p.set_defaults(func="cmd_prune")

    p = command(
        "compact",
        "reclaim space: garbage-collect and copy live data forward",
        "Delete what no archive references and copy live data out of mostly dead packs.  Packs younger than "
        "--min-age are never touched (a backup running now may still need them), so right after a prune "
        "compact frees little: its output says how many packs were too young.  Partly dead data packs in "
        "S3 GLACIER or DEEP_ARCHIVE are copied forward only with a restore option (--restore-tier, "
        "--restore-days, --wait): compact then restores them (retrieval is charged per GB) and exits with 3 "
        "while restores are pending; rerun it with the same options later, or give --wait.",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument(
        "--threshold", type=float, default=10.0, metavar="PERCENT", help="rewrite packs at least this much dead"
    )
    p.add_argument(
        "--max-unused",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help="leave partly dead packs as they are while dead data is at most this share of the repository, "
        "rewriting the most dead first (copy-forward costs reads and writes; restic's default is 5; 0: rewrite "
        "every pack at least --threshold dead)",
    )
    p.add_argument(
        "--min-age",
        default="2h",
        metavar="DURATION",
        help="never touch packs younger than this: s, min, h, d, w, m (months), y, or 0",
    )
    p.add_argument(
        "--cold-min-age",
        default=None,
        metavar="DURATION",
        help="data packs in GLACIER, DEEP_ARCHIVE or GLACIER_IR (storage_class=): never delete them younger "
        "than this (default: the class's minimum storage duration, 90d, 180d, 90d); such packs are only "
        "deleted whole, never copied forward unless a restore option is given",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be freed, change nothing")
    _add_cold_restore(p)
    _add_common(p)
    p.set_defaults(func="cmd_compact")

    retention = command(
        "retention",
        "extend the S3 Object Lock retention of live objects",
        "Manage the S3 Object Lock retention of a repository created with --object-lock.",
    )
    _add_verbose(retention)
    retention_sub = retention.add_subparsers(dest="retention_command", metavar="RETENTIONCOMMAND", parser_class=_Parser)
    p = retention_sub.add_parser(
        "extend",
        help="retain every live object for another period",
        description="Give every object still needed for a restore (referenced packs, index, archive entries, keys, "
        "config) a retain-until date of now + the retention period once less than --renew-below of it is left.  "
        "Costs one HEAD per live object per run and one PutObjectRetention per live object per extension "
        "(docs/s3-backend.md).  compact runs this step too.",
        epilog=_EXIT_CODES,
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument(
        "--retention", metavar="DURATION", help="the new retention from now (default: the repository's, from init)"
    )
    p.add_argument(
        "--renew-below", metavar="DURATION", help="extend only objects with less than this left (default: half)"
    )
    p.add_argument("--dry-run", action="store_true", help="count what would be extended, change nothing")
    _add_common(p)
    p.set_defaults(func="cmd_retention_extend")

    p = command(
        "check",
        "verify the repository and archives",
        "Verify the repository's structure, the archives' metadata and, with --verify-data, every chunk.  "
        "Exit code 1 means problems were found (listed on stdout).",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument("--repository-only", action="store_true", help="structure only; needs no passphrase")
    p.add_argument("--archives-only", action="store_true", help="archive metadata and item streams only")
    p.add_argument("--verify-data", action="store_true", help="decrypt and verify every referenced chunk")
    _add_cold_restore(p)
    p.add_argument("--read-data-subset", metavar="SUBSET", help="verify a rotating part of the data: N%% or n/t")
    p.add_argument("--max-duration", type=float, metavar="SECONDS", help="stop in time, resume next run")
    p.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="verify data packs in N worker processes (default: one per CPU; 0: in this process)",
    )
    p.add_argument("--repair", action="store_true", help="fix what can be fixed (see docs/check.md)")
    p.add_argument("--dry-run", action="store_true", help="with --repair: show what would change")
    p.add_argument("--progress", action="store_true", help="show progress on the terminal")
    _add_common(p)
    p.set_defaults(func="cmd_check")

    p = command(
        "break-lock",
        "remove stale locks (all locks with --force)",
        "Remove locks whose holder is gone (a dead local process, or not refreshed for 15 minutes by both "
        "clocks).  --force removes every lock: use it only when no other packvault runs on this repository.",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument("--force", action="store_true", help="remove every lock, also live ones")
    _add_common(p)
    p.set_defaults(func="cmd_break_lock")

    p = command(
        "completion",
        "print a shell completion script",
        "Print the completion script for SHELL, generated from this very command line definition (shtab), "
        "so it always knows every command and option.  bash: 'packvault completion bash > "
        "~/.local/share/bash-completion/completions/packvault'; zsh: into a directory on $fpath as "
        "'_packvault'; fish: '~/.config/fish/completions/packvault.fish'.",
    )
    p.add_argument("shell", choices=["bash", "zsh", "fish"], help="the shell to complete for")
    _add_verbose(p)
    p.set_defaults(func="cmd_completion")

    mount.add_parser(command, _add_common)
    copy.add_parser(command, _add_common)
    scaleout.add_parsers(command, _add_common)

    key = command(
        "key",
        "export, import or re-protect the repository key",
        "Export, import or re-protect the repository key.  The key is sealed under the passphrase; keep an "
        "exported copy: without the key, nothing in the repository can be read.",
    )
    _add_verbose(key)
    key_sub = key.add_subparsers(dest="key_command", metavar="KEYCOMMAND", parser_class=_Parser)

    def key_command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return key_sub.add_parser(name, help=help_text, description=description, epilog=_EXIT_CODES)

    p = key_command(
        "export",
        "write the sealed key to FILE (or stdout)",
        "Write the sealed key to FILE, or to stdout without FILE or with '-'.  It stays protected by the passphrase.",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument("file", nargs="?", metavar="FILE", help="where to write the key (default: stdout)")
    _add_common(p, json_flag=False)
    p.set_defaults(func="cmd_key_export")
    p = key_command(
        "import",
        "restore the sealed key from FILE",
        "Store the sealed key from FILE (made by 'packvault key export') in the repository (or the key file).",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument("file", metavar="FILE", help="an exported key")
    _add_common(p, json_flag=False)
    p.set_defaults(func="cmd_key_import")
    p = key_command(
        "change-passphrase",
        "seal the key under a new passphrase",
        "Seal the key under a new passphrase.  The current passphrase comes from $PACKVAULT_PASSPHRASE, "
        "$PACKVAULT_PASSCOMMAND or a prompt; the new one from $PACKVAULT_NEW_PASSPHRASE or a prompt (an empty "
        "one needs --allow-empty-passphrase).  The master key does not change, so nothing is re-encrypted.",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument(
        "--allow-empty-passphrase",
        action="store_true",
        help="accept an empty new passphrase (anyone who can read the repository can then read the backups)",
    )
    _add_common(p, json_flag=False)
    p.set_defaults(func="cmd_key_change_passphrase")
    p = key_command(
        "add",
        "seal the key under one more passphrase",
        "Seal the repository key under one more passphrase (e.g. one for people, one for the scheduled job): "
        "each one opens the whole repository.  The current passphrase comes from $PACKVAULT_PASSPHRASE, "
        "$PACKVAULT_PASSCOMMAND or a prompt; the new one from $PACKVAULT_NEW_PASSPHRASE or a prompt.  Only for "
        "repokey repositories: a keyfile repository has one key file per machine.",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument("--label", metavar="TEXT", help="what the key is for, shown by 'key list' (stored encrypted)")
    p.add_argument(
        "--allow-empty-passphrase",
        action="store_true",
        help="accept an empty new passphrase (anyone who can read the repository can then read the backups)",
    )
    _add_common(p)
    p.set_defaults(func="cmd_key_add")
    p = key_command(
        "list",
        "list the repository's keys",
        "List the repository's keys (one per passphrase): an id, when it was added and its label; '*' marks "
        "the one whose passphrase opened the repository.",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    _add_common(p)
    p.set_defaults(func="cmd_key_list")
    p = key_command(
        "remove",
        "remove one of the repository's keys",
        "Remove the key with id ID (see 'key list'; a unique prefix is enough): its passphrase no longer opens "
        "the repository.  The last key is never removed, and the key whose passphrase opened the repository "
        "only with --force.  A copy made with 'key export' still opens the repository after 'key import'.",
    )
    p.add_argument("repo", nargs="?", metavar="REPO", help=_REPO_HELP)
    p.add_argument("key_id", metavar="ID", help="the key's id, as 'key list' shows it")
    p.add_argument("--force", action="store_true", help="also remove the key that opened the repository")
    _add_common(p)
    p.set_defaults(func="cmd_key_remove")
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` with options and positional arguments in any order after the command word.

    argparse's ``parse_intermixed_args`` cannot handle a parser with subcommands, so the command words are
    found here (the first argument that is not an option, at each level) and each subcommand's own
    arguments are parsed intermixed: README's ``extract REPO::A --target DIR PATH`` works as written.
    """
    namespace = argparse.Namespace()
    top = True
    while True:
        action = _subparsers(parser)
        if action is None:
            return parser.parse_intermixed_args(argv, namespace)
        position = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
        head = argv if position is None else argv[:position]
        parser.parse_args(head, namespace)  # the options before the command word (-h, --version, -v)
        if position is None:
            if not top:
                parser.error(f"no {action.metavar} given (choose from {', '.join(action.choices)})")
            setattr(namespace, action.dest, None)
            return namespace
        word = argv[position]
        if word not in action.choices:
            parser.error(f"unknown command {word!r} (choose from {', '.join(action.choices)})")
        setattr(namespace, action.dest, word)
        parser, argv, top = action.choices[word], argv[position + 1 :], False
