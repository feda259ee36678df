"""botocore's data loader, narrowed to S3 and shared by every client of the process.

Why: building an S3 client starts with botocore listing every service directory it ships (~400 of them)
just to confirm that ``s3`` is one, then parses the S3 models.  On an unchanged re-run that is ~0.15 s of
a ~1 s command.  A loader that knows only S3 skips the scan (~0.04 s), and sharing it means a second
client in the same process (a backup from an S3 source into an S3 repository, a warm serverless
container) parses nothing again.
"""

from __future__ import annotations

import threading

from botocore.loaders import Loader


class S3DataLoader(Loader):
    """A loader that knows one service, S3, so that it doesn't scan every service directory to find it."""

    def list_available_services(self, type_name: str) -> list[str]:
        return ["s3"]


_shared: S3DataLoader | None = None
_shared_lock = threading.Lock()


def shared_loader() -> S3DataLoader:
    """The process-wide loader (its caches hold the parsed models)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = S3DataLoader()
        return _shared
