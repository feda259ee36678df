"""Keep Python's cycle collector off the objects that live as long as the command.

Why: by the time a repository is open, the process holds ~70,000 objects that stay until it exits, most
of them botocore's parsed S3 model.  A restore or a backup then creates items, chunk lists and buffers
fast enough to trigger full collections again and again, and each one walks all of those long-lived
objects too, a visible share of a restore's CPU (bench/README.md).  ``gc.freeze()`` moves what
exists now into a generation the collector never scans; reference counting still frees everything as
usual, only cycles among the frozen objects would outlive their use, and a CLI process exits anyway.

Called by the CLI only: a long-lived process (a warm serverless container) must not freeze once per
invocation.
"""

from __future__ import annotations

import gc


def freeze_long_lived_objects() -> None:
    """Exclude every object alive now from future collections (see the module docstring)."""
    gc.freeze()
