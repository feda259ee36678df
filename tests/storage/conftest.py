"""Fixtures of the storage tests: an opened raw backend of each kind, and helpers to build S3 backends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from borgstore.backends._base import BackendBase
from borgstore.backends.posixfs import PosixFS

from packvault.storage.accounting import CountingBackend
from packvault.storage.s3 import S3Backend
from packvault.storage.s3 import client as s3_client_module
from packvault.storage.settings import from_environment
from packvault.storage.url import backend_from_location


@pytest.fixture
def open_s3(make_s3_url) -> Iterator[Callable[..., S3Backend]]:
    """``open_s3(endpoint, url=None, create=True, cache_dir=None, **options)`` -> an opened S3Backend on a
    fresh bucket, built the way a repository builds it (with the repository's namespace write policy)."""
    opened: list[S3Backend] = []

    def make(endpoint: str, url: str | None = None, create: bool = True, cache_dir=None, **options: str) -> S3Backend:
        extra = {} if cache_dir is None else {"cache_dir": cache_dir}
        backend = backend_from_location(
            url or make_s3_url(endpoint),
            {k: str(v) for k, v in options.items()},
            **extra,
            settings=from_environment(os.environ),
        )
        if create:
            backend.create()
        backend.open()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        if backend.opened:
            backend.close()


@pytest.fixture(params=["file", "moto", pytest.param("localstack", marks=pytest.mark.localstack)])
def backend(request: pytest.FixtureRequest, tmp_path) -> Iterator[BackendBase]:
    """An opened, empty backend of every kind: file (PosixFS, counted), moto, LocalStack."""
    if request.param == "file":
        be: BackendBase = CountingBackend(PosixFS(str(tmp_path / "repo")))
        be.create()
        be.open()
        yield be
        be.close()
        return
    endpoint = request.getfixturevalue(f"{request.param}_endpoint")
    yield request.getfixturevalue("open_s3")(endpoint)


@pytest.fixture
def fresh_loader(monkeypatch, s3_env) -> None:
    """The process-wide botocore data loader starts empty (it may be warm from an earlier test)."""
    monkeypatch.setattr(s3_client_module, "_shared", None)
    monkeypatch.delenv("AWS_DATA_PATH", raising=False)
