"""Packvault's borgstore backend for S3 and S3-compatible services (AWS, MinIO, LocalStack, moto).

Plug it in with ``Store(backend=open_s3_backend(url, options, policy=WRITE_POLICY))``.  Why not borgstore's
own S3 backend: it has no retries, no conditional writes, no multipart, swallows delete errors and lists
wrongly past 1000 sub-directories.  docs/s3-backend.md has the user's view, including where it departs
from borgstore's contract.  One module per job:

- ``backend.py``: ``S3Backend``, lifecycle and the borgstore contract, handing each call on;
- ``bucket.py``: one bucket behind one counted client: keys, a request with retries, HEAD, GET, paging;
- ``reads.py``: info, loads, streamed ranges (``stream.py``), gathered ranges (``plan.py``);
- ``writes.py``: stores by the namespace write policy (conditional writes), delete, discard, move, and
  multipart uploads (``multipart.py``); whether conditions hold is ``probe.py``'s question;
- ``defrag.py``: copy-forward, server-side where it pays;
- ``listing.py``: the one paging loop, sorted levels and whole trees;
- ``config.py`` (``s3://`` URLs and options), ``client.py`` (the botocore client), ``errors.py`` (which
  failures are transient, what the others mean to a user).

Retries of single requests use ``storage/retry.py``'s bounded policy; botocore makes one attempt each, and
every HTTP attempt is counted for ``request_stats()``.
"""

from .backend import S3Backend, open_s3_backend

__all__ = ["S3Backend", "open_s3_backend"]
