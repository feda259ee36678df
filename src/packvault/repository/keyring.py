"""The keyring part of the repository: the sealed key blob(s), unlocking, and the config with its checksum,
its copy and its MAC.

A part of ``Repository`` (``repository.py``), whose state it shares: the store, the config and the key.
Why the config has a copy and a MAC: ``config.py``.
"""

from __future__ import annotations

import contextlib
import hmac
import logging

from borgstore.backends.errors import ObjectNotFound

from ..chunking.compression import CompressionSpec, Compressor
from ..crypto.kdf import Passphrase
from ..crypto.keys import KeyMaterial, key_blob_repository_id, seal_key, unseal_key, write_key_file
from ..errors import IntegrityError, RepositoryError, RepositoryNotFound, UsageError, WrongPassphrase
from ..settings import Settings
from ..storage import layout
from ..storage.store import Store
from .config import CONFIG_COPY_NAME, CONFIG_MAC_NAME, CONFIG_NAME, RepoConfig
from .objects import ObjectCodec
from .packs import content_name

log = logging.getLogger(__name__)


class Keyring:
    store: Store
    settings: Settings
    location: str
    config: RepoConfig | None
    key: KeyMaterial | None
    codec: ObjectCodec | None
    tolerate_config_damage: bool
    _config_raw: bytes

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

    def _set_key(self, material: KeyMaterial) -> None:
        self.key = material
        spec = CompressionSpec.parse(self.config.compression) if self.config else CompressionSpec()
        self.codec = ObjectCodec(material.new_session(), Compressor(spec))

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
