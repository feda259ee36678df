"""Run a module's restore tests twice: once in the restore's own process, once with every one-chunk file of
every round handed to restore processes (``archive/restorers.py``), which small test archives would never
start (``restorers.MIN_FILES``)."""

from __future__ import annotations

import pytest

from packvault.archive import restorers


@pytest.fixture(autouse=True, params=["in-process", "processes"])
def restore_path(request, monkeypatch):
    if request.param == "processes":
        monkeypatch.setattr(restorers, "MIN_FILES", 1)
        monkeypatch.setenv("PACKVAULT_READ_PROCESSES", "2")
    else:
        monkeypatch.setenv("PACKVAULT_READ_PROCESSES", "0")
    return request.param
