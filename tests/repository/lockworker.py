"""A separate process that takes a repository lock, for the multi-process lock tests.

Locks are about processes (and hosts), so the tests need real ones: this script opens the store named on
the command line, acquires a shared or exclusive lock and reports on stdout, one line per event:

- ``ACQUIRED <pid>`` once it holds the lock;
- ``TIMEOUT <message>`` (exit 2) when acquisition timed out;
- ``LOST <message>`` (exit 3) when ``check()`` found the lock lost while holding;
- ``RELEASED`` after releasing.

It holds for ``--hold`` seconds, or (without it) until a line arrives on stdin or stdin closes.  With
``--log`` it appends ``enter``/``exit`` lines with CLOCK_MONOTONIC stamps (system-wide on Linux) to a
shared file opened with O_APPEND, so a test can check that exclusive holders never overlapped.

Run as ``python -m tests.repository.lockworker`` from the repository root.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

from borgstore.backends.posixfs import PosixFS
from borgstore.store import Store
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from packvault.errors import LockLost, LockTimeout
from packvault.repository.locks import LockManager
from packvault.storage.layout import STORE_CONFIG

KEY_ENV = "PACKVAULT_TEST_LOCK_KEY"


def make_sealer(key: bytes) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """AES-GCM seal/unseal closures standing in for the repository key (random nonce per record)."""
    aead = AESGCM(key)

    def seal(plain: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + aead.encrypt(nonce, plain, b"packvault lock")

    def unseal(sealed: bytes) -> bytes:
        return aead.decrypt(sealed[:12], sealed[12:], b"packvault lock")

    return seal, unseal


def open_store(location: str) -> Store:
    """An open Store for a directory path or an s3:// URL (the S3 backend is imported only when needed)."""
    if location.startswith("s3://"):
        from packvault.storage.url import store_from_location

        store = store_from_location(location)
    else:
        store = Store(backend=PosixFS(location), config=STORE_CONFIG)
    store.open()
    return store


def _log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("location")
    parser.add_argument("--exclusive", action="store_true")
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--hold", type=float, default=None, help="seconds; default: until stdin has a line")
    parser.add_argument("--stale", type=float, default=3.0)
    parser.add_argument("--refresh", type=float, default=0.5)
    parser.add_argument("--host-id", default=None)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--log", default=None)
    parser.add_argument("--tag", default=str(os.getpid()))
    args = parser.parse_args(argv)

    seal, unseal = make_sealer(bytes.fromhex(os.environ[KEY_ENV]))
    store = open_store(args.location)
    manager = LockManager(
        store, seal=seal, unseal=unseal, stale_seconds=args.stale, refresh_seconds=args.refresh, host_id=args.host_id
    )
    try:
        for _ in range(args.repeat):
            try:
                manager.acquire(exclusive=args.exclusive, wait=args.wait)
            except LockTimeout as exc:
                _say(f"TIMEOUT {exc}")
                return 2
            if args.log:
                _log(args.log, f"enter {args.tag} {time.monotonic_ns()}\n")
            _say(f"ACQUIRED {os.getpid()}")
            try:
                if args.hold is None:
                    sys.stdin.readline()
                else:
                    end = time.monotonic() + args.hold
                    while time.monotonic() < end:
                        manager.check()
                        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
                manager.check()
            except LockLost as exc:
                _say(f"LOST {exc}")
                manager.release()
                return 3
            if args.log:
                _log(args.log, f"exit {args.tag} {time.monotonic_ns()}\n")
            manager.release()
            _say("RELEASED")
    finally:
        manager.release()
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
