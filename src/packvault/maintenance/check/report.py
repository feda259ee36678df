"""What ``check`` reports and what it is asked to do: problems, the report, per-pack and per-archive findings,
and the options (validated here, so the CLI and any other caller get the same one-line refusals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...errors import UsageError

FLAG_SEEN = 2  # the entry's location holds an intact object with its id
FLAG_BAD = 4  # the entry's location does not (missing pack, damaged or absent object)


# --- results -----------------------------------------------------------------------------------------------


@dataclass
class Problem:
    """One thing wrong, with everything known about where it is."""

    level: str  # repository | archives | data
    kind: str  # short machine-readable code, e.g. "object-damaged"
    message: str
    pack: str | None = None
    offset: int | None = None
    object: str | None = None  # hex object / chunk id
    archive: str | None = None
    path: str | None = None


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    complete: bool = True  # False when --max-duration or a subset left data packs unread

    def add(self, level: str, kind: str, message: str, **where) -> Problem:
        problem = Problem(level, kind, message, **where)
        self.problems.append(problem)
        return problem

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n


@dataclass
class PackState:
    kind: int
    name: str
    size: int
    scanned: bool = False
    damaged: list[tuple[int, int, str]] = field(default_factory=list)  # [start, end) and why
    unindexed: int = 0
    indexed: int = 0
    misnamed: bool = False  # its bytes match neither its content name nor its copy-forward name


@dataclass(frozen=True)
class CheckOptions:
    repository_only: bool = False
    archives_only: bool = False
    verify_data: bool = False
    subset: str | None = None
    max_duration: float | None = None
    repair: bool = False
    dry_run: bool = False
    processes: int | None = None  # worker processes verifying data packs; None: one per CPU; 0: none

    def __post_init__(self) -> None:
        """Refuse combinations that cannot run, before the repository is opened (one line each)."""
        if self.repository_only and self.archives_only:
            raise UsageError("--repository-only and --archives-only exclude each other")
        if self.subset:
            if "/" in self.subset:
                parse_group(self.subset)
            else:
                parse_percent(self.subset)
        if self.repository_only and (self.verify_data or self.subset):
            raise UsageError("--verify-data needs the key; it cannot run with --repository-only")
        if self.repair and self.repository_only:
            raise UsageError("--repair needs the key; it cannot run with --repository-only")
        if self.repair and (self.subset or self.max_duration):
            raise UsageError("--repair needs a full check", hint="drop --read-data-subset / --max-duration")
        if self.dry_run and not self.repair:
            raise UsageError("--dry-run only applies to --repair")
        if self.processes is not None and self.processes < 0:
            raise UsageError("--processes must be 0 or more")
        if self.max_duration is not None and self.max_duration <= 0:
            raise UsageError("--max-duration must be positive")


@dataclass
class ArchiveFindings:
    items: int = 0
    files: int = 0
    damaged_files: int = 0
    lost_item_chunks: int = 0
    lost_item_ids: list[bytes] = field(default_factory=list)
    unindexed: int = 0
    healable: int = 0
    known_damaged: int = 0
    healable_paths: set[bytes] = field(default_factory=set)

    @property
    def needs_rewrite(self) -> bool:
        return bool(self.damaged_files or self.lost_item_chunks or self.healable)


# --- options ---------------------------------------------------------------------------------------------------


def parse_percent(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise UsageError(f"invalid --read-data-subset {text!r}", hint="use N% or n/t") from None
    if not 0 < value <= 100:
        raise UsageError(f"--read-data-subset {text!r} must be between 0% and 100%")
    return value


def parse_group(text: str) -> tuple[int, int]:
    try:
        n, t = (int(part) for part in text.split("/", 1))
    except ValueError:
        raise UsageError(f"invalid --read-data-subset {text!r}", hint="use N% or n/t") from None
    if not 1 <= n <= t:
        raise UsageError(f"--read-data-subset {text!r}: need 1 <= n <= t")
    return n, t
