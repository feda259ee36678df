"""AWS Lambda entry point of a scale-out backup: ``packvault.serverless.scaleout.handler(event, context)``.

A Step Functions state machine (terraform: the scale-out module) runs one backup of a large bucket as three
kinds of invocations of this function, told apart by the event's ``action``:

- ``{"action": "plan", "source": "s3://bucket/prefix", "parts": N, "output": "s3://bucket/key",
  "inventory": "s3://.../manifest.json" (optional)}``: write the plan (``archive/partition.py``) to
  ``output``, where the Distributed Map's ItemReader reads it;
- ``{"action": "part", "archive": "NAME", "item": {<one plan element>}}``: back up the element's key range
  into the archive ``NAME.part{K}`` under a shared lock, like every backup.  A part that reaches its deadline
  checkpoints (what it uploaded is indexed) and RAISES ``PartIncomplete``: the state machine's Retry on that
  error runs the same iteration again, which resumes through deduplication and the files cache;
- ``{"action": "merge", "archive": "NAME", "parts": N}``: merge ``NAME.part0`` .. ``NAME.part{N-1}`` into
  ``NAME`` (``maintenance/merge.py``) and retire the parts.

Every action is idempotent, because Step Functions retries and may run an iteration twice: a part whose
archive exists (or whose merge exists) answers "already-complete", a merge that exists retires what is left.

Repository, passphrase, source and archive naming come from the same job settings as the scheduled handler
(``job.py``, ``secrets.py``, ``deadline.py``): ``NAME`` defaults to ``{prefix}-{period stamp}``, so the
three kinds of invocation of one run agree on it without passing it around.  The return value is a small
JSON object (a Map state collects one per part; the 256 KiB state limit forbids returning the plan itself).
"""

from __future__ import annotations

import json
import os
import time

from ..errors import PackvaultError, UsageError
from .deadline import Deadline
from .handler import JsonLog, prepare_environment
from .job import Job, load_job
from .secrets import unlock_with_secret

SCALEOUT_ACTIONS = ("plan", "part", "merge")


class PartIncomplete(PackvaultError):
    """A part stopped at its deadline; what it uploaded is indexed.  The state machine retries the iteration
    on this error name (``Retry: ErrorEquals ["PartIncomplete"]``), and the retry finishes the part."""

    exit_code = 75


def handler(event, context=None) -> dict:
    """The Lambda handler; also callable in-process (tests, a local driver) with any object as ``context``."""
    started = time.monotonic()
    if isinstance(event, str):
        event = json.loads(event or "{}")
    event = dict(event or {})
    prepare_environment()
    log = JsonLog(getattr(context, "aws_request_id", None))
    deadline = Deadline.from_context(context)
    action = str(event.get("action") or "").lower()
    result: dict = {"action": action, "status": "error"}
    try:
        if action not in SCALEOUT_ACTIONS:
            raise UsageError(f"unknown scale-out action {action!r}", hint=f"use one of {', '.join(SCALEOUT_ACTIONS)}")
        job = _job(event)
        log("scaleout.start", action=action, **{k: v for k, v in job.describe().items() if k != "action"})
        if action == "plan":
            result = _plan(event, job, log)
        else:
            result = _with_repository(job, deadline, lambda repo: _run(action, event, job, repo, deadline, log))
    except PartIncomplete as exc:
        log("scaleout.end", level="warning", action=action, status="incomplete", error=exc.one_line())
        raise
    except PackvaultError as exc:
        log("scaleout.end", level="error", action=action, error=exc.one_line(), exit_code=exc.exit_code)
        raise
    result["duration"] = round(time.monotonic() - started, 3)
    log("scaleout.end", **result)
    return result


def _job(event: dict) -> Job:
    """The job's settings (environment, overridden by the event), read as a backup job: its archive name and
    sources; the scale-out keys of the event are not the job's."""
    settings = {k: v for k, v in event.items() if k not in ("action", "archive", "item", "parts", "output", "source")}
    settings["action"] = "backup"
    if event.get("archive"):
        settings["archive"] = event["archive"]
    return load_job(settings)


def _run(action: str, event: dict, job: Job, repo, deadline: Deadline, log: JsonLog) -> dict:
    if action == "part":
        return _part(event, job, repo, deadline, log)
    return _merge(event, job, repo, log)


def _with_repository(job: Job, deadline: Deadline, work) -> dict:
    from ..repository.repository import Repository
    from ..settings import Settings

    repo = Repository(job.repository, settings=Settings.from_environ(os.environ))
    try:
        repo.open(None, lock=None)
        unlock_with_secret(repo)
        repo.acquire_lock(exclusive=False, wait=deadline.lock_wait(repo.settings.lock_wait))
        result = work(repo)
        result["requests"] = repo.request_stats()
        return result
    finally:
        repo.close()


