"""The ``packvault`` console script: the command line's own ``main``, after one thing that cannot wait for
its modules to load.

A backup of local files has its reader processes forked from a server process that imports what they need
(~0.1 s of a core).  Loading the command line's modules and parsing the arguments takes the first ~60 ms
of the process, on one core; the server is started before that, from the words of the command line
(``early_readers.start_readers_before_parsing``), so that its imports run beside them.  Only this module
and ``early_readers`` (with what it imports to start the server) load first.
"""

from __future__ import annotations

import sys


def main() -> None:
    from .early_readers import start_readers_before_parsing

    start_readers_before_parsing(sys.argv[1:])
    from .main import entry_point

    entry_point()
