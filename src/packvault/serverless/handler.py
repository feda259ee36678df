"""AWS Lambda entry point of the scheduled job: ``packvault.serverless.handler(event, context)``.

One invocation: read the job (``job.py``), fetch the passphrase (``secrets.py``), open the repository, then

1. ``backup``: create the archive of the current period, unless it exists already ("already-complete");
2. prune with the job's retention policy, limited to the job's own archives (``{prefix}-*``, grouped by
   prefix only: a Lambda's host name changes from one sandbox to the next);
3. compact, when due (``PACKVAULT_COMPACT``: always / weekdays) or asked for (``{"action": "compact"}``);
   in a repository with S3 Object Lock followed, as the CLI's compact is, by the retention extension of
   every live object (``maintenance/retention_lock.py``; period ``PACKVAULT_RETENTION_EXTEND``, else the
   repository's retention), whose counts go into the summary.

A one-off ``{"action": "extract", "archive": NAME, "target": "s3://bucket/prefix"}`` (optional ``paths``,
``restore_tier``, ``restore_days``) restores an archive into a bucket.  Where its data packs are cold
(GLACIER, DEEP_ARCHIVE), the first invocation requests the restores of the packs it needs and returns
status "restore-pending" (not an error: restores take hours, far more than a function may run); the same
event invoked later (a schedule, a retry) finds them readable and restores the archive ("extracted").  S3
itself remembers the restores, so a later invocation in another sandbox (another /tmp) asks for none again.

Lambda stops a function hard at its timeout.  The handler watches ``context.get_remaining_time_in_millis()``
and lets ``ArchiveCreator`` stop *before* it, at max(20 s, 10 %) of the time the run started with: what was
uploaded is indexed (checkpointed), and the run returns status "incomplete".  The next invocation computes
the same archive name, deduplication makes the repeated part cheap (unchanged sources are skipped through
the files cache when the container is warm), and it finishes the archive.  Prune and compact run only in
the invocation that completed an archive (or in a maintenance-only job), never in one that is out of time.

Output: one JSON line per step on stdout (CloudWatch Logs), and a JSON summary as the return value.
Errors are logged and then raised, so Lambda counts the invocation as failed (its retries and the
dead-letter queue apply).  With ``PACKVAULT_RETRY_ON_DEADLINE=1`` an incomplete run raises too, which makes
Lambda's own asynchronous retry resume the backup a minute later, without a second schedule.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime

from ..archive.create import ArchiveCreator, DeadlineReached
from ..errors import PackvaultError
from .deadline import Deadline
from .job import Job, load_job
from .secrets import unlock_with_secret

LAMBDA_TMP_ROOT = "/tmp/packvault"  # noqa: S108 - Lambda's only writable place


class JsonLog:
    """JSON lines on stdout: CloudWatch Logs Insights can filter and aggregate them by field."""

    def __init__(self, request_id: str | None, stream=None):
        self.request_id = request_id
        self.stream = stream or sys.stdout

    def __call__(self, event: str, level: str = "info", **fields) -> None:
        record = {"ts": datetime.now(UTC).isoformat(timespec="milliseconds"), "level": level, "event": event}
        if self.request_id:
            record["request_id"] = self.request_id
        record.update(fields)
        self.stream.write(json.dumps(record, default=str, sort_keys=False) + "\n")
        self.stream.flush()


def prepare_environment(env=os.environ) -> None:
    """In Lambda (``AWS_LAMBDA_FUNCTION_NAME`` set) caches and keys go below /tmp, the only writable place;
    explicit settings win."""
    if not env.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    env.setdefault("PACKVAULT_CACHE_DIR", f"{LAMBDA_TMP_ROOT}/cache")
    env.setdefault("PACKVAULT_CONFIG_DIR", f"{LAMBDA_TMP_ROOT}/config")


def handler(event, context=None) -> dict:
    """The Lambda handler; also callable in-process (tests, a cron job) with any object as ``context``."""
    started = time.monotonic()
    if isinstance(event, str):
        event = json.loads(event or "{}")
    prepare_environment()
    log = JsonLog(getattr(context, "aws_request_id", None))
    deadline = Deadline.from_context(context)
    summary: dict = {"status": "error"}
    try:
        job = load_job(event)
        summary = {"status": None, **job.describe()}
        log("job.start", **job.describe(), remaining_s=deadline.remaining_seconds(), margin_s=deadline.margin)
        summary.update(run_job(job, deadline, log))
    except DeadlineReached:
        raise  # only with PACKVAULT_RETRY_ON_DEADLINE; already logged
    except PackvaultError as exc:
        summary.update(status="error", error=exc.one_line(), exit_code=exc.exit_code)
        summary["duration"] = round(time.monotonic() - started, 3)
        log("job.end", level="error", **summary)
        raise
    except Exception as exc:  # a bug: still one parseable line before Lambda prints the traceback
        summary.update(status="error", error=f"{type(exc).__name__}: {exc}", exit_code=2)
        summary["duration"] = round(time.monotonic() - started, 3)
        log("job.end", level="error", **summary)
        raise
    summary["duration"] = round(time.monotonic() - started, 3)
    log("job.end", **summary)
    if summary["status"] == "incomplete" and os.environ.get("PACKVAULT_RETRY_ON_DEADLINE", "") in ("1", "true"):
        raise DeadlineReached(f"archive {job.archive} is not complete yet; Lambda's retry resumes it")
    return summary


def run_job(job: Job, deadline: Deadline, log: JsonLog) -> dict:
    from ..repository.repository import Repository
    from ..settings import Settings

    result: dict = {"status": None}
    repo = Repository(job.repository, settings=Settings.from_environ(os.environ), s3_options=job.s3_options())
    try:
        repo.open(None, lock=None)
        unlock_with_secret(repo)
        if job.action == "extract":
            repo.acquire_lock(exclusive=False, wait=deadline.lock_wait(repo.settings.lock_wait))
            result.update(_extract(repo, job, log))
            result["requests"] = repo.request_stats()
            return result
        if job.does_backup:
            repo.acquire_lock(exclusive=False, wait=deadline.lock_wait(repo.settings.lock_wait))
            result.update(_backup(repo, job, deadline, log))
            if result["status"] != "created":
                result["requests"] = repo.request_stats()
                return result
        else:
            result["status"] = "done"
        if job.prune_due():
            if repo.lock_manager is None:
                repo.acquire_lock(exclusive=False, wait=deadline.lock_wait(repo.settings.lock_wait))
            result["prune"] = _prune(repo, job, log)
        if job.compact_due():
            result["compact"] = _compact(repo, job, deadline, log)
        result["requests"] = repo.request_stats()
        return result
    finally:
        repo.close()


def _backup(repo, job: Job, deadline: Deadline, log: JsonLog) -> dict:
    from ..archive.patterns import ExcludeMatcher
    from ..archive.sources import build_source

    if any(entry.name == job.archive for entry in repo.archive_entries()):
        log("create.skip", archive=job.archive, reason="an archive of this period exists")
        return {"status": "already-complete", "archive": job.archive}
    last_report = [time.monotonic()]

    def progress(stats, path: str) -> None:
        now = time.monotonic()
        if now - last_report[0] >= 30:
            last_report[0] = now
            log("create.progress", nfiles=stats.nfiles, bytes_read=stats.bytes_read, path=path)

    source, files_cache_name = build_source(
        list(job.sources),
        ExcludeMatcher(list(job.excludes)),
        True,
        lambda path, msg: creator.warn(path, msg),
        storage_settings=repo.settings.storage,
    )
    creator = ArchiveCreator(
        repo,
        job.archive,
        comment=f"scheduled job {job.prefix}",
        progress=progress,
        deadline=deadline.expired,
        files_cache_name=files_cache_name,
        on_warning=lambda path, message: log("warning", level="warning", path=path, message=message),
    )
    log("create.start", archive=job.archive, sources=job.describe()["sources"])
    result: dict = {"archive": job.archive}
    try:
        entry = creator.run(source, paths=list(job.sources), cmdline=["packvault.serverless.handler"])
    except DeadlineReached:
        result["status"] = "incomplete"
        log("create.checkpoint", archive=job.archive, remaining_s=deadline.remaining_seconds())
    else:
        result["status"] = "created"
        result["archive_id"] = entry.hex
        log("create.done", archive=job.archive, id=entry.hex)
    result["stats"] = creator.stats.as_dict()
    result["warnings"] = creator.stats.warnings[:100]
    source_requests = getattr(source, "requests", None)
    if source_requests is not None:
        result["source_requests"] = source_requests.snapshot()
    return result


def _prune(repo, job: Job, log: JsonLog) -> dict:
    from ..maintenance.prune import PruneOptions, prune

    decisions = prune(repo, PruneOptions(job.prune, match=f"{job.prefix}-*", group_by=("prefix",)))
    pruned = [d.archive.name for d in decisions if not d.keep]
    log("prune.done", kept=len(decisions) - len(pruned), pruned=pruned)
    return {"kept": len(decisions) - len(pruned), "pruned": pruned}


def _compact(repo, job: Job, deadline: Deadline, log: JsonLog) -> dict:
    from ..maintenance.compact import CompactOptions, compact
    from ..units import parse_duration

    if not deadline.has_time_for_maintenance():
        log("compact.skip", reason="not enough time left", remaining_s=deadline.remaining_seconds())
        return {"skipped": "not enough time left"}
    if repo.lock_manager is not None:  # shared (backup) -> exclusive
        repo.lock_manager.release()
        repo.lock_manager = None
    repo.acquire_lock(exclusive=True, wait=deadline.lock_wait(repo.settings.lock_wait))
    min_age = parse_duration(job.compact_min_age, what="compact_min_age", allow_zero=True).total_seconds()
    report = compact(repo, CompactOptions(threshold=job.compact_threshold, min_age=min_age))
    if repo.config is not None and repo.config.object_lock:  # what is still live stays protected
        from ..maintenance.retention_lock import RetentionOptions, extend_retention

        extended = extend_retention(repo, RetentionOptions(period=job.retention_extend))
        report.retention = extended.as_dict()
        log("retention.extended", **{k: v for k, v in report.retention.items() if k != "requests"})
    data = report.as_dict()
    log("compact.done", **{k: v for k, v in data.items() if k not in ("requests", "retention")})
    return data


def _extract(repo, job: Job, log: JsonLog) -> dict:
    """Restore ``job.archive`` into ``job.target``, or request the restores of its cold packs (module doc)."""
    from ..archive.archive import iter_archive_items, load_archive
    from ..archive.extract import PathSelector, chunk_ids
    from ..archive.s3restore import S3Restorer
    from ..repository.reader import ChunkReader
    from ..repository.restores import PackRestorer

    assert job.target is not None
    with ChunkReader(repo) as reader:
        meta = load_archive(reader, repo.find_archive(job.archive))
        selected = PathSelector(list(job.paths))

        def items():
            return (item for item in iter_archive_items(reader, meta) if selected(item))

        restorer = PackRestorer(repo, tier=job.restore_tier, days=job.restore_days)
        if repo.cold_data_packs or restorer.has_pending():
            plan = restorer.prepare(restorer.needed(chunk_ids(items())))
            if plan.waiting:
                pending = {
                    "packs": plan.packs,
                    "requested": plan.requested,
                    "waiting": len(plan.waiting),
                    "waiting_bytes": plan.waiting_bytes,
                }
                log("restore.pending", archive=job.archive, **pending)
                return {"status": "restore-pending", "archive": job.archive, "restores": pending}
        extractor = S3Restorer(
            reader,
            job.target,
            overwrite="never",
            settings=repo.settings.storage,
            warn=lambda path, message: log("warning", level="warning", path=path, message=message),
        )
        log("extract.start", archive=job.archive, target=job.describe()["target"])
        stats = extractor.run(items())
        restorer.finished()
    warnings = stats.warnings + [f"{path}: matches nothing in the archive" for path in selected.unmatched()]
    log("extract.done", archive=job.archive, **stats.as_dict())
    return {
        "status": "extracted",
        "archive": job.archive,
        "stats": stats.as_dict(),
        "warnings": warnings[:100],
        "target_requests": extractor.requests.snapshot(),
    }
