"""Start the server a backup's reader processes fork from as the first thing ``create`` does, before the
command's modules are imported and the key is derived.

Why this early: the server imports what the readers need (~0.1 s of a core), and until it has, no reader
exists and the backup's own process reads the first batches itself.  Started when the repository was about
to open, it was importing while the walk began, and the readers were up ~0.3 s into a first backup of a
home directory; started here, its imports run beside the command's own imports and the key derivation, and
a first backup on two cores ends ~2 % sooner (bench/README.md).  A restore, whose processes start from a
reader thread well into the run, measured no gain, so only ``create`` does this.

Where the walk turns out to need no readers (a handful of files, a ``--files-from`` list of S3 paths), the
server was started for nothing and is stopped at exit like any other (``processes``).
"""

from __future__ import annotations

import argparse

from ..archive.source_paths import reads_local_files
from ..processes import start_server_early, usable_processes
from .run import Run

# what the server imports, by name: importing it here would be the wait this module avoids
READER_PROCESS_MODULE = "packvault.archive.readerprocess"


def start_readers_early(args: argparse.Namespace, run: Run) -> None:
    """For a backup (``create``) of local files on a machine where it will use reader processes: start their
    server."""
    if not reads_local_files(list(args.paths), stdin_command=bool(args.stdin_from_command)):
        return
    if usable_processes(run.settings.read_processes):
        start_server_early(READER_PROCESS_MODULE)
