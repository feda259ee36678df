"""Start the server a backup's reader processes fork from as the first thing ``create`` does, before the
command's modules are imported and the key is derived; from the console script, before the arguments are
even parsed (``start_readers_before_parsing``).

Why this early: the server imports what the readers need (~0.1 s of a core), and until it has, no reader
exists and the backup's own process reads the first batches itself.  Started when the repository was about
to open, it was importing while the walk began, and the readers were up ~0.3 s into a first backup of a
home directory; started after the arguments were parsed, its imports ran beside the command's own imports
and the key derivation.  Parsing them meant importing the command line's modules first (~60 ms of one core,
the other idle), so the console script starts the server on what the words of the command line say, ~30 ms
into the process (bench/README.md).

A guess from the words can be wrong: an option's value may look like a path, and PACKVAULT_READ_PROCESSES
is not read yet.  It is made so that a wrong guess costs time, never a result: ``start_readers_early``
decides again from the parsed arguments, starts the server if the guess missed it, and stops one the guess
started for nothing (a backup of standard input, of S3 objects, or with the readers turned off).  Where the
walk turns out to need no readers (a handful of files, a ``--files-from`` list of S3 paths), the server is
stopped at exit like any other (``processes``).
"""

from __future__ import annotations

from ..archive.source_paths import reads_local_files
from ..processes import start_server_early, stop_server, usable_processes

TYPE_CHECKING = False  # type checkers take it as typing's; importing typing would take ~6 ms before the start
if TYPE_CHECKING:
    import argparse

    from .run import Run

# what the server imports, by name: importing it here would be the wait this module avoids
READER_PROCESS_MODULE = "packvault.archive.readerprocess"
STDIN_COMMAND_OPTION = "--stdin-from-command"


def start_readers_before_parsing(argv: list[str]) -> None:
    """From the console script, with the command line's words: start the server if they look like a backup
    of local files (``create``, no ``-`` for standard input, no S3 source) on a machine of several cores."""
    if not argv or argv[0] != "create" or STDIN_COMMAND_OPTION in argv:
        return
    # the words that are not options: the repository and archive (``REPO::ARCHIVE``, or ``::ARCHIVE``), the
    # paths, and option values, which only make the guess more careful (a value of "-" or "s3://...")
    words = [word for word in argv[1:] if word == "-" or not word.startswith("-")]
    if reads_local_files([word for word in words if "::" not in word]) and usable_processes(None):
        start_server_early(READER_PROCESS_MODULE)


def start_readers_early(args: argparse.Namespace, run: Run) -> None:
    """For a backup (``create``) of local files on a machine where it will use reader processes: start their
    server (unless the console script did); for any other, stop one started on a wrong guess."""
    if reads_local_files(list(args.paths), stdin_command=bool(args.stdin_from_command)) and usable_processes(
        run.settings.read_processes
    ):
        start_server_early(READER_PROCESS_MODULE)
    else:
        stop_server()
