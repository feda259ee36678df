"""The Repository API: the only layer that touches the store.

Upper layers see chunks, objects and archive entries; they never see store names.  ``Repository`` is a thin
facade over named parts, one job each, which share its state (the store, the config, the key, the lock):

- ``keyring.py``: the key blob(s), unlocking, the config with its checksum, copy and MAC;
- ``packs.py``: pack names, storing packs, reading ranges and streams, copy-forward and deletion;
- ``index_store.py``: the chunk index from its fragments and the local cache, the epoch, ``prove_unchanged``;
- ``catalogue.py``: archive entries, name claims, soft delete/undelete, tombstones, purge.

This module keeps the lifecycle (create, open, lock, close) and the sealed small objects the parts are made
of.  Pack reads and writes go to the (thread-safe) backend directly from worker threads; everything else
goes through ``Store``, which serializes its calls.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace

from borgstore.backends.errors import BackendAlreadyExists, BackendDoesNotExist, PermissionDenied
from borgstore.constants import DEL_SUFFIX

from ..chunking.chunker import Chunker
from ..chunking.compression import CompressionSpec
from ..crypto.aead import CIPHER_NAMES
from ..crypto.kdf import Passphrase
from ..crypto.keys import KeyMaterial, new_key_material, seal_key, write_key_file
from ..errors import (
    NoCredentials,
    RepositoryAlreadyExists,
    RepositoryError,
    RepositoryNotFound,
    StorageError,
    UsageError,
)
from ..settings import Settings
from ..storage import layout
from ..storage.store import Store, backend_of, load_in_order, store_beside
from ..storage.url import store_from_location
from .cache import RepositoryCache
from .catalogue import ArchiveCatalogue, ArchiveEntry
from .config import DEFAULT_PACK_SIZE, EPOCH_NAME, MAX_PACK_SIZE, MIN_PACK_SIZE, RepoConfig
from .index import ChunkIndex
from .index_store import IndexStore
from .keyring import Keyring
from .metapacks import MetaPackCache
from .object_lock import ObjectLockState
from .objects import TYPE_LOCK, ObjectCodec
from .packs import PackStore, PackStream, content_name, defrag_pack_name, pack_missing, pack_name_matches
from .sealing import SealingKit

__all__ = [
    "ArchiveEntry",
    "PackStream",
    "Repository",
    "content_name",
    "defrag_pack_name",
    "pack_missing",
    "pack_name_matches",
]

PassphraseProvider = Callable[[], Passphrase | str]


class Repository(Keyring, PackStore, IndexStore, ArchiveCatalogue, ObjectLockState):
    """One repository, opened: the parts (base classes) are its named jobs; the state they share (store,
    config, key, codec, lock, loaded index) is set here and nowhere else, so every part sees the same lock
    and the same key.  Callers use the methods, never ``store``."""

    def __init__(self, location: str, *, settings: Settings, s3_options: dict[str, str] | None = None):
        """``settings`` come from the edge (``Settings.from_environ`` in the CLI and the scheduled job)."""
        self.location = location
        self.settings = settings
        self.s3_options = s3_options or {}
        # the cache directory keeps what the storage layer learnt about this location (S3: conditional writes)
        self.store: Store = store_from_location(
            location, self.s3_options, cache_dir=settings.cache_dir, settings=settings.storage
        )
        self.config: RepoConfig | None = None
        self.key: KeyMaterial | None = None
        self.codec: ObjectCodec | None = None
        self._index: ChunkIndex | None = None
        self._index_epoch = b""
        self._index_fragments: list[str] | None = None  # the fragments the loaded index is made of
        self.damaged_fragments: list[str] = []  # fragments the loaded index had to skip
        self._opened = False
        self.lock_manager = None
        self._config_raw = b""
        self.tolerate_config_damage = False  # check opens a repository whose config does not authenticate
        self.lock_refused: str | None = None  # why a reading command runs without a lock (acquire_lock)
        self._meta_packs: MetaPackCache | None = None

    @property
    def is_remote(self) -> bool:
        return "://" in self.location and not self.location.startswith("file://")

    # --- lifecycle --------------------------------------------------------------------------------------

    def create(
        self,
        passphrase: Passphrase | str,
        *,
        encryption: str = "repokey",
        pack_size: int = DEFAULT_PACK_SIZE,
        compression: str = "auto,zstd,3",
        cipher: str = "aes-256-gcm",
        share_ids_from: Repository | None = None,
        object_lock: str | None = None,
        retention_seconds: int = 0,
    ) -> RepoConfig:
        """Create the repository.  ``share_ids_from``: an opened repository whose chunk-id key, chunker seed
        and chunker parameters the new one takes (``init --copy-crypt-from``), so chunks have the same ids in
        both.  ``object_lock`` (GOVERNANCE/COMPLIANCE) with ``retention_seconds``, or the same given as location
        options, makes every object written from the key on carry that S3 Object Lock retention, and is
        recorded in the config for every later client; so are the backend's storage classes (data packs and
        the hot rest), which decide for every client that opens the repository (``RepoConfig``)."""
        if encryption not in ("repokey", "keyfile"):
            raise UsageError(f"unknown encryption mode {encryption!r}", hint="use repokey or keyfile")
        if cipher not in CIPHER_NAMES:
            raise UsageError(f"unknown cipher {cipher!r}", hint=f"use one of {', '.join(CIPHER_NAMES)}")
        if not MIN_PACK_SIZE <= pack_size <= MAX_PACK_SIZE:
            raise UsageError(f"pack size {pack_size} out of range", hint="use between 64K and 1G")
        CompressionSpec.parse(compression)
        if object_lock:  # before anything is created: a backend without Object Lock refuses here
            self.store.backend.set_object_lock(object_lock, retention_seconds)
        try:
            self.store.create()
        except StorageError:
            raise  # e.g. BucketNotFound: its own message is clearer
        except BackendAlreadyExists:
            raise RepositoryAlreadyExists(f"{self.location} is not empty") from None
        except BackendDoesNotExist:
            raise RepositoryNotFound(f"cannot create a repository at {self.location}") from None
        self.store.open()
        self._opened = True
        object_lock, retention_seconds = self.store.backend.object_lock_policy()
        data_storage_class, hot_storage_class = self.store.backend.storage_classes()
        repository_id = os.urandom(32)
        source_key = share_ids_from.key if share_ids_from is not None else None
        material = new_key_material(repository_id, CIPHER_NAMES[cipher], share_ids_from=source_key)
        note = self.new_key_note()
        blob = seal_key(material, passphrase, memory_kib=self.settings.kdf_memory_kib, note=note)
        if encryption == "repokey":
            self.store.store(f"{layout.KEYS}/{content_name(blob)}", blob)
        else:
            write_key_file(self.settings.key_file_for(repository_id), blob)
        self.store.store(EPOCH_NAME, os.urandom(16))
        config = RepoConfig(
            repository_id=repository_id,
            encryption=encryption,
            cipher=cipher,
            pack_size=pack_size,
            compression=compression,
            object_lock=object_lock,
            retention_seconds=retention_seconds,
            data_storage_class=data_storage_class,
            hot_storage_class=hot_storage_class,
        )
        if share_ids_from is not None:
            assert share_ids_from.config is not None
            config = replace(config, chunker=share_ids_from.config.chunker)
        self.write_config(config, material)
        self.config = config
        self._set_key(material)
        # as an opening would: the first command after init on this machine reads that key without listing
        # keys/, and no stored MAC for the config it has just written
        if encryption == "repokey":
            self._remember_key_blob(content_name(blob))
        self._remember_config_mac(material.config_mac(self._config_raw))
        return config

    def open(self, passphrase: PassphraseProvider | None = None, *, lock: str | None = "shared") -> None:
        """Open the repository; with a passphrase provider also unlock the key and take the lock.

        The store is opened without proving that it exists (on S3 a HEAD of the bucket): reading the config,
        the first thing done here, proves it, and fails the same way for a missing bucket."""
        backend_of(self.store).skip_open_check()
        try:
            self.store.open()
        except StorageError:
            raise  # e.g. BucketNotFound: "create the bucket", not "run init"
        except BackendDoesNotExist:
            raise RepositoryNotFound(f"no repository at {self.location}") from None
        self._opened = True
        if passphrase is not None and self.is_remote:
            self.prefetch_remembered_key()  # beside the config's read
        self.config = self._load_config()
        if self.config.object_lock:
            self.store.backend.set_object_lock(self.config.object_lock, self.config.retention_seconds)
        if self.config.data_storage_class or self.config.hot_storage_class:
            self.store.backend.set_storage_classes(self.config.data_storage_class, self.config.hot_storage_class)
        if passphrase is not None:
            self.unlock(passphrase())
            if lock:
                self.acquire_lock(exclusive=(lock == "exclusive"))

    def new_lock_manager(self):
        """A LockManager for this repository whose lock records (probes included) are sealed with its key:
        a record that does not unseal is an unknown holder to everyone else."""
        from .locks import LockManager

        def seal(data: bytes) -> bytes:
            return self.codec.seal(os.urandom(32), TYPE_LOCK, data, compress=False)

        def unseal(data: bytes) -> bytes:
            return self.codec.open(data)[2]

        kwargs = {}
        if self.settings.lock_stale_seconds is not None:
            kwargs["stale_seconds"] = self.settings.lock_stale_seconds
        if self.settings.lock_refresh_seconds is not None:
            kwargs["refresh_seconds"] = self.settings.lock_refresh_seconds
        return LockManager(self.store, seal=seal, unseal=unseal, **kwargs)

    def acquire_lock(self, *, exclusive: bool, wait: float | None = None, if_writable: bool = False) -> bool:
        """Take the repository lock; True when it is held.

        ``if_writable`` is for commands that only read: when the store refuses the lock object itself (a
        read-only mount or directory, a bucket policy that denies PUT) the repository is read without a
        lock and False is returned, so the caller can say so.  ``self.lock_refused`` then holds the reason.
        """
        self.lock_manager = self.new_lock_manager()
        if wait is None:
            wait = self.settings.lock_wait
        try:
            self.lock_manager.acquire(exclusive=exclusive, wait=wait)
        except (OSError, PermissionDenied) as exc:
            if not _write_refused(exc):
                raise
            self.lock_manager = None
            if if_writable:
                self.lock_refused = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                return False
            if isinstance(exc, OSError):  # a local directory: one line, not an OSError traceback
                remount = "remount it read-write; " if exc.errno == errno.EROFS else ""
                raise RepositoryError(
                    f"cannot write to the repository at {self.location}: {exc.strerror}",
                    hint=f"{remount}this command changes the repository; reading commands work without writing",
                ) from None
            raise
        return True

    def check_lock(self, *, verify: bool = False) -> None:
        """Raise LockLost if our lock is lost; ``verify`` also asks the store whether it still exists."""
        if self.lock_manager is not None:
            self.lock_manager.check(verify=verify)

    def close(self) -> None:
        if self.lock_manager is not None:
            try:
                self.lock_manager.release()
            finally:
                self.lock_manager = None
        if self._opened:
            self._opened = False
            self.drop_prefetched_key()
            self.store.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def list_namespace_split(self, namespace: str) -> tuple[list, list]:
        """(live, soft-deleted) names of a namespace from one listing (``list_namespace`` of each, in one)."""
        live, gone = [], []
        for info in backend_of(self.store).list_tree(namespace):
            if info.name.endswith(DEL_SUFFIX):
                gone.append(info._replace(name=info.name.removesuffix(DEL_SUFFIX)))
            else:
                live.append(info)
        return live, gone

    def list_namespace(self, namespace: str, *, deleted: bool = False):
        """List a namespace (soft-deleted names only, with ``deleted``); a namespace nothing was written to
        yet is empty (not an error).  The backend lists the whole tree (``list_tree``: on S3 one LIST per
        1000 objects rather than one per nesting directory)."""
        for info in backend_of(self.store).list_tree(namespace):
            soft_deleted = info.name.endswith(DEL_SUFFIX)
            if deleted and soft_deleted:
                yield info._replace(name=info.name.removesuffix(DEL_SUFFIX))
            elif not deleted and not soft_deleted:
                yield info

    # --- helpers for the layers above ---------------------------------------------------------------------

    @property
    def cache(self) -> RepositoryCache:
        assert self.config is not None
        return RepositoryCache(self.settings.cache_dir, self.config.repository_id)

    def chunker(self) -> Chunker:
        assert self.config is not None and self.key is not None
        return Chunker(self.config.chunker, self.key.chunker_seed)

    def chunk_id(self, data: bytes | memoryview) -> bytes:
        assert self.key is not None
        return self.key.chunk_id_hasher()(data)

    def sealing_kit(self) -> SealingKit:
        """What a reader process needs to cut, hash and seal as this repository does (see ``sealing.py``)."""
        assert self.config is not None and self.key is not None
        return SealingKit(self.key, self.config.chunker, self.config.compression)

    def request_stats(self) -> dict[str, int]:
        return dict(backend_of(self.store).request_stats())

    def meta_pack_cache(self) -> MetaPackCache | None:
        """The local cache of this repository's metadata packs (``metapacks.py``): for a remote repository,
        once the key is open; None otherwise (a local repository's packs are local already)."""
        if not self.is_remote or self.key is None or self.config is None:
            return None
        if self._meta_packs is None:
            self._meta_packs = MetaPackCache(self)
        return self._meta_packs

    # --- sealed small objects ---------------------------------------------------------------------------

    def put_sealed(self, namespace: str, obj_type: int, plaintext: bytes) -> str:
        """Seal and store a small object under its content name in ``namespace``; returns the name."""
        sealed = self.codec.seal(os.urandom(32), obj_type, plaintext)
        name = content_name(sealed)
        store_beside(self.store, f"{namespace}/{name}", sealed)
        return name

    def load_raw(self, namespace: str, name: str, *, deleted: bool = False) -> bytes:
        """A small object (``keys/``, ``index/``, ``archives/``) as stored, unopened: for the checks that need
        no key (structure, checksums, content name)."""
        return self.store.load(layout.name(namespace, name), deleted=deleted)

    def load_raw_ahead(self, namespace: str, names: list[str]) -> Iterator[tuple[str, Future]]:
        """``load_raw`` of each of ``names``, in order, read ahead (``load_in_order``): (name, finished future
        of its bytes)."""
        with contextlib.closing(load_in_order(self.store, [layout.name(namespace, name) for name in names])) as loads:
            for name, (_, loaded) in zip(names, loads, strict=True):
                yield name, loaded

    def get_sealed(self, namespace: str, name: str, *, deleted: bool = False) -> bytes:
        return self.codec.open(self.store.load(f"{namespace}/{name}", deleted=deleted))[2]


def _write_refused(exc: BaseException) -> bool:
    """True when a write failed because the store is read-only or denies writing, not because it is broken."""
    if isinstance(exc, NoCredentials):
        return False  # nothing can be read either; say that instead
    if isinstance(exc, PermissionDenied):
        return True  # AccessDenied from S3 (403), or borgstore's permission settings
    return isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)
