"""Packvault storage layer: borgstore glue, knowing nothing of chunks, keys or files (docs/architecture.md).

- ``url``: a repository location -> a ``Store`` over the right backend; ``settings``: the environment's
  tuning, read once at the edge (``from_environment``) and passed in;
- ``backend``: ``PackvaultBackend``, the optional operations declared with plain defaults; ``local``: local
  directories; ``s3/``: S3 and compatible services; ``accounting``: request counting around any backend;
- ``store``: borgstore's ``Store``, imported lean, with ``discard``/``store_new`` on a store's names;
- ``layout``: namespaces, nesting and the write policy; ``retry``: the one bounded retry policy;
- ``spool``/``payload``: packs on their way to a store, never whole in memory;
- ``buckets``: objects of a user's bucket (backup source, restore target) for the archive layer.
"""
