"""The Repository API: open/create, key, index, archive entries; the only layer that touches the store.

Upper layers see chunks, objects and archive entries; they never see store names.  Pack objects are
immutable and content-named, so reads and writes of packs go to the (thread-safe) backend directly from
worker threads; everything else goes through ``Store``, which serializes its calls.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import blake3
import msgpack
from borgstore.backends.errors import (
    BackendAlreadyExists,
    BackendDoesNotExist,
    ObjectNotFound,
    PermissionDenied,
    ReadRangeError,
)
from borgstore.constants import DEL_SUFFIX

from ..chunking.chunker import Chunker
from ..chunking.compression import CompressionSpec, Compressor
from ..crypto.aead import CIPHER_NAMES
from ..crypto.kdf import Passphrase
from ..crypto.keys import (
    KeyMaterial,
    key_blob_repository_id,
    new_key_material,
    seal_key,
    unseal_key,
    write_key_file,
)
from ..errors import (
    ArchiveExists,
    ArchiveNotFound,
    IntegrityError,
    LockLost,
    NoCredentials,
    ObjectMissing,
    RepositoryAlreadyExists,
    RepositoryError,
    RepositoryNotFound,
    StorageError,
    UsageError,
    WrongPassphrase,
)
from ..settings import Settings
from ..storage import layout, localfs
from ..storage.spool import SpoolFile
from ..storage.store import Store, discard, store_new
from ..storage.url import store_from_location
from .cache import RepositoryCache
from .config import (
    CONFIG_COPY_NAME,
    CONFIG_MAC_NAME,
    CONFIG_NAME,
    DEFAULT_PACK_SIZE,
    EPOCH_NAME,
    MAX_PACK_SIZE,
    MIN_PACK_SIZE,
    RepoConfig,
)
from .index import ChunkIndex, PackTable, new_table
from .objects import TYPE_ARCHIVE_ENTRY, TYPE_INDEX, TYPE_LOCK, ObjectCodec

log = logging.getLogger(__name__)

PassphraseProvider = Callable[[], Passphrase | str]


@dataclass(frozen=True)
class ArchiveEntry:
    """The small record in ``archives/``: enough to list archives without reading their metadata."""

    id: bytes  # id of the archive metadata object (in a metadata pack)
    name: str
    time: str  # ISO 8601 UTC start time
    end: str
    host: str
    user: str
    comment: str = ""
    stats: dict | None = None
    paths: tuple[str, ...] | None = None
    """The paths given to ``create`` (prune's default grouping); None in entries written before they were
    recorded here, whose paths are only in the archive metadata."""

    @property
    def hex(self) -> str:
        return self.id.hex()

    def encode(self) -> bytes:
        record = {
            "id": self.id,
            "name": self.name,
            "time": self.time,
            "end": self.end,
            "host": self.host,
            "user": self.user,
            "comment": self.comment,
            "stats": self.stats or {},
        }
        if self.paths is not None:
            record["paths"] = list(self.paths)
        return msgpack.packb(record)

    @classmethod
    def decode(cls, data: bytes) -> ArchiveEntry:
        d = msgpack.unpackb(data)
        return cls(
            id=d["id"],
            name=d["name"],
            time=d["time"],
            end=d["end"],
            host=d["host"],
            user=d["user"],
            comment=d.get("comment", ""),
            stats=d.get("stats") or {},
            paths=tuple(d["paths"]) if "paths" in d else None,
        )


def content_name(data: bytes | memoryview) -> str:
    """Unkeyed name of stored bytes: a retried write of the same bytes lands on the same key."""
    return blake3.blake3(data).hexdigest()


def defrag_pack_name(objects) -> str:
    """Name of a pack assembled by copy-forward from (object id, stored size) pairs, in pack order.

    A server-side copy never sees the bytes, so the name cannot hash them; it hashes what the pack holds
    instead.  Ids are MACs of the plaintext and every object authenticates its id, so the name is still
    a function of the content, and a retried copy of the same objects converges on the same key.
    """
    h = blake3.blake3(b"packvault-defrag-v1")
    for object_id, size in objects:
        h.update(object_id)
        h.update(size.to_bytes(8, "little"))
    return h.hexdigest()


def pack_name_matches(name: str, buf: bytes | memoryview) -> bool:
    """True if ``name`` is the content name or the copy-forward name of the pack bytes ``buf``."""
    if content_name(buf) == name:
        return True
    from .objects import iter_headers

    try:
        return defrag_pack_name((h.object_id, h.total_size) for _, h in iter_headers(buf)) == name
    except IntegrityError:
        return False


class Repository:
    def __init__(self, location: str, *, settings: Settings, s3_options: dict[str, str] | None = None):
        """``settings`` come from the edge (``Settings.from_environ`` in the CLI and the scheduled job)."""
        self.location = location
        self.settings = settings
        self.s3_options = s3_options or {}
        # the cache directory keeps what the storage layer learnt about this location (S3: conditional writes)
        self.store: Store = store_from_location(location, self.s3_options, cache_dir=settings.cache_dir)
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
    ) -> RepoConfig:
        if encryption not in ("repokey", "keyfile"):
            raise UsageError(f"unknown encryption mode {encryption!r}", hint="use repokey or keyfile")
        if cipher not in CIPHER_NAMES:
            raise UsageError(f"unknown cipher {cipher!r}", hint=f"use one of {', '.join(CIPHER_NAMES)}")
        if not MIN_PACK_SIZE <= pack_size <= MAX_PACK_SIZE:
            raise UsageError(f"pack size {pack_size} out of range", hint="use between 64K and 1G")
        CompressionSpec.parse(compression)
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
        repository_id = os.urandom(32)
        material = new_key_material(repository_id, CIPHER_NAMES[cipher])
        blob = seal_key(material, passphrase, memory_kib=self.settings.kdf_memory_kib)
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
        )
        self.write_config(config, material)
        self.config = config
        self._set_key(material)
        return config

    def write_config(self, config: RepoConfig, material: KeyMaterial) -> None:
        """The MAC and the copy first, the config itself last (its presence marks a complete repository).
        ``config/`` keys are compare-and-swap on S3: a key that exists is read before it is replaced."""
        raw = config.encode()
        for name, value in ((CONFIG_MAC_NAME, material.config_mac(raw)), (CONFIG_COPY_NAME, raw), (CONFIG_NAME, raw)):
            with contextlib.suppress(ObjectNotFound):
                self.store.load(name)
            self.store.store(name, value)
        self._config_raw = raw

    def _load_config(self) -> RepoConfig:
        """The config, verified by its checksum; its copy when the first is damaged (see ``config.py``)."""
        try:
            raw = self.store.load(CONFIG_NAME)
        except ObjectNotFound:
            self.close()
            raise RepositoryNotFound(f"{self.location} is not a Packvault repository") from None
        except PermissionError as exc:
            self.close()
            raise RepositoryError(
                f"cannot read the repository at {self.location}: {exc.strerror}",
                hint="check the permissions of its directory and files, or run as their owner",
            ) from None
        try:
            config = RepoConfig.decode(raw)
            if RepoConfig.has_checksum(raw):
                self._config_raw = raw
                return config
            damage: IntegrityError | None = None
        except IntegrityError as exc:
            config, damage = None, exc
        try:
            copy = self.store.load(CONFIG_COPY_NAME)
            copy_config = RepoConfig.decode(copy) if RepoConfig.has_checksum(copy) else None
        except (ObjectNotFound, IntegrityError):
            copy_config = None
        if copy_config is not None:
            if damage is not None:
                log.warning("%s is damaged (%s); using its copy (run 'packvault check --repair')", CONFIG_NAME, damage)
            self._config_raw = copy
            return copy_config
        if config is None:
            assert damage is not None
            damage.hint = "its copy is damaged or missing too; restore config/repository from a backup of the store"
            raise damage
        self._config_raw = raw  # written before configs had a checksum: repair adds it
        return config

    def config_objects(self) -> dict[str, bytes | None]:
        """The stored config, its copy and its MAC (None where missing), for check and repair."""
        found: dict[str, bytes | None] = {}
        for name in (CONFIG_NAME, CONFIG_COPY_NAME, CONFIG_MAC_NAME):
            try:
                found[name] = self.store.load(name)
            except ObjectNotFound:
                found[name] = None
        return found

    def config_authentic(self) -> bool | None:
        """After unlock: True if the config's MAC verifies, False if it does not, None if it has none yet."""
        assert self.key is not None
        try:
            mac = self.store.load(CONFIG_MAC_NAME)
        except ObjectNotFound:
            return None
        return hmac.compare_digest(mac, self.key.config_mac(self._config_raw))

    def open(self, passphrase: PassphraseProvider | None = None, *, lock: str | None = "shared") -> None:
        """Open the repository; with a passphrase provider also unlock the key and take the lock."""
        try:
            self.store.open()
        except StorageError:
            raise  # e.g. BucketNotFound: "create the bucket", not "run init"
        except BackendDoesNotExist:
            raise RepositoryNotFound(f"no repository at {self.location}") from None
        self._opened = True
        self.config = self._load_config()
        if passphrase is not None:
            self.unlock(passphrase())
            if lock:
                self.acquire_lock(exclusive=(lock == "exclusive"))

    def _set_key(self, material: KeyMaterial) -> None:
        self.key = material
        spec = CompressionSpec.parse(self.config.compression) if self.config else CompressionSpec()
        self.codec = ObjectCodec(material.new_session(), Compressor(spec))

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

    def prove_unchanged(self) -> None:
        """Prove, against the store, that what this writer relies on still holds: its lock exists, and no
        compact or repair ran since it loaded the index (the epoch it loaded with is still the store's).

        Called before a writer makes anything reference what it deduplicated against the index (an index
        fragment, the ``archives/`` entry): a writer whose lock was broken, or that slept through its
        lock's expiry, may have had those chunks deleted under it, and must not commit."""
        self.check_lock(verify=True)
        if self._index is not None and self._index_fragments is not None and self.epoch() != self._index_epoch:
            raise LockLost(
                "a compact or repair changed the repository while this run held no valid lock; nothing was committed",
                hint="run it again: what was already uploaded is reused",
            )

    def close(self) -> None:
        if self.lock_manager is not None:
            try:
                self.lock_manager.release()
            finally:
                self.lock_manager = None
        if self._opened:
            self._opened = False
            self.store.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- key ----------------------------------------------------------------------------------------------

    def key_blobs(self) -> list[bytes]:
        """The sealed key(s).  ``keys/`` holds content-named blobs; normally one, two after an interrupted
        passphrase change (the new blob is stored before the old one is deleted, so a crash never leaves
        a repository without a usable key)."""
        assert self.config is not None
        if self.config.encryption == "repokey":
            blobs = [self.store.load(f"{layout.KEYS}/{info.name}") for info in self.list_namespace(layout.KEYS)]
            if not blobs:
                raise IntegrityError("the repository key is missing", hint="restore it with 'packvault key import'")
            return blobs
        path = self.settings.key_file_for(self.config.repository_id)
        try:
            return [path.read_bytes()]
        except FileNotFoundError:
            raise UsageError(
                f"no key file for this repository at {path}",
                hint="import it with 'packvault key import' or set PACKVAULT_KEY_FILE",
            ) from None

    def unlock(self, passphrase: Passphrase | str) -> KeyMaterial:
        """Open the key with ``passphrase``; a ``Passphrase`` that already derived the key (the CLI's early
        unlock) is not asked to derive it again."""
        errors: list[Exception] = []
        for blob in self.key_blobs():
            try:
                material = unseal_key(blob, passphrase)
            except (WrongPassphrase, IntegrityError) as exc:
                errors.append(exc)
                continue
            if material.repository_id != self.config.repository_id:
                errors.append(IntegrityError("the key belongs to another repository"))
                continue
            self._set_key(material)
            if self.config_authentic() is False and not self.tolerate_config_damage:
                raise IntegrityError(
                    "the repository config does not authenticate under the key (changed without the key)",
                    hint="run 'packvault check --repair', which restores it from its copy if that authenticates",
                )
            return material
        wrong = [e for e in errors if isinstance(e, WrongPassphrase)]
        raise wrong[0] if wrong else errors[0]

    def store_key_blob(self, blob: bytes) -> None:
        """Replace the sealed key (passphrase change, import); the master key itself never changes."""
        assert self.config is not None
        if key_blob_repository_id(blob) != self.config.repository_id:
            raise UsageError("this key belongs to another repository")
        if self.config.encryption == "repokey":
            old = [info.name for info in self.list_namespace(layout.KEYS)]
            new = content_name(blob)
            if new not in old:
                self.store.store(f"{layout.KEYS}/{new}", blob)
            for name in old:
                if name != new:
                    self.store.delete(f"{layout.KEYS}/{name}")
        else:
            write_key_file(self.settings.key_file_for(self.config.repository_id), blob)

    def reseal_key(self, new_passphrase: Passphrase | str) -> None:
        assert self.key is not None
        self.store_key_blob(seal_key(self.key, new_passphrase, memory_kib=self.settings.kdf_memory_kib))

    def list_namespace(self, namespace: str, *, deleted: bool = False):
        """List a namespace (soft-deleted names only, with ``deleted``); a namespace nothing was written to
        yet is empty (not an error).  A store that can list a whole tree at once (S3: ``list_tree``) is
        asked once, not once per nesting directory."""
        list_tree = getattr(self.store.backend, "list_tree", None)
        if list_tree is None:
            try:
                yield from self.store.list(namespace, deleted=deleted)
            except ObjectNotFound:
                return
            return
        for info in list_tree(namespace):
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

    def epoch(self) -> bytes:
        try:
            return self.store.load(EPOCH_NAME)
        except ObjectNotFound:
            return b""

    def bump_epoch(self) -> None:
        """Invalidate every client's cached index (compact, repair) before changing the index.

        ``config/`` keys are replaced by compare-and-swap on S3: the backend needs to have seen the current
        value, so it is read first; a concurrent bump then fails with ConflictError instead of being lost."""
        self.epoch()
        self.store.store(EPOCH_NAME, os.urandom(16))

    def request_stats(self) -> dict[str, int]:
        stats = getattr(self.store.backend, "request_stats", None)
        return dict(stats()) if stats else {}

    # --- pack I/O (thread-safe) ------------------------------------------------------------------------

    @staticmethod
    def pack_namespace(kind: int) -> str:
        return layout.META_PACKS if kind else layout.DATA_PACKS

    @staticmethod
    def pack_name(kind: int, pack: str) -> str:
        return layout.name(Repository.pack_namespace(kind), pack)

    def store_pack(self, kind: int, data: bytes | memoryview) -> str:
        """Store a finished pack under its content name, from any thread; returns the pack name."""
        pack = content_name(data)
        self.store.backend.store(self.store.find(self.pack_name(kind, pack)), data)
        return pack

    def store_pack_as(self, kind: int, pack: str, data: bytes | memoryview) -> None:
        """Store pack bytes under a name the caller proved right for them (``content_name`` or
        ``defrag_pack_name``) and proved free: repair's correctly named copy of a misnamed pack."""
        self.store.backend.store(self.store.find(self.pack_name(kind, pack)), data)

    @property
    def links_pack_spools(self) -> bool:
        """True for a local directory repository whose packs are spooled in place and linked in."""
        return localfs.spool_directory(self.store.backend) is not None

    def new_pack_spool(self, directory: str | os.PathLike | None = None) -> SpoolFile:
        """An empty spool file for a pack; it hashes its content for the pack name when that is asked for.

        A local directory repository creates it inside itself (``directory`` is ignored) so that storing it
        is a link (``storage/localfs.py``); for others it goes to ``directory``, with the MD5 uploads send.
        """
        local = localfs.spool_directory(self.store.backend)
        if local is not None:
            return SpoolFile(local, content_hash=blake3.blake3(), md5=False, linkable=True)
        return SpoolFile(directory, content_hash=blake3.blake3())

    def store_pack_spool(self, kind: int, spool: SpoolFile) -> str:
        """Store a finished pack from its spool file (``new_pack_spool``), from any thread; returns its name.

        The name is the same ``content_name`` ``store_pack`` would give these bytes (hashed from the spool
        file here, in the storing thread).  A local directory repository links the spool file in; a backend
        that can upload from a file (``store_payload``: S3) reads it in small blocks; any other backend gets
        the bytes in memory, as from ``store_pack``.  The caller closes the spool file afterwards, whatever
        happened.
        """
        pack = spool.content_digest()
        name = self.store.find(self.pack_name(kind, pack))
        backend = self.store.backend
        if localfs.link_spool(backend, name, spool):
            return pack
        store_payload = getattr(backend, "store_payload", None)
        if store_payload is not None:
            store_payload(name, spool.payload())
        else:
            backend.store(name, spool.read_all())
        return pack

    def load_pack_range(self, kind: int, pack: str, offset: int = 0, size: int | None = None) -> bytes:
        try:
            return self.store.backend.load(self.store.find(self.pack_name(kind, pack)), offset=offset, size=size)
        except ObjectNotFound:
            raise pack_missing(pack) from None

    @property
    def streams_packs(self) -> bool:
        """True if pack ranges can be read as streams (``open_pack_stream``): remote stores."""
        return hasattr(self.store.backend, "open_range")

    def open_pack_stream(self, kind: int, pack: str, offset: int, size: int) -> PackStream:
        """Bytes [offset, offset + size) of a pack, read sequentially from one request (see
        ``storage/s3_stream.py``); only where ``streams_packs``."""
        name = self.store.find(self.pack_name(kind, pack))
        return PackStream(self.store.backend.open_range(name, offset, size), pack)

    def copy_forward(self, kind: int, ranges: list[tuple[str, int, int]], *, target: str | None = None) -> str:
        """A new pack of ``kind`` from (pack, offset, size) ranges of existing packs of that kind, in order
        (compact's copy-forward; server-side where the store can).  Named ``target`` (a ``defrag_pack_name``
        the caller proved free), or by the blake3 of the copied bytes when None; returns the new pack name."""
        namespace = self.pack_namespace(kind)
        if target is None:
            return self.store.defrag(ranges, namespace=namespace, algorithm="blake3")
        return self.store.defrag(ranges, namespace=namespace, target=target)

    def list_packs(self, kind: int):
        """ItemInfos of the packs of one kind (name, size, mtime), sorted by name."""
        return self.list_namespace(self.pack_namespace(kind))

    def delete_pack(self, kind: int, pack: str) -> None:
        """Delete a pack that compact proved unreferenced.  Where the store can delete without asking first
        whether the object exists (S3), one request instead of a HEAD and a DELETE."""
        discard(self.store, self.pack_name(kind, pack))

    # --- sealed small objects ---------------------------------------------------------------------------

    def put_sealed(self, namespace: str, obj_type: int, plaintext: bytes) -> str:
        """Seal and store a small object under its content name in ``namespace``; returns the name."""
        sealed = self.codec.seal(os.urandom(32), obj_type, plaintext)
        name = content_name(sealed)
        self.store.store(f"{namespace}/{name}", sealed)
        return name

    def load_raw(self, namespace: str, name: str, *, deleted: bool = False) -> bytes:
        """A small object (``keys/``, ``index/``, ``archives/``) as stored, unopened: for the checks that need
        no key (structure, checksums, content name)."""
        return self.store.load(layout.name(namespace, name), deleted=deleted)

    def get_sealed(self, namespace: str, name: str, *, deleted: bool = False) -> bytes:
        return self.codec.open(self.store.load(f"{namespace}/{name}", deleted=deleted))[2]

    # --- index ------------------------------------------------------------------------------------------

    def list_fragments(self) -> list[str]:
        return [info.name for info in self.list_namespace(layout.INDEX)]

    def write_fragment(self, plaintext: bytes) -> str:
        return self.put_sealed(layout.INDEX, TYPE_INDEX, plaintext)

    def discard_fragment(self, name: str) -> None:
        """Delete an index fragment the caller listed under the exclusive lock and replaced (compact, repair)."""
        discard(self.store, layout.name(layout.INDEX, name))

    @property
    def index(self) -> ChunkIndex:
        if self._index is None:
            self._index = self._load_index()
        return self._index

    def _load_index(self) -> ChunkIndex:
        """Cached index + the fragments written since; a full rebuild when the epoch changed."""
        from borghash import HashTableNT

        epoch = self.epoch()
        fragments = self.list_fragments()
        present = set(fragments)
        cache = self.cache
        index = None
        covered: list[str] = []
        meta_raw = cache.read("index.meta")
        if meta_raw is not None:
            try:
                meta = msgpack.unpackb(meta_raw)
                if meta["epoch"] == epoch and set(meta["fragments"]) <= present:
                    table = HashTableNT.read(str(cache.file("index.table")))
                    index = ChunkIndex(table, PackTable.from_list(meta["packs"]))
                    covered = meta["fragments"]
            except Exception as exc:  # a damaged cache is rebuilt, never trusted
                log.info("index cache unusable, rebuilding: %s", exc)
                index = None
        if index is None:
            index = ChunkIndex(new_table(capacity=1000))
            covered = []
        missing = [name for name in fragments if name not in set(covered)]
        self.damaged_fragments = []
        for name in missing:
            try:
                index.apply_fragment(self.get_sealed(layout.INDEX, name))
            except IntegrityError as exc:
                # Skipped, not fatal: what it described is only stored again by the next backup.  compact
                # refuses while this list is not empty (it must not take those packs for garbage).
                log.warning("index fragment %s is damaged (%s); skipped: run 'packvault check --repair'", name, exc)
                self.damaged_fragments.append(name)
        missing = [name for name in missing if name not in self.damaged_fragments]
        self._index_epoch, self._index_fragments = epoch, sorted(set(covered) | set(missing))
        if missing or meta_raw is None:
            self.save_index_cache(index, epoch, self._index_fragments)
        return index

    def remember_written_fragments(self, names: list[str]) -> None:
        """Add the fragments this process wrote (and whose entries the in-memory index already holds) to the
        local index cache, so the next run on this machine doesn't GET back what it wrote itself: after
        a 1 GiB first backup that was five GETs per following run.  Call only once every entry added to the
        index is in a written fragment (after the writer's final flush)."""
        if self._index is None or self._index_fragments is None or not names:
            return  # no index loaded here, or one set by maintenance (which saves its own cache)
        self._index_fragments = sorted(set(self._index_fragments) | set(names))
        self.save_index_cache(self._index, self._index_epoch, self._index_fragments)

    def save_index_cache(self, index: ChunkIndex, epoch: bytes, fragments: list[str]) -> None:
        cache = self.cache
        tmp = cache.temp_path("index.table")
        index.table.write(str(tmp))
        cache.remove("index.meta")  # never a meta that describes another table
        cache.commit(tmp, "index.table")
        cache.write(
            "index.meta", msgpack.packb({"epoch": epoch, "fragments": fragments, "packs": index.packs.to_list()})
        )

    def invalidate_index_cache(self) -> None:
        self.cache.remove("index.meta")
        self._index = None
        self._index_fragments = None

    def reset_index(self, index: ChunkIndex | None = None) -> None:
        self._index = index
        self._index_fragments = None

    # --- archives -----------------------------------------------------------------------------------------

    def _entries(self, *, deleted: bool, strict: bool) -> list[tuple[str, ArchiveEntry]]:
        """(store key, entry) of every archive entry.  Entries are immutable, so their plaintext is cached.

        A damaged entry is skipped with a warning naming it (one bad object must not stop every command),
        unless ``strict``: compact must not go on without knowing every archive."""
        cache = self.cache
        entries = []
        for info in self.list_namespace(layout.ARCHIVES, deleted=deleted):
            plaintext = cache.read(f"archive-{info.name}")
            try:
                if plaintext is None:
                    plaintext = self.get_sealed(layout.ARCHIVES, info.name, deleted=deleted)
                    cache.write(f"archive-{info.name}", plaintext)
                entry = ArchiveEntry.decode(plaintext)
            except (IntegrityError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
                if deleted:
                    continue  # a damaged entry that repair soft-deleted: nothing to undelete
                if strict:
                    raise IntegrityError(
                        f"archive entry {info.name} is damaged ({exc})", hint="run 'packvault check --repair' first"
                    ) from None
                log.warning("archive entry %s is damaged (%s); skipped: run 'packvault check --repair'", info.name, exc)
                continue
            entries.append((info.name, entry))
        return entries

    def archive_entries(self, *, deleted: bool = False, strict: bool = False) -> list[ArchiveEntry]:
        """All archive entries, oldest first (damaged ones skipped with a warning unless ``strict``)."""
        entries = [entry for _, entry in self._entries(deleted=deleted, strict=strict)]
        entries.sort(key=lambda entry: (entry.time, entry.name))
        return entries

    def entry_names(self, *, deleted: bool = False) -> dict[bytes, str]:
        """archive id -> store key of its entry."""
        return {entry.id: key for key, entry in self._entries(deleted=deleted, strict=False)}

    def find_archive(self, name: str) -> ArchiveEntry:
        matches = [e for e in self.archive_entries() if e.name == name]
        if not matches:
            raise ArchiveNotFound(f"archive {name!r} not found")
        return matches[-1]

    def put_archive_entry(self, entry: ArchiveEntry) -> str:
        """Store the entry, and keep its plaintext in the local cache: the next command that lists archives
        on this machine (a scheduled re-run) need not GET what it wrote itself."""
        plaintext = entry.encode()
        name = self.put_sealed(layout.ARCHIVES, TYPE_ARCHIVE_ENTRY, plaintext)
        with contextlib.suppress(OSError):  # the entry is stored: a cache that can't be written costs a GET
            self.cache.write(f"archive-{name}", plaintext)
        return name

    def claim_archive_name(self, name: str, archive_id: bytes) -> None:
        """Claim ``name`` for ``archive_id`` with a create-only write, right before its entry is written.

        Two backups of the same name that started at the same time both passed the check for an existing
        archive; only one may commit.  Each name has a series of claims ``names/<MAC of name>-<n>``, each
        created only if absent (S3 ``If-None-Match``, a hard link locally), so of two writers racing for the
        next free claim exactly one gets it; the other raises ArchiveExists and commits nothing.  A claim is
        never overwritten or deleted by a writer (a create-only writer credential can do neither): when the
        last claim's archive is not there, the claim is abandoned if that archive was deleted, or if no lock
        of the session that claimed it is held any more (its backup died between claim and entry), and the
        name is claimed again at ``n + 1``.
        """
        base = self.chunk_id(b"packvault archive name v1\0" + name.encode("utf-8", "surrogateescape")).hex()
        generation, last = 0, None
        while True:
            try:
                last = self.store.load(layout.name(layout.NAMES, f"{base}-{generation}"))
            except ObjectNotFound:
                break
            generation += 1
        if last is not None:
            try:
                header, _, plaintext = self.codec.open(last)
                claimed, session = header.object_id, msgpack.unpackb(plaintext).get("session")
            except (IntegrityError, ValueError, TypeError, AttributeError, msgpack.UnpackException):
                claimed, session = None, None  # a damaged claim protects nothing: take the next one
            if claimed == archive_id:
                return  # our own claim: this is a retry
            if claimed in {entry.id for entry in self.archive_entries()}:
                raise ArchiveExists(f"an archive named {name!r} already exists; nothing was committed")
            gone = claimed is None or claimed in self.tombstones() or claimed in self.entry_names(deleted=True)
            held = {info.session for info in self.new_lock_manager().list_locks() if not info.stale}
            if not gone and session in held:
                raise ArchiveExists(
                    f"another backup is committing an archive named {name!r} right now; nothing was committed",
                    hint="run it again under another name",
                )
        session = self.lock_manager.session if self.lock_manager is not None else None
        claim = self.codec.seal(archive_id, TYPE_ARCHIVE_ENTRY, msgpack.packb({"session": session}), compress=False)
        if not store_new(self.store, layout.name(layout.NAMES, f"{base}-{generation}"), claim):
            raise ArchiveExists(
                f"another backup committed an archive named {name!r} at the same moment; nothing was committed",
                hint="run it again under another name",
            )

    def soft_delete_archive(self, entry: ArchiveEntry) -> None:
        self.soft_delete_entry(self.entry_names()[entry.id])

    def soft_delete_entry(self, key: str) -> None:
        """Soft-delete the ``archives/`` entry stored as ``key`` (reversible until compact): also an entry
        that does not open, which repair retires by its store key."""
        self.store.move(layout.name(layout.ARCHIVES, key), delete=True)

    def undelete_archive(self, entry: ArchiveEntry) -> None:
        key = self.entry_names(deleted=True)[entry.id]
        self.store.move(f"{layout.ARCHIVES}/{key}", undelete=True)

    def tombstones(self) -> set[bytes]:
        """Ids of archives that compact purged for good."""
        return {bytes.fromhex(info.name) for info in self.list_namespace(layout.TOMBSTONES)}

    def purge_deleted_archives(self) -> int:
        """Remove soft-deleted entries for good (compact).

        A purged archive's metadata object can outlive its entry (in a pack compact keeps, or until a crashed
        compact finishes), and would then look like an archive whose entry was lost.  A tombstone (its id,
        sealed, no content) written before the entry is deleted tells ``check`` and ``repair`` it was deleted
        on purpose and must not come back.
        """
        count = 0
        for info in list(self.list_namespace(layout.ARCHIVES, deleted=True)):
            try:
                archive_id = ArchiveEntry.decode(self.get_sealed(layout.ARCHIVES, info.name, deleted=True)).id
            except IntegrityError:
                archive_id = None  # a damaged entry: nothing it could resurrect
            if archive_id is not None:
                sealed = self.codec.seal(archive_id, TYPE_ARCHIVE_ENTRY, b"", compress=False)
                self.store.store(f"{layout.TOMBSTONES}/{archive_id.hex()}", sealed)
            discard(self.store, f"{layout.ARCHIVES}/{info.name}", deleted=True)  # listed just above
            self.cache.remove(f"archive-{info.name}")
            count += 1
        return count


def _write_refused(exc: BaseException) -> bool:
    """True when a write failed because the store is read-only or denies writing, not because it is broken."""
    if isinstance(exc, NoCredentials):
        return False  # nothing can be read either; say that instead
    if isinstance(exc, PermissionDenied):
        return True  # AccessDenied from S3 (403), or borgstore's permission settings
    return isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM)


def pack_missing(pack: str) -> ObjectMissing:
    return ObjectMissing(f"pack {pack} is missing from the repository")


class PackStream:
    """A backend's range stream with its errors in Packvault's terms (a missing or short pack)."""

    def __init__(self, stream, pack: str):
        self._stream = stream
        self._pack = pack

    def read(self, n: int) -> bytes:
        try:
            return self._stream.read(n)
        except ObjectNotFound:
            raise pack_missing(self._pack) from None
        except ReadRangeError as exc:
            raise IntegrityError(f"pack {self._pack} is truncated: {exc}") from None

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, 1024 * 1024)
            self.read(step)
            n -= step

    def close(self) -> None:
        self._stream.close()
