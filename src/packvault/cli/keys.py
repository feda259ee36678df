"""The ``key`` commands: export, import, change the passphrase, and add, list or remove passphrases."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from ..errors import EXIT_OK, UsageError
from ..repository.repository import Repository
from .location import split_location
from .opening import new_passphrase, open_repository, requests_of, s3_options
from .output import escape_name, has_control_characters, print_json, print_table
from .run import Run

# --- key ---------------------------------------------------------------------------------------------------

_ARMOR_BEGIN = "-----BEGIN PACKVAULT KEY-----"
_ARMOR_END = "-----END PACKVAULT KEY-----"


def cmd_key_export(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock=None) as repo:
        blob = dict(repo.named_key_blobs())[repo.unlocked_key]  # the key of the passphrase that opened it
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


def cmd_key_add(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    label = args.label or ""
    if has_control_characters(label):
        raise UsageError("invalid --label: it holds control characters", hint="use printable characters only")
    with open_repository(args, run, location, lock="exclusive") as repo:
        repo.require_repokey("key add")  # before asking for a passphrase it could not use
        new = new_passphrase(args, run, prompt="New passphrase: ", env="PACKVAULT_NEW_PASSPHRASE", command_env=None)
        info = repo.add_key(new, label=label)
        requests = requests_of(repo)
    if args.json:
        print_json({"added": _key_json(info), "requests": requests})
    else:
        print(f"Added key {info.id}" + (f" ({escape_name(label)})" if label else ""))
    return EXIT_OK


def cmd_key_list(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock="shared") as repo:
        infos = repo.key_infos()
        requests = requests_of(repo)
    if args.json:
        print_json({"keys": [_key_json(info) for info in infos], "requests": requests})
        return EXIT_OK
    rows = [
        (
            info.id + (" *" if info.current else ""),
            info.note.added.replace("T", " ")[:19] if info.note else "-",
            escape_name(info.note.label) if info.note else "",
        )
        for info in infos
    ]
    print_table(rows, ("ID", "Added (UTC)", "Label"))
    print("* the key whose passphrase opened the repository")
    return EXIT_OK


def cmd_key_remove(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    with open_repository(args, run, location, lock="exclusive") as repo:
        info = repo.find_key(args.key_id)
        repo.remove_key(info, force=args.force)
        requests = requests_of(repo)
    if args.json:
        print_json({"removed": _key_json(info), "requests": requests})
    else:
        print(
            f"Removed key {info.id}" + (f" ({escape_name(info.note.label)})" if info.note and info.note.label else "")
        )
    return EXIT_OK


def _key_json(info) -> dict:
    return {
        "id": info.id,
        "name": info.name,
        "added": info.note.added if info.note else None,
        "label": info.note.label if info.note else None,
        "current": info.current,
    }
