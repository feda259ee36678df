"""The keyring part of the repository: the sealed key blob(s), unlocking, and the config with its checksum,
its copy and its MAC.

A part of ``Repository`` (``repository.py``), whose state it shares: the store, the config and the key.
Why the config has a copy and a MAC: ``config.py``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from borgstore.backends.errors import ObjectNotFound

from ..chunking.compression import CompressionSpec, Compressor
from ..crypto.kdf import Passphrase, as_passphrase
from ..crypto.keys import (
    KeyMaterial,
    KeyNote,
    key_blob_note,
    key_blob_params,
    key_blob_repository_id,
    seal_key,
    unseal_key,
    write_key_file,
)
from ..errors import IntegrityError, RepositoryError, RepositoryNotFound, UsageError, WrongPassphrase
from ..settings import Settings
from ..storage import layout
from ..storage.store import Store, load_beside, load_in_order
from .config import CONFIG_COPY_NAME, CONFIG_MAC_NAME, CONFIG_NAME, RepoConfig
from .key_hints import KeyHints
from .objects import ObjectCodec
from .packs import content_name

log = logging.getLogger(__name__)

KEY_ID_LENGTH = 12  # hex digits of a key blob's name shown as its id: ample to tell a handful of keys apart


@dataclass(frozen=True)
class KeyInfo:
    """One key blob as ``key list`` shows it."""

    name: str  # the blob's store name (content-named)
    note: KeyNote | None  # None: made before keys carried a note
    current: bool  # the one whose passphrase opened the repository

    @property
    def id(self) -> str:
        return self.name[:KEY_ID_LENGTH]


def _derived_for(passphrase: Passphrase, blob: bytes) -> bool:
    try:
        return passphrase.has_derived(key_blob_params(blob))
    except IntegrityError:
        return False


def _now() -> str:
    return datetime.now(UTC).isoformat()  # to the microsecond: keys added in one second keep their order


class Keyring(KeyHints):
    store: Store
    settings: Settings
    location: str
    config: RepoConfig | None
    key: KeyMaterial | None
    codec: ObjectCodec | None
    tolerate_config_damage: bool
    _config_raw: bytes
    unlocked_key: str | None = None  # store name of the key blob whose passphrase opened the repository

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
        with contextlib.closing(load_in_order(self.store, (CONFIG_NAME, CONFIG_COPY_NAME, CONFIG_MAC_NAME))) as loads:
            for name, loaded in loads:
                try:
                    found[name] = loaded.result()
                except ObjectNotFound:
                    found[name] = None
        return found

    def config_authentic(self, stored_mac: Future | None = None) -> bool | None:
        """After unlock: True if the config's MAC verifies, False if it does not, None if it has none yet.
        ``stored_mac``: the MAC already being read (``unlock`` asks for it while it reads the keys)."""
        return self.config_mac_verifies(stored_mac.result() if stored_mac is not None else self._stored_config_mac())

    def config_mac_verifies(self, mac: bytes | None) -> bool | None:
        """``config_authentic`` for a MAC already read (``config_objects``)."""
        assert self.key is not None
        if mac is None:
            return None
        return hmac.compare_digest(mac, self.key.config_mac(self._config_raw))

    def _stored_config_mac(self) -> bytes | None:
        try:
            return load_beside(self.store, CONFIG_MAC_NAME)  # read while the keys are listed and read
        except ObjectNotFound:
            return None

    def _set_key(self, material: KeyMaterial) -> None:
        self.key = material
        spec = CompressionSpec.parse(self.config.compression) if self.config else CompressionSpec()
        self.codec = ObjectCodec(material.new_session(), Compressor(spec))

    def key_blobs(self) -> list[bytes]:
        return [blob for _, blob in self.named_key_blobs()]

    def named_key_blobs(self) -> list[tuple[str, bytes]]:
        """(store name, sealed key) of every key.  ``keys/`` holds content-named blobs: one per passphrase
        (``key add``), and one more for a moment during a passphrase change (the new blob is stored before
        the old one is deleted, so a crash never leaves a repository without a usable key)."""
        assert self.config is not None
        if self.config.encryption == "repokey":
            blobs = [
                (info.name, self.store.load(f"{layout.KEYS}/{info.name}")) for info in self.list_namespace(layout.KEYS)
            ]
            if not blobs:
                raise IntegrityError("the repository key is missing", hint="restore it with 'packvault key import'")
            return blobs
        path = self.settings.key_file_for(self.config.repository_id)
        try:
            return [(path.name, path.read_bytes())]
        except FileNotFoundError:
            raise UsageError(
                f"no key file for this repository at {path}",
                hint="import it with 'packvault key import' or set PACKVAULT_KEY_FILE",
            ) from None

    def unlock(self, passphrase: Passphrase | str) -> KeyMaterial:
        """Open the key with ``passphrase``; a ``Passphrase`` that already derived the key (the CLI's early
        unlock) is not asked to derive it again."""
        known_mac = self._remembered_config_mac()
        with ThreadPoolExecutor(1, thread_name_prefix="pv-mac") as pool:
            # read at the same time as the keys (each is a round trip to a distant bucket), unless the MAC this
            # client verified last time is kept: then it is read only if the config is no longer that one
            stored_mac = None if known_mac is not None else pool.submit(self._stored_config_mac)
            material = self._unlock(as_passphrase(passphrase), stored_mac, known_mac)
        return material

    def _unlock(self, passphrase: Passphrase, stored_mac: Future | None, known_mac: bytes | None) -> KeyMaterial:
        errors: list[Exception] = []
        remembered = self._remembered_key_blob()
        if remembered is not None:
            material = self._open_key_blob(*remembered, passphrase, errors)
            if material is not None:
                return self._unlocked(material, remembered[0], stored_mac, known_mac)
        blobs = [named for named in self.named_key_blobs() if remembered is None or named[0] != remembered[0]]
        # With several keys, the one whose key-encryption key was already derived (early unlock) first: the
        # others would each cost an Argon2id derivation, after the heavy imports, on every run.
        blobs.sort(key=lambda named: not _derived_for(passphrase, named[1]))
        for name, blob in blobs:
            material = self._open_key_blob(name, blob, passphrase, errors)
            if material is not None:
                self._remember_key_blob(name)
                return self._unlocked(material, name, stored_mac, known_mac)
        wrong = [e for e in errors if isinstance(e, WrongPassphrase)]
        raise wrong[0] if wrong else errors[0]

    def _open_key_blob(
        self, name: str, blob: bytes, passphrase: Passphrase, errors: list[Exception]
    ) -> KeyMaterial | None:
        """The key material of one blob, or None (the reason appended to ``errors``)."""
        try:
            material = unseal_key(blob, passphrase)
        except (WrongPassphrase, IntegrityError) as exc:
            errors.append(exc)
            with contextlib.suppress(IntegrityError):
                passphrase.forget_use(key_blob_params(blob))
            return None
        if material.repository_id != self.config.repository_id:
            errors.append(IntegrityError("the key belongs to another repository"))
            return None
        return material

    def _unlocked(
        self, material: KeyMaterial, name: str, stored_mac: Future | None, known_mac: bytes | None
    ) -> KeyMaterial:
        self._set_key(material)
        self.unlocked_key = name
        if known_mac is not None and hmac.compare_digest(known_mac, material.config_mac(self._config_raw)):
            authentic: bool | None = True  # the very config whose stored MAC verified before: nothing to read
        else:
            authentic = self.config_authentic(stored_mac)
            if authentic:
                self._remember_config_mac(material.config_mac(self._config_raw))
        if authentic is False and not self.tolerate_config_damage:
            raise IntegrityError(
                "the repository config does not authenticate under the key (changed without the key)",
                hint="run 'packvault check --repair', which restores it from its copy if that authenticates",
            )
        return material


    def store_key_blob(self, blob: bytes, *, replaces: str | None = None) -> str:
        """Store a sealed key (import, passphrase change, ``key add``) and return its name; the master key
        itself never changes.  The new blob is stored first, then the one it ``replaces`` is deleted (never
        the other passphrases' keys).  An import also removes the blobs that are damaged: restoring a key
        is what it is for."""
        assert self.config is not None
        if key_blob_repository_id(blob) != self.config.repository_id:
            raise UsageError("this key belongs to another repository")
        new = content_name(blob)
        if self.config.encryption != "repokey":
            write_key_file(self.settings.key_file_for(self.config.repository_id), blob)
            return new
        old = [info.name for info in self.list_namespace(layout.KEYS)]
        if new not in old:
            self.store.store(f"{layout.KEYS}/{new}", blob)
        for name in old:
            if name == new:
                continue
            if name == replaces or (replaces is None and self._key_blob_damaged(name)):
                self.store.delete(f"{layout.KEYS}/{name}")
        return new

    def _key_blob_damaged(self, name: str) -> bool:
        blob = self.store.load(f"{layout.KEYS}/{name}")
        try:
            return content_name(blob) != name or key_blob_repository_id(blob) != self.config.repository_id
        except IntegrityError:
            return True

    def reseal_key(self, new_passphrase: Passphrase | str) -> None:
        """Seal the key under a new passphrase in place of the blob that opened the repository (its label
        goes along); other passphrases' keys stay."""
        assert self.key is not None
        old = dict(self.named_key_blobs()).get(self.unlocked_key or "")
        old_note = self._note_of(old) if old is not None else None
        label = old_note.label if old_note is not None else ""
        blob = seal_key(self.key, new_passphrase, memory_kib=self.settings.kdf_memory_kib, note=KeyNote(_now(), label))
        self.unlocked_key = self.store_key_blob(blob, replaces=self.unlocked_key)

    def _note_of(self, blob: bytes) -> KeyNote | None:
        assert self.key is not None
        try:
            return key_blob_note(blob, self.key)
        except IntegrityError:
            return None

    def require_repokey(self, what: str) -> None:
        assert self.config is not None
        if self.config.encryption != "repokey":
            raise UsageError(
                f"{what} needs a repokey repository: this one keeps its only key in a key file on this machine",
                hint="use 'packvault key change-passphrase' to change that key's passphrase",
            )

    def new_key_note(self, label: str = "") -> KeyNote:
        return KeyNote(_now(), label)

    def key_infos(self) -> list[KeyInfo]:
        """Every key of the repository, oldest first (those without a note first, by name)."""
        self.require_repokey("listing keys")
        infos = [KeyInfo(name, self._note_of(blob), name == self.unlocked_key) for name, blob in self.named_key_blobs()]
        infos.sort(key=lambda info: (info.note.added if info.note else "", info.name))
        return infos

    def add_key(self, passphrase: Passphrase | str, *, label: str = "") -> KeyInfo:
        """Seal the master key under one more passphrase: each passphrase opens the whole repository."""
        assert self.key is not None
        self.require_repokey("adding a key")
        note = self.new_key_note(label)
        blob = seal_key(self.key, passphrase, memory_kib=self.settings.kdf_memory_kib, note=note)
        return KeyInfo(self.store_key_blob(blob), note, current=False)

    def find_key(self, key_id: str) -> KeyInfo:
        """The key whose name starts with ``key_id`` (as ``key list`` shows it); exactly one must."""
        matches = [info for info in self.key_infos() if key_id and info.name.startswith(key_id.lower())]
        if len(matches) != 1:
            what = "no key" if not matches else f"{len(matches)} keys"
            raise UsageError(f"{what} with id {key_id!r}", hint="see 'packvault key list' (give more digits)")
        return matches[0]

    def remove_key(self, info: KeyInfo, *, force: bool = False) -> None:
        """Delete one key blob.  Never the last (the repository would be unreadable for good), and not the one
        that opened the repository unless ``force`` (whoever runs this would lock themselves out)."""
        self.require_repokey("removing a key")
        names = [name for name, _ in self.named_key_blobs()]
        if names == [info.name]:
            raise UsageError(
                "this is the repository's last key: removing it would make every backup unreadable",
                hint="add another key first ('packvault key add')",
            )
        if info.name == self.unlocked_key and not force:
            raise UsageError(
                f"key {info.id} is the one whose passphrase opened the repository: you would lock yourself out",
                hint="open it with another key's passphrase, or pass --force if that is what you want",
            )
        self.store.delete(f"{layout.KEYS}/{info.name}")
