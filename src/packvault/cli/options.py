"""argparse -> the engine's option objects.

Each command's options are checked here, before the repository is opened (a typo in a cron job fails fast
and never holds a lock); the option objects validate their own combinations, so a caller without argparse
(the scheduled job) gets the same refusals.
"""

from __future__ import annotations

import argparse

from ..maintenance.check import CheckOptions


def check_options(args: argparse.Namespace) -> CheckOptions:
    return CheckOptions(
        repository_only=bool(getattr(args, "repository_only", False)),
        archives_only=bool(getattr(args, "archives_only", False)),
        verify_data=bool(getattr(args, "verify_data", False)),
        subset=getattr(args, "read_data_subset", None),
        max_duration=getattr(args, "max_duration", None),
        repair=bool(getattr(args, "repair", False)),
        dry_run=bool(getattr(args, "dry_run", False)),
    )
