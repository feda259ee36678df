"""``S3Backend``: the borgstore backend over one bucket (and prefix), assembled from the parts of this package.

This class holds the lifecycle (create, destroy, open, close) and the borgstore contract's checks (open,
valid names), and hands every call to the part whose one job it is: ``reads.py``, ``writes.py``,
``defrag.py``, ``listing.py``, over one ``bucket.S3Bucket`` (client, retries, counter).

- **Directories do not exist.**  A borgstore "directory" is a key prefix; ``mkdir``/``rmdir`` do nothing and
  no marker objects are written, so ``create`` costs one LIST request and accepts an empty prefix (twice,
  too, like the file backend accepts an empty directory), ``open`` cannot tell a prefix never created from
  one created and still empty, and listing a namespace nothing was written to yields nothing (instead of
  raising).  ``destroy`` of a prefix holding nothing raises ``BackendDoesNotExist``.  ``info`` answers for
  objects only.
- **Parallelism lives here**, because ``Store`` serializes calls: multipart parts, gather ranges and defrag
  copies run in a small thread pool over one shared (thread-safe) botocore client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime

import botocore.exceptions as bex
from borgstore.backends._base import ItemInfo, StoreValue, validate_name, validate_sources, validate_value
from borgstore.backends.errors import BackendMustBeOpen, BackendMustNotBeOpen

from ...errors import IntegrityError, RepositoryAlreadyExists, RepositoryNotFound, StorageError, UsageError
from ..backend import PackvaultBackend
from ..layout import WriteMode, WritePolicy
from ..payload import BufferPayload, Payload
from ..settings import StorageSettings
from ..spool import SpoolFile
from .bucket import EtagMemory, ListedSizes, S3Bucket
from .config import S3Settings, parse_s3_url
from .defrag import S3Defrag
from .listing import PAGE_SIZE, class_totals, level_entries, sorted_level, tree_entries
from .probe import ConditionalWriteSupport
from .reads import S3Reads
from .restore import NEEDS_RESTORE, restore, restore_status
from .stream import RangeStream
from .writes import S3Writes


def open_s3_backend(
    url: str,
    options: dict[str, str],
    *,
    policy: WritePolicy | None = None,
    cache_dir: str | os.PathLike | None = None,
    settings: StorageSettings | None = None,
) -> S3Backend:
    """The (not yet opened) backend for ``s3://BUCKET[/PREFIX][?...]``; ``options`` win over the query.

    ``policy``: how each namespace is written (default: everything overwritten, borgstore's plain contract).
    ``cache_dir``: a local directory where the result of the conditional-write probe of this location is
    kept; without one, no probe is made and the service is trusted until it answers 501.
    ``settings``: defaults from the environment, below the options and the query (``storage/settings.py``).
    """
    return S3Backend(parse_s3_url(url, options, settings=settings), policy=policy, cache_dir=cache_dir)


class S3Backend(PackvaultBackend):
    precreate_dirs = False  # mkdir is a no-op: pre-creating 256 nesting dirs would only waste calls
    streams_ranges = True  # a range is one GET read object by object (stream.py)

    def __init__(
        self,
        settings: S3Settings,
        *,
        policy: WritePolicy | None = None,
        cache_dir: str | os.PathLike | None = None,
    ):
        self.settings = settings
        self.policy = policy if policy is not None else WritePolicy()
        self.s3 = S3Bucket(settings, cache_dir)
        self.bucket = settings.bucket
        self.client = self.s3.client
        self.endpoint = self.s3.endpoint
        self.counter = self.s3.counter
        self.opened = False
        self._check_on_open = True  # ``skip_open_check``
        self.list_page_size = PAGE_SIZE
        self._pool: ThreadPoolExecutor | None = None
        self.conditions = ConditionalWriteSupport(self.s3, cache_dir)
        etags = EtagMemory(self.policy)
        self.sizes = ListedSizes(self.policy)
        self.reads = S3Reads(self.s3, etags, lambda: self.pool, self.sizes)
        self.writes = S3Writes(self.s3, self.policy, self.conditions, etags, lambda: self.pool, self.sizes)
        self.copies = S3Defrag(self.reads, self.writes)

    @property
    def data_storage_class(self) -> str | None:
        return self.settings.data_storage_class

    @property
    def cold_data(self) -> bool:
        return self.settings.data_storage_class in NEEDS_RESTORE

    def __repr__(self) -> str:
        return f"S3Backend({self.settings.location()!r}, endpoint={self.endpoint!r})"

    def _key(self, name: str) -> str:
        return self.s3.key(name)

    def _check_open(self) -> None:
        if not self.opened:
            raise BackendMustBeOpen()

    def _checked(self, name: str) -> str:
        self._check_open()
        validate_name(name)
        return name

    # --- accounting ---------------------------------------------------------------------------------------

    def request_stats(self) -> dict[str, int]:
        return self.counter.snapshot()

    def reset_request_stats(self) -> None:
        self.counter.reset()

    # --- lifecycle ------------------------------------------------------------------------------------------

    def create(self) -> None:
        """One LIST request: refuse a prefix holding anything.  Nothing is written (no directory markers).

        The remembered conditional-write probe of this location is dropped: the first conditional write
        after init probes the service again.
        """
        if self.opened:
            raise BackendMustNotBeOpen()
        s3 = self.s3
        response = s3.request(
            f"LIST {self.settings.location()}",
            lambda: s3.client.list_objects_v2(Bucket=s3.name, Prefix=s3.base, MaxKeys=1),
        )
        if response.get("KeyCount", 0) > 0:
            raise RepositoryAlreadyExists(f"{self.settings.location()} is not empty")
        self.conditions.forget()

    def destroy(self) -> None:
        """Delete every object (and abort every incomplete upload) under the prefix; a prefix holding
        nothing has nothing to destroy (``BackendDoesNotExist``, like the file backend's missing directory)."""
        if self.opened:
            raise BackendMustNotBeOpen()
        s3 = self.s3
        s3.head_bucket()
        found = 0
        for page in s3.pages(s3.base, f"LIST {self.settings.location()}", page_size=self.list_page_size):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if not keys:
                continue
            found += len(keys)
            result = s3.request(
                f"DELETE {len(keys)} objects",
                lambda keys=keys: s3.client.delete_objects(Bucket=s3.name, Delete={"Objects": keys, "Quiet": True}),
            )
            if result.get("Errors"):
                first = result["Errors"][0]
                raise StorageError(f"could not delete {first.get('Key')}: {first.get('Code')} {first.get('Message')}")
        uploads = s3.request(
            "ListMultipartUploads",
            lambda: s3.client.list_multipart_uploads(Bucket=s3.name, Prefix=s3.base),
        )
        for upload in uploads.get("Uploads", []):
            found += 1
            s3.request(
                f"AbortMultipartUpload {upload['Key']}",
                lambda u=upload: s3.client.abort_multipart_upload(Bucket=s3.name, Key=u["Key"], UploadId=u["UploadId"]),
            )
        if not found:
            raise RepositoryNotFound(f"nothing to destroy at {self.settings.location()}")

    def open(self) -> None:
        """One HEAD request: the bucket must exist and be accessible (missing repository: see module doc);
        none after ``skip_open_check``, when the caller's first request proves it (every request maps a
        missing bucket to ``BucketNotFound``, an access refusal to ``AccessDenied``)."""
        if self.opened:
            raise BackendMustNotBeOpen()
        if self._check_on_open:
            self.s3.head_bucket()
        self._check_on_open = True  # for the next open: the skip was asked for one opening
        self.conditions.recall()
        self._pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="packvault-s3")
        self.opened = True

    def skip_open_check(self) -> None:
        self._check_on_open = False

    def close(self) -> None:
        if not self.opened:
            raise BackendMustBeOpen()
        self.opened = False
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    @property
    def pool(self) -> ThreadPoolExecutor:
        assert self._pool is not None
        return self._pool

    def mkdir(self, name: str) -> None:
        """Nothing to do: directories are key prefixes."""
        self._checked(name)

    def rmdir(self, name: str) -> None:
        self._checked(name)

    # --- reading --------------------------------------------------------------------------------------------

    def info(self, name: str) -> ItemInfo:
        return self.reads.info(self._checked(name))

    def restore_status(self, name: str) -> tuple[str, int]:
        return restore_status(self.s3, self._checked(name))

    def restore(self, name: str, *, days: int, tier: str) -> str:
        return restore(self.s3, self._checked(name), days=days, tier=tier)

    def load(self, name: str, *, size=None, offset=0) -> bytes:
        return self.reads.load(self._checked(name), size=size, offset=offset)

    def open_range(self, name: str, offset: int, size: int) -> RangeStream:
        """Bytes [offset, offset + size) of ``name`` as a stream (one GET, resumed if it breaks)."""
        return self.reads.open_range(self._checked(name), offset, size)

    def gather(self, sources) -> bytes:
        self._check_open()
        return self.reads.gather(validate_sources(sources))

    # --- listing --------------------------------------------------------------------------------------------

    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        """Every object below ``name``, at any depth, in key order, named by their last path component.

        borgstore's ``Store.list`` asks ``list`` once per nesting directory: one LIST per used prefix of
        ``packs/data/``.  Without a delimiter S3 returns the whole tree, 1000 keys per LIST.  The sizes of
        create-only objects listed are kept (``ListedSizes``): a server-side copy from them needs no HEAD.
        """
        prefix = self._key(self._checked(name)) + "/"
        pages = self.s3.pages(prefix, f"LIST {prefix} (tree)", page_size=self.list_page_size)
        return tree_entries(pages, prefix, seen=lambda path, size: self.sizes.remember(f"{name}/{path}", size))

    def list_tree_paths(self, name: str) -> Iterator[tuple[str, ItemInfo]]:
        """``list_tree`` with each object's path below ``name``: the same LIST requests."""
        prefix = self._key(self._checked(name)) + "/"
        pages = self.s3.pages(prefix, f"LIST {prefix} (tree)", page_size=self.list_page_size)
        return tree_entries(
            pages, prefix, seen=lambda path, size: self.sizes.remember(f"{name}/{path}", size), with_paths=True
        )

    def bytes_by_class(self, name: str) -> dict[str, int]:
        """The tree listing of ``list_tree`` (1000 keys per LIST), summed by each object's storage class."""
        prefix = self._key(self._checked(name)) + "/"
        return class_totals(self.s3.pages(prefix, f"LIST {prefix} (classes)", page_size=self.list_page_size), prefix)

    def list(self, name: str) -> Iterator[ItemInfo]:
        """One level below ``name``, sorted by name across all pages (``listing.py``).

        A namespace nothing was written to lists as empty: without directory markers it cannot be told
        from one whose objects were all deleted (docs/s3-backend.md).
        """
        self._check_open()
        if name:
            validate_name(name)
        prefix = self._key(name) + "/" if name else self.s3.base
        answers = self.s3.pages(prefix, f"LIST {prefix}", page_size=self.list_page_size, delimiter=True)
        return sorted_level(level_entries(answers, prefix))

    # --- writing --------------------------------------------------------------------------------------------

    def store(self, name: str, value: StoreValue) -> None:
        self.writes.store(self._checked(name), BufferPayload(validate_value(value)))

    def store_payload(self, name: str, payload: Payload) -> None:
        """``store`` for content that need not be in memory, e.g. a pack spooled to a file (``FilePayload``).

        Same write rules as ``store`` (create-only, compare-and-swap, convergent retries); the payload's
        ``md5`` is trusted as the MD5 of its bytes (the spool computed it while writing them), and the
        bytes are read in small blocks, once per attempt.  The payload must stay readable until this returns.
        """
        self.writes.store(self._checked(name), payload)

    def store_spool(self, name: str, spool: SpoolFile) -> None:
        """Upload a spooled pack from its file, in small blocks (``store_payload``)."""
        self.store_payload(name, spool.payload())

    def store_new(self, name: str, value: bytes) -> bool:
        """A create-only write (``If-None-Match: *``) whatever the namespace's policy: nothing is stored when
        different content is there (False); the same bytes count as created (a retried write)."""
        try:
            self.writes.store_create_only(self._checked(name), BufferPayload(value), WriteMode.CREATE_ONLY)
        except bex.ClientError as exc:
            self.writes.refused(name, exc)
            raise
        except IntegrityError:
            return False
        return True

    def set_object_lock(self, mode: str, retention_seconds: int) -> None:
        """Apply the repository's recorded Object Lock policy.  A mode given on the URL must agree with it (a
        client cannot downgrade COMPLIANCE to GOVERNANCE); a retention given there wins for this client's
        writes, so one writer may retain longer than the repository's default."""
        current = self.settings
        if current.object_lock and current.object_lock != mode:
            raise UsageError(
                f"object_lock={current.object_lock.lower()} disagrees with the repository's {mode.lower()} lock",
                hint="drop the object_lock option; the repository's config decides the mode",
            )
        seconds = current.retention_seconds if current.object_lock else retention_seconds
        self.settings = replace(current, object_lock=mode, retention_seconds=seconds)
        self.s3.settings = self.settings

    def object_lock_policy(self) -> tuple[str | None, int]:
        return self.settings.object_lock, self.settings.retention_seconds

    def storage_classes(self) -> tuple[str | None, str | None]:
        return self.settings.data_storage_class or "STANDARD", self.settings.hot_storage_class or "STANDARD"

    def set_storage_classes(self, data: str | None, hot: str | None) -> None:
        """Apply the storage classes the repository recorded at init.  The record decides: a class given in
        the URL (or as an option) that differs from it is refused, since a client writing data packs to a
        class the repository does not announce would leave other clients unaware that they are cold (or
        would bill minimum storage durations nobody expects).  A recorded STANDARD is S3's default and is not
        sent with each write unless the URL names it too."""
        current = self.settings
        for key, recorded, given in (
            ("storage_class", data, current.data_storage_class),
            ("hot_storage_class", hot, current.hot_storage_class),
        ):
            if recorded and given and given != recorded:
                raise UsageError(
                    f"{key}={given} disagrees with the repository's {recorded} (recorded at init)",
                    hint=f"drop {key} from the location and its options; the repository's config decides",
                )

        def effective(recorded: str | None, given: str | None) -> str | None:
            return given if not recorded or recorded == "STANDARD" else recorded

        self.settings = replace(
            current,
            data_storage_class=effective(data, current.data_storage_class),
            hot_storage_class=effective(hot, current.hot_storage_class),
        )
        self.s3.settings = self.settings

    def retained_until(self, name: str) -> datetime | None:
        """One HEAD: the retain-until date of the current version of ``name`` (None: none, or no object)."""
        head = self.s3.head(self._checked(name))
        return None if head is None else head.get("ObjectLockRetainUntilDate")

    def retain_until(self, name: str, until: datetime) -> None:
        """One PutObjectRetention with the repository's mode: S3 lets a retention be extended, never
        shortened in COMPLIANCE mode (nor in GOVERNANCE without the bypass permission)."""
        mode = self.settings.object_lock
        if not mode:
            raise UsageError("this repository has no Object Lock; there is no retention to extend")
        self.s3.put_retention(self._key(self._checked(name)), mode, until)

    def delete(self, name: str) -> None:
        self.writes.delete(self._checked(name))

    def discard(self, name: str) -> bool:
        """DELETE without asking first whether the object exists (one request, not two), for callers that
        don't care: releasing a lock, whose object is ours and gone either way afterwards."""
        self.writes.discard(self._checked(name))
        return True

    def discard_many(self, names: Sequence[str]) -> None:
        """DeleteObjects, ``DELETE_BATCH`` keys per POST, in quiet mode (S3 answers only the keys it could not
        delete); a key S3 refused raises what a refused DELETE of it raises (``writes.discard_many``)."""
        self._check_open()
        for name in names:
            validate_name(name)
        self.writes.discard_many(names)

    def move(self, curr_name: str, new_name: str) -> None:
        self._check_open()
        validate_name(curr_name)
        validate_name(new_name)
        self.writes.move(curr_name, new_name)

    def defrag(self, sources, *, target=None, algorithm=None, namespace=None, levels=0) -> str:
        """A new object from ranges of existing ones, copied inside S3 where it pays (``defrag.py``)."""
        self._check_open()
        return self.copies.defrag(
            validate_sources(sources), target=target, algorithm=algorithm, namespace=namespace, levels=levels
        )