def _plan(event: dict, job: Job, log: JsonLog) -> dict:
    from ..archive.partition import plan_source, write_plan
    from ..storage.settings import from_environment

    source = event.get("source") or (job.sources[0] if len(job.sources) == 1 else None)
    if not source:
        raise UsageError("no source to plan", hint="set 'source' in the event, or one PACKVAULT_SOURCES entry")
    output = event.get("output")
    if not isinstance(output, str) or not output.startswith("s3://"):
        raise UsageError("the plan needs an 'output' s3://bucket/key", hint="where the Map's ItemReader reads it")
    try:
        parts = int(event.get("parts", 0))
    except (TypeError, ValueError):
        raise UsageError(f"'parts' must be a whole number, not {event.get('parts')!r}") from None
    settings = from_environment(os.environ)
    report = plan_source(source, parts, inventory_url=event.get("inventory"), settings=settings)
    requests = dict(report.requests)
    for key, value in write_plan(report.plan, output, settings).items():
        requests[key] = requests.get(key, 0) + value
    log("plan.done", parts=len(report.plan), objects=report.objects, bytes=report.bytes, output=output)
    return {
        "action": "plan",
        "status": "planned",
        "archive": job.archive,
        "output": output,
        "plan": output,  # the name the state machine's ResultSelector reads it by
        "parts": len(report.plan),
        "objects": report.objects,
        "bytes": report.bytes,
        "requests": requests,
    }


def _part(event: dict, job: Job, repo, deadline: Deadline, log: JsonLog) -> dict:
    from ..archive.create import ArchiveCreator, DeadlineReached
    from ..archive.partition import META_PART, PartRecord, PlanPart
    from ..archive.patterns import ExcludeMatcher
    from ..archive.sources import build_source

    element = PlanPart.decode(event.get("item"))
    name = f"{job.archive}.part{element.part}"
    result = {"action": "part", "archive": name, "objects": 0, "bytes": 0}
    existing = {entry.name for entry in repo.archive_entries()}
    if name in existing or job.archive in existing:
        log("part.skip", archive=name, reason="the part (or the merged archive) exists")
        return {**result, "status": "already-complete"}
    source, cache_name = build_source(
        [element.source],
        ExcludeMatcher(list(job.excludes)),
        True,
        lambda path, msg: creator.warn(path, msg),
        storage_settings=repo.settings.storage,
        key_range=element.key_range,
    )
    record = PartRecord(element.source, element.start, element.end, element.part, element.parts)
    creator = ArchiveCreator(
        repo,
        name,
        comment=f"scale-out part {element.part + 1} of {element.parts}",
        deadline=deadline.expired,
        files_cache_name=f"{cache_name}-part{element.part}",
        on_warning=lambda path, message: log("warning", level="warning", path=path, message=message),
        meta_extra={META_PART: record.encode()},
    )
    try:
        entry = creator.run(source, paths=[element.source], cmdline=["packvault.serverless.scaleout", "part"])
    except DeadlineReached:
        log("part.checkpoint", archive=name, nfiles=creator.stats.nfiles, remaining_s=deadline.remaining_seconds())
        raise PartIncomplete(f"part {name} is incomplete: stopped at the deadline; the retry resumes it") from None
    stats = creator.stats
    return {
        **result,
        "status": "created",
        "id": entry.hex,
        "objects": stats.nfiles,
        "bytes": stats.original_size,
        "warnings": len(stats.warnings),
    }


def _merge(event: dict, job: Job, repo, log: JsonLog) -> dict:
    from ..maintenance.merge import merge_parts

    try:
        parts = int(event.get("parts", 0))
    except (TypeError, ValueError):
        raise UsageError(f"'parts' must be a whole number, not {event.get('parts')!r}") from None
    if parts < 1:
        raise UsageError("merge needs 'parts': the number of parts of the plan")
    names = [f"{job.archive}.part{k}" for k in range(parts)]
    report = merge_parts(repo, job.archive, names, on_event=lambda what, part: log("merge.retired", part=part))
    log("merge.done", archive=job.archive, status=report.status, nitems=report.nitems)
    return {
        "action": "merge",
        "archive": job.archive,
        "status": report.status,
        "id": report.archive_id,
        "parts": len(report.parts),
        "nitems": report.nitems,
        "objects": report.nfiles,
        "bytes": report.original_size,
    }
