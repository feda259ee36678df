"""The error hierarchy shared by every layer.

Every failure a user can cause or meet (bad input, a missing bucket, a wrong passphrase, a service that
stays down) is a ``PackvaultError``: the CLI prints its message as one line and exits with its
``exit_code``, never with a traceback.  Anything else is a bug and keeps its traceback.

Storage errors also inherit the matching borgstore error where one exists, so code written against the
borgstore backend contract (``except ObjectNotFound``) and the CLI (``except PackvaultError``) both see them.
"""

from __future__ import annotations

from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendConnectionError,
    BackendDoesNotExist,
    BackendURLInvalid,
    PermissionDenied,
)

EXIT_OK = 0
EXIT_WARNING = 1  # finished, but something was skipped (unreadable file) or check found problems
EXIT_ERROR = 2  # could not do what was asked
EXIT_RESTORE_PENDING = 3  # cold data: restores were requested, the same command finishes the work later
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT


class PackvaultError(Exception):
    """A failure with a message meant for the user; ``hint`` says what to do about it."""

    exit_code = EXIT_ERROR
    hint = ""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def one_line(self) -> str:
        text = str(self)
        return f"{text} ({self.hint})" if self.hint else text


# --- input and configuration -------------------------------------------------------------------------


class UsageError(PackvaultError):
    """The command line or environment is incomplete or contradictory."""


class InvalidRepositoryURL(PackvaultError, BackendURLInvalid):
    hint = "use a local path, file:///abs/path or s3://bucket[/prefix]"


class PassphraseError(PackvaultError):
    """No passphrase could be obtained (no terminal, PACKVAULT_PASSCOMMAND failed, ...)."""


class WrongPassphrase(PackvaultError):
    hint = "check PACKVAULT_PASSPHRASE / PACKVAULT_PASSCOMMAND"


# --- repository ----------------------------------------------------------------------------------------


class RepositoryError(PackvaultError):
    pass


class RepositoryNotFound(RepositoryError, BackendDoesNotExist):
    hint = "create one with 'packvault init'"


class RepositoryAlreadyExists(RepositoryError, BackendAlreadyExists):
    hint = "choose an empty location"


class UnsupportedRepository(RepositoryError):
    """The repository was written by an incompatible format version."""


class ArchiveNotFound(RepositoryError):
    hint = "see 'packvault list REPO'"


class ArchiveExists(RepositoryError):
    hint = "choose another archive name"


class IntegrityError(RepositoryError):
    """Stored data does not authenticate or does not match its checksum: damage or tampering."""


class ObjectMissing(IntegrityError):
    """An object the index or an archive refers to is not in the repository."""


class ConflictError(RepositoryError):
    """A compare-and-swap update lost against a concurrent writer."""

    hint = "another client changed it at the same time; run the command again"


# --- locks -----------------------------------------------------------------------------------------------


class LockError(RepositoryError):
    pass


class LockTimeout(LockError):
    hint = (
        "wait for the other operation or raise --lock-wait; locks of dead processes on this machine and locks "
        "not refreshed for 15 min are removed by themselves; if its holder is certainly gone, "
        "'packvault break-lock --force'"
    )


class LockLost(LockError):
    hint = "someone broke this operation's lock; run it again"


# --- storage ---------------------------------------------------------------------------------------------


class StorageError(PackvaultError):
    """The object store failed in a way retries could not fix."""


class BucketNotFound(StorageError, BackendDoesNotExist):
    hint = "create the bucket first (see terraform/) or check the name and region"


class AccessDenied(StorageError, PermissionDenied):
    hint = "check AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, ...) and the bucket policy"


class NoCredentials(StorageError, PermissionDenied):
    hint = "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"


class CredentialsUnavailable(NoCredentials):
    """Credentials are configured but could not be had from what issues them (STS for an assumed role or web
    identity, SSO, a ``credential_process``): nothing was asked of S3 yet."""

    hint = (
        "check how the profile gets its credentials (role_arn and source_profile, credential_process, SSO) or "
        "AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, and that STS is reachable"
    )


class EndpointUnreachable(StorageError, BackendConnectionError):
    hint = "check the endpoint URL and the network"


class ColdObject(StorageError):
    """An object sits in a storage class (GLACIER, DEEP_ARCHIVE) that must be restored before it is read."""

    hint = "its data packs are in cold storage; extract restores them (--restore-tier, --restore-days, --wait)"


class RestorePending(PackvaultError):
    """Restores of cold data packs were requested and are not finished: run the same command again later."""

    exit_code = EXIT_RESTORE_PENDING
    hint = "restores take minutes (expedited) to hours (standard, bulk); --wait polls until they are done"


class ServiceUnavailable(StorageError, BackendConnectionError):
    """Retries were exhausted: the service kept failing (5xx, throttling, timeouts)."""

    hint = "the service kept failing; try again later"


class StorageFull(StorageError):
    hint = "free some space or use another location"


class RepositoryWriteError(StorageError):
    """Writing to the repository (or to the spool a pack is prepared in) failed: the run cannot go on.

    Kept apart from the ``OSError`` of a source file, which is only a warning: a full repository disk must
    stop a backup at once, not be reported as thousands of unreadable source files."""

    hint = "fix the cause and run the command again; what was stored so far is reused"
