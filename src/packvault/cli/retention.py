"""``packvault retention extend``: the Object Lock retention of every live object, extended (and shown)."""

from __future__ import annotations

from ..errors import EXIT_OK
from ..maintenance.retention_lock import RetentionOptions, RetentionReport, extend_retention
from ..repository.repository import Repository
from ..units import parse_duration
from .location import split_location
from .opening import open_repository, requests_of
from .output import print_json
from .run import Run


def retention_options(args) -> RetentionOptions:
    """``--retention`` and ``--renew-below`` (durations), checked before any lock is taken."""

    def seconds(value: str | None, what: str) -> float | None:
        return None if value is None else parse_duration(value, what=what).total_seconds()

    return RetentionOptions(
        period=seconds(getattr(args, "retention", None), "--retention"),
        renew_below=seconds(getattr(args, "renew_below", None), "--renew-below"),
        dry_run=bool(getattr(args, "dry_run", False)),
    )


def render_retention(report: RetentionReport, requests: dict, *, as_json: bool) -> None:
    if as_json:
        print_json({"retention": report.as_dict(), "requests": requests})
        return
    verb = "Would extend" if report.dry_run else "Extended"
    print(
        f"Object Lock ({report.mode.lower()}): {report.objects_live} live objects; {verb} "
        f"{report.objects_extended} to {report.retain_until[:19]}Z, {report.objects_current} had enough left"
    )
    if report.earliest_until:
        print(f"Every live object is retained until at least {report.earliest_until[:19]}Z.")


def render_held(held: list[dict]) -> None:
    """compact's packs that Object Lock still retains: a notice, not an error."""
    if not held:
        return
    latest = max(entry["until"] for entry in held)
    print(
        f"{len(held)} unreferenced pack(s) held by retention until {latest[:19]}Z at the latest were left in "
        f"place; the next compact after that date deletes them."
    )
    for entry in held:
        print(f"  {entry['pack']} held by retention until {entry['until'][:19]}Z")


def extend_after_compact(repo: Repository, args) -> RetentionReport | None:
    """compact's last step in a repository with Object Lock (nothing without one, or in a dry run)."""
    if repo.config is None or not repo.config.object_lock or getattr(args, "dry_run", False):
        return None
    return extend_retention(repo, RetentionOptions())


def cmd_retention_extend(args, run: Run) -> int:
    location, _ = split_location(args.repo)
    opts = retention_options(args)
    with open_repository(args, run, location, lock="shared") as repo:
        report = extend_retention(repo, opts)
        requests = requests_of(repo)
    render_retention(report, requests, as_json=args.json)
    return EXIT_OK
