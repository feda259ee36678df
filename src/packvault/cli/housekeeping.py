"""Archive housekeeping: ``rename`` and ``tag``, and the ``--tag`` selection shared by list, prune and find.

An archive entry is an immutable sealed object, so both commands write a new entry and retire the old one
(``Repository.replace_archive_entry``); the archive itself (its metadata and chunks) is not touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ..errors import EXIT_OK, UsageError
from ..repository.catalogue import ArchiveEntry
from . import render
from .location import split_location
from .opening import open_repository, requests_of
from .output import has_control_characters, print_json
from .run import Run


def check_tag(tag: str) -> str:
    """A tag is one printable word: it is shown in tables and given back on command lines."""
    if not tag or tag != tag.strip() or any(c.isspace() or c == "," for c in tag) or has_control_characters(tag):
        raise UsageError(f"invalid tag {tag!r}", hint="a tag is one word: no spaces, commas or control characters")
    return tag


def with_tags(entries: Iterable[ArchiveEntry], tags: Sequence[str] | None) -> list[ArchiveEntry]:
    """The entries that carry every one of ``tags`` (all of them without ``tags``)."""
    wanted = {check_tag(tag) for tag in tags or ()}
    return [entry for entry in entries if wanted <= set(entry.tags)]


def cmd_rename(args, run: Run) -> int:
    location, old = split_location(args.location, need_archive=True)
    _, new = split_location(f"{location}::{args.new}", need_archive=True)  # the same rules as a new archive's
    if new == old:
        raise UsageError(f"the archive is already named {old!r}")
    with open_repository(args, run, location) as repo:
        entry = repo.find_archive(old)
        repo.replace_archive_entry(entry, entry.renamed(new))
        requests = requests_of(repo)
    if args.json:
        print_json({"renamed": old, "name": new, "id": entry.hex, "requests": requests})
    else:
        render.renamed(old, new)
    return EXIT_OK


def cmd_tag(args, run: Run) -> int:
    location, name = split_location(args.location, need_archive=True)
    add, remove = {check_tag(t) for t in args.add or ()}, {check_tag(t) for t in args.remove or ()}
    replacement = {check_tag(t) for t in args.set} if args.set is not None else None
    if args.set is not None and (add or remove):
        raise UsageError("--set replaces all tags: it cannot be combined with --add or --remove")
    if add & remove:
        raise UsageError(f"tag {sorted(add & remove)[0]!r} is both added and removed")
    with open_repository(args, run, location) as repo:
        entry = repo.find_archive(name)
        tags = replacement if replacement is not None else (set(entry.tags) | add) - remove
        changed = tuple(sorted(tags)) != entry.tags
        if changed:
            repo.replace_archive_entry(entry, entry.retagged(tags))
        requests = requests_of(repo)
    if args.json:
        print_json({"name": name, "id": entry.hex, "tags": sorted(tags), "changed": changed, "requests": requests})
    else:
        render.tagged(name, sorted(tags), changed=changed)
    return EXIT_OK
