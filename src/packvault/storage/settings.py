"""Tuning of the storage layer that comes from the process environment, read once at the edge.

The storage layer reads no environment variable itself: whoever builds a store (the CLI, the serverless
handler, for now the repository through ``from_environment``) reads the environment once and hands the
values down in a ``StorageSettings``, so that a test or an embedding program can say exactly what the
storage layer sees.  botocore's own chain (credentials, region, ``AWS_PROFILE``...) is left to botocore: that
is the library's documented behaviour, and Packvault only needs to know the endpoint variables, to choose
path-style addressing and to name the endpoint in messages.

The retry bounds are kept as the text given: they are parsed (and refused) only where an S3 location uses
them, so a bad value cannot break a local repository that never retries anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ENV_RETRY_ATTEMPTS = "PACKVAULT_S3_RETRY_ATTEMPTS"
ENV_RETRY_MAX_SECONDS = "PACKVAULT_S3_RETRY_MAX_SECONDS"
ENV_ENDPOINTS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # botocore's order: the service-specific one wins


@dataclass(frozen=True)
class StorageSettings:
    """Environment-derived defaults of the storage layer; every field None means "not set"."""

    retry_attempts: str | None = None  # attempts per request, unless a location's options say otherwise
    retry_max_seconds: str | None = None  # time bound of one request's retries, likewise
    s3_endpoint: str | None = None  # the endpoint botocore will use when a location names none


def from_environment(env: Mapping[str, str]) -> StorageSettings:
    """The ``StorageSettings`` of an environment: the one place the storage layer's variables are named.

    Called where the program starts (CLI, serverless handler: ``packvault.settings``) with their
    environment, and passed down; the storage layer itself never reads ``os.environ``.
    """
    return StorageSettings(
        retry_attempts=env.get(ENV_RETRY_ATTEMPTS) or None,
        retry_max_seconds=env.get(ENV_RETRY_MAX_SECONDS) or None,
        s3_endpoint=next((env[name] for name in ENV_ENDPOINTS if env.get(name)), None),
    )
