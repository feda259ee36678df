"""``REPO::ARCHIVE`` arguments: the one parser of repository locations (``early_unlock.py`` uses it too, before
the rest of the CLI is loaded, so this module imports nothing heavy)."""

from __future__ import annotations

import os

from ..errors import UsageError
from .output import escape_name, has_control_characters


def repository_part(text: str | None) -> str:
    """The repository of ``REPO::ARCHIVE`` (or of ``REPO``); PACKVAULT_REPO when the argument has none."""
    text = text or ""
    repo = text.rsplit("::", 1)[0] if "::" in text else text
    return repo or os.environ.get("PACKVAULT_REPO", "")


def split_location(text: str | None, *, need_archive: bool = False) -> tuple[str, str | None]:
    """``REPO::ARCHIVE`` -> (repo, archive); the repo part may come from PACKVAULT_REPO."""
    text = text or ""
    repo, archive = repository_part(text), None
    if "::" in text:
        archive = text.rsplit("::", 1)[1] or None
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
