"""The ``key`` commands: export, import and change the passphrase of the repository key."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from ..errors import EXIT_OK, UsageError
from ..repository.repository import Repository
from .location import split_location
from .opening import new_passphrase, open_repository, s3_options
from .run import Run

# --- key ---------------------------------------------------------------------------------------------------

_ARMOR_BEGIN = "-----BEGIN PACKVAULT KEY-----"
_ARMOR_END = "-----END PACKVAULT KEY-----"


def cmd_key_export(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock=None) as repo:
        blob = repo.key_blobs()[0]
    body = base64.encodebytes(blob).decode("ascii")
    text = f"{_ARMOR_BEGIN}\n{body}{_ARMOR_END}\n"
    if args.file and args.file != "-":
        from ..crypto.keys import write_key_file

        write_key_file(Path(args.file), text.encode("ascii"))
        print(f"Key written to {args.file} (still protected by the passphrase)", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_key_import(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    try:
        with open(args.file, encoding="ascii") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read key file {args.file}: {exc}") from None
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("-----")]
    try:
        blob = base64.b64decode("".join(lines), validate=True)
    except ValueError:
        raise UsageError(f"{args.file} is not an exported Packvault key") from None
    repo = Repository(location, settings=run.settings, s3_options=s3_options(args))
    try:
        repo.open(None)
        repo.store_key_blob(blob)
    finally:
        repo.close()
    print("Key imported", file=sys.stderr)
    return EXIT_OK


def cmd_key_change_passphrase(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock="exclusive") as repo:
        new = new_passphrase(args, run, prompt="New passphrase: ", env="PACKVAULT_NEW_PASSPHRASE", command_env=None)
        repo.reseal_key(new)
    print("Passphrase changed", file=sys.stderr)
    return EXIT_OK
