"""Settings for tests that build a Repository themselves: from the environment the fixtures set up, exactly as
the CLI builds them (``cli/run.py``)."""

from __future__ import annotations

import os

from packvault.settings import Settings


def env_settings() -> Settings:
    return Settings.from_environ(os.environ)
