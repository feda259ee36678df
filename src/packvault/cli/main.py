"""The ``packvault`` command: argument parsing, dispatch, and the one place errors become exit codes.

Exit codes (README "Exit codes"): 0 done; 1 done with warnings (the result is committed; unreadable source
files, problems found by check); 2 not done (bad input, wrong passphrase, storage failure, ...); 3 stopped
at a deadline (serverless, resumes on the next run); 130 interrupted.  Expected failures print one line,
``packvault: error: ...``, never a traceback (set PACKVAULT_DEBUG=1 to see one); so do usage errors.
"""

from __future__ import annotations

import importlib
import os
import sys

from ..descriptors import grow_descriptor_table
from ..errors import EXIT_ERROR, EXIT_INTERRUPTED, PackvaultError
from .parser import build_parser, parse_args
from .run import Run

__all__ = ["build_parser", "entry_point", "main"]


def main(argv: list[str] | None = None) -> int:
    grow_descriptor_table()  # before any thread starts: see its docstring
    parser = build_parser()
    args = parse_args(parser, sys.argv[1:] if argv is None else list(argv))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    args.verbose = getattr(args, "verbose", False)
    run: Run | None = None
    location: str | None = None
    try:
        run = Run.from_environ()
        if args.command == "create":  # the readers' server: started before heavier imports, or stopped if not needed
            from .early_readers import start_readers_early

            start_readers_early(args, run)
        _configure_logging(args.verbose)
        from . import early_unlock

        location = early_unlock.repository_location(getattr(args, "location", None) or getattr(args, "repo", None))
        # while the commands are imported, before boto3 is: see its docstring; init has no key to derive yet
        commands = early_unlock.derive_early_during(
            location, run, lambda: _import_commands(args.command), derive=args.command not in ("init", "completion")
        )
        return int(getattr(commands, args.func)(args, run) or 0)
    except PackvaultError as exc:
        if os.environ.get("PACKVAULT_DEBUG"):
            raise
        print(f"packvault: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_ERROR
    except OSError as exc:
        # The local file system refused something no layer below turned into a PackvaultError (a permission,
        # a read-only mount, ...): still an expected failure, so one line; PACKVAULT_DEBUG=1 shows where.
        if os.environ.get("PACKVAULT_DEBUG"):
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"packvault: error: {exc.strerror or exc}{where} (set PACKVAULT_DEBUG=1 for details)", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("packvault: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: Python's own exit code, 1, would say "done, with warnings"
        if os.environ.get("PACKVAULT_DEBUG"):
            raise
        import traceback

        traceback.print_exc()
        print(f"packvault: error: internal error: {type(exc).__name__}: {exc} (a bug: please report it with the "
              "traceback above)", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if run is not None and location is not None:
            from . import early_unlock

            early_unlock.remember(location, run)


def _configure_logging(verbose: bool) -> None:
    import logging

    level = logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="packvault: %(levelname)s: %(message)s")
    if not verbose:  # botocore logs a failed credential fetch with a traceback; the command says it once
        logging.getLogger("botocore").setLevel(logging.ERROR)


def _import_commands(command: str):
    """The command modules, and for ``create`` the engine modules it imports as it starts (``CREATE_MODULES``):
    imported here, beside the key derivation, they cost the backup no time; imported after it, the main
    thread imported them alone while the other core had nothing to do."""
    from . import commands

    if command == "create":
        from .backup import CREATE_MODULES

        for name in CREATE_MODULES:
            importlib.import_module(name)
    return commands


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
