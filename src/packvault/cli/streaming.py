"""Commands that stream an archive out (``dump``, ``export-tar``), search across archives (``find``), and
print the shell completion script: glue between argparse and ``archive/export.py``/``archive/patterns.py``."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import sys

from ..archive import items as it
from ..errors import EXIT_OK, EXIT_WARNING, UsageError
from . import render
from .housekeeping import with_tags
from .location import split_location
from .opening import open_repository
from .run import Run


def item_excludes(args):
    """The ``--exclude``/``--exclude-from`` patterns of a reading command, as a predicate on items."""
    from ..archive.patterns import ArchivePatterns, read_pattern_files

    patterns = ArchivePatterns(list(args.exclude) + read_pattern_files(args.exclude_from))
    return patterns.item_matches if patterns else (lambda item: False)


def _binary_output(target: str | None):
    if target in (None, "-"):
        return contextlib.nullcontext(sys.stdout.buffer)
    return open(target, "wb")  # noqa: SIM115 - returned as the context manager it is


def cmd_export_tar(args, run: Run) -> int:
    """The archive (or PATHs of it) as one PAX tar stream to FILE or standard output."""
    from ..archive.archive import iter_archive_items, load_archive
    from ..archive.export import write_tar
    from ..archive.extract import PathSelector
    from ..repository.reader import ChunkReader

    location, archive = split_location(args.location, need_archive=True)
    if args.file in (None, "-") and sys.stdout.isatty():
        raise UsageError("refusing to write a tar stream to a terminal", hint="redirect it, or give a FILE")
    with open_repository(args, run, location) as repo, ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive(archive))
        selected = PathSelector(args.paths)
        excluded = item_excludes(args)
        with _binary_output(args.file) as out:
            items = (i for i in iter_archive_items(reader, meta) if selected(i) and not excluded(i))
            stats = write_tar(reader, items, out, on_warning=render.warning)
    for path in selected.unmatched():
        stats.warnings.append(f"{path}: matches nothing in the archive")
        render.warning(path, "matches nothing in the archive")
    if args.json:  # beside the stream: on stdout only when the stream went to a file
        summary = {"items": stats.items, "files": stats.files, "bytes": stats.bytes_written, "warnings": stats.warnings}
        print(json.dumps(summary), file=sys.stdout if args.file not in (None, "-") else sys.stderr)
    return EXIT_WARNING if stats.warnings else EXIT_OK


def cmd_dump(args, run: Run) -> int:
    """One file's bytes to standard output; a directory (or the whole archive for '/') as a tar stream."""
    from ..archive.archive import iter_archive_items, load_archive
    from ..archive.export import NotInArchive, write_file, write_tar
    from ..repository.reader import ChunkReader

    location, archive = split_location(args.location, need_archive=True)
    wanted = args.path.strip("/").encode("utf-8", "surrogateescape")

    def below_wanted(item: dict) -> bool:
        path = item[it.PATH]
        return not wanted or path == wanted or path.startswith(wanted + b"/")

    with open_repository(args, run, location) as repo, ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive(archive))
        items = iter_archive_items(reader, meta)
        first = next((i for i in items if below_wanted(i)), None)
        if first is None:
            raise NotInArchive(
                f"{args.path!r} is not in archive {archive!r}", hint="see 'packvault list REPO::ARCHIVE'"
            )
        out = sys.stdout.buffer
        if first[it.TYPE] == it.FILE and first[it.PATH] == wanted:
            stats = write_file(reader, first, out, on_warning=render.warning)
        else:
            if sys.stdout.isatty():
                raise UsageError(
                    f"{args.path!r} is a directory: its tar stream is not for a terminal",
                    hint="redirect it (packvault dump ... > dir.tar), or pipe it into 'tar -x'",
                )
            strip = wanted.rpartition(b"/")[0] + b"/" if b"/" in wanted else b""

            def subtree():
                yield first
                yield from (item for item in items if below_wanted(item))

            stats = write_tar(reader, subtree(), out, strip=strip, on_warning=render.warning)
        out.flush()
    return EXIT_WARNING if stats.warnings else EXIT_OK


def cmd_find(args, run: Run) -> int:
    """Which archives hold paths matching PATTERNs (docs/patterns.md), with type, size and mtime."""
    from ..archive.archive import iter_archive_items, load_archive
    from ..archive.patterns import ArchivePatterns
    from ..repository.reader import ChunkReader

    location, _ = split_location(args.repo)
    patterns = ArchivePatterns(args.patterns)
    found = 0
    with open_repository(args, run, location) as repo, ChunkReader(repo) as reader:
        entries = [e for e in repo.archive_entries() if not args.archive or fnmatch.fnmatchcase(e.name, args.archive)]
        entries = with_tags(entries, args.tag)
        if (args.archive or args.tag) and not entries:
            wanted = " and ".join([repr(args.archive)] * bool(args.archive) + [f"tag {t!r}" for t in args.tag or ()])
            raise UsageError(f"no archive matches {wanted}", hint="see 'packvault list REPO'")
        for entry in entries:
            for item in iter_archive_items(reader, load_archive(reader, entry)):
                if patterns.item_matches(item):
                    found += 1
                    render.found(entry, item, as_json=args.json_lines)
    if not found:
        render.warning(" ".join(args.patterns), "no path matches")
        return EXIT_WARNING
    return EXIT_OK


def cmd_completion(args, run: Run) -> int:
    """The completion script, from the parser itself: a test keeps every command and option in it."""
    import shtab

    from .parser import build_parser

    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK
