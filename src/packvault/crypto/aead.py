"""Authenticated encryption with per-session subkeys and counter nonces.

Nonce reuse is the one mistake AES-GCM and ChaCha20-Poly1305 do not survive.  Several processes and
machines write into one repository with the same master key and no coordination, so nonces cannot come
from a shared counter.  Instead every writer session draws a random 128-bit session id, derives its own
subkey with HKDF(master, salt=session id), and counts nonces from zero under that subkey.  A nonce is
(part tag, counter): two sessions never share a subkey (barring a 2^-128 collision), and within a session
the counter never repeats.  The session id and counter travel in the object header, so any reader can
derive the same subkey.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import IntegrityError

CIPHER_AES_GCM = 1
CIPHER_CHACHA20 = 2
CIPHER_NAMES = {"aes-256-gcm": CIPHER_AES_GCM, "chacha20-poly1305": CIPHER_CHACHA20}
TAG_SIZE = 16
SESSION_ID_SIZE = 16

_NONCE = struct.Struct(">IQ")  # part tag, counter: 12 bytes


def hkdf(key: bytes, *, salt: bytes | None, info: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def _aead(cipher: int, key: bytes) -> AESGCM | ChaCha20Poly1305:
    if cipher == CIPHER_AES_GCM:
        return AESGCM(key)
    if cipher == CIPHER_CHACHA20:
        return ChaCha20Poly1305(key)
    raise IntegrityError(f"unknown cipher id {cipher}")


class SessionSealer:
    """Seals with this session's subkey and opens objects of any session."""

    def __init__(self, master_key: bytes, cipher: int):
        self.cipher = cipher
        self._master = master_key
        self.session_id = os.urandom(SESSION_ID_SIZE)
        self._sealer = _aead(cipher, self._subkey(self.session_id))
        self._counter = itertools.count()  # next() is atomic under the GIL
        self._openers: dict[tuple[int, bytes], AESGCM | ChaCha20Poly1305] = {}
        self._openers_lock = threading.Lock()

    def _subkey(self, session_id: bytes) -> bytes:
        return hkdf(self._master, salt=session_id, info=b"packvault object subkey v1")

    def next_counter(self) -> int:
        return next(self._counter)

    def seal(self, counter: int, part: int, plaintext: bytes | memoryview, aad: bytes) -> bytes:
        return self._sealer.encrypt(_NONCE.pack(part, counter), plaintext, aad)

    def open(
        self, cipher: int, session_id: bytes, counter: int, part: int, sealed: bytes | memoryview, aad: bytes
    ) -> bytes:
        key = (cipher, session_id)
        opener = self._openers.get(key)
        if opener is None:
            opener = _aead(cipher, self._subkey(session_id))
            with self._openers_lock:
                if len(self._openers) > 1024:  # bounded: one entry per writer session seen
                    self._openers.clear()
                self._openers[key] = opener
        try:
            return opener.decrypt(_NONCE.pack(part, counter), sealed, aad)
        except InvalidTag:
            raise IntegrityError("object failed authentication (damaged or tampered)") from None
