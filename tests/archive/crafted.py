"""Archives with hand-made items, written by the project's own writer (``ArchiveCreator``): what a damaged or
malicious repository could hold, which no file system walk produces."""

from __future__ import annotations

import io

from packvault.archive.create import ArchiveCreator
from packvault.archive.walker import Entry
from packvault.repository.repository import Repository
from tests.support.settings import env_settings

PASSPHRASE = "correct horse battery staple"  # the pv_env fixture's
MTIME = 1_500_000_000_000_000_000
DEFAULT_MODES = {"f": 0o100644, "d": 0o040755, "l": 0o120777, "h": 0o100644, "p": 0o010644}


def item(kind: str, path: bytes | str, **fields) -> dict:
    path = path.encode() if isinstance(path, str) else path
    return {"p": path, "t": kind, "m": DEFAULT_MODES[kind], "u": 0, "g": 0, "mt": MTIME, "at": MTIME, **fields}


def write_archive(location: str, name: str, items: list[tuple[dict, bytes | None]]) -> None:
    """Store ``items`` (each with its file content, None for non-files) as archive ``name``."""
    entries = []
    for fields, data in items:
        if fields["t"] == "f":
            content = data or b""
            fields = {**fields, "s": len(content)}
            entries.append(Entry(fields, b"", opener=lambda content=content: io.BytesIO(content)))
        else:
            entries.append(Entry(dict(fields), b""))
    repo = Repository(location, settings=env_settings())
    repo.open(lambda: PASSPHRASE, lock="shared")
    with repo:
        ArchiveCreator(repo, name, use_files_cache=False).run(entries, paths=["crafted"], cmdline=["test"])
