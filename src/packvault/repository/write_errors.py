"""What a failed write into a repository is reported as: one place for the pack writer, the backup's opening
and anything else that writes, so that a full disk reads the same wherever it is met."""

from __future__ import annotations

import errno

from borgstore.backends.errors import BackendError

from ..errors import RepositoryWriteError, StorageError, StorageFull


def write_failure(exc: BaseException, where: str, doing: str) -> BaseException:
    """The error to raise for a failed write: one line that says where (``where``), during what, and why.

    ``OSError`` (ENOSPC, EDQUOT, EROFS, EIO, ...) and borgstore backend errors become
    ``StorageFull``/``RepositoryWriteError``; storage errors that outlived the retries (S3) keep their class
    and get the place in their message; other Packvault errors (a lost lock) say enough already, and
    anything else is a bug and keeps its traceback.
    """
    if isinstance(exc, RepositoryWriteError | StorageFull) or not isinstance(
        exc, OSError | BackendError | StorageError
    ):
        return exc
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFull(f"{where} ({doing}): {cause}")
        hint = (
            "the file system is mounted read-only; remount it writable or use another location"
            if exc.errno == errno.EROFS
            else None
        )
        return RepositoryWriteError(f"{where} ({doing}): {cause}", hint=hint)
    message = f"{where} ({doing}): {exc}"
    if isinstance(exc, StorageError):
        return type(exc)(message, hint=exc.hint)  # same class (ServiceUnavailable, ...), named place
    return RepositoryWriteError(message)
