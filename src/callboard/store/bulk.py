"""Actions on every job a filter matches: retry, cancel, and the prune of finished
jobs past an age.

A bulk action walks the matching jobs a page at a time (`BATCH`, newest first, by the
list's keyset cursor), so a million matches never sit in memory at once, and acts on
each job as the single-job action does (its own transaction and event, a running job
stopped on whichever node runs it). Retry applies to failed and cancelled jobs,
cancel to queued and running ones; matching jobs in other statuses are counted as
skipped, by status, and a job that changed between its page being read and the
action (it ended, or another operator acted first) as `changed`. A dry run only
counts. A job made runnable behind the walk (created after it started) is not
touched: the action is about the jobs that matched when it began.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ..errors import InvalidRequest, InvalidTransition, JobNotFound
from ..jobs import RETRYABLE, Job, JobFilter, JobStatus, iso
from .base import JobStore

#: Jobs read (and acted on) per page.
BATCH = 500
#: Finished jobs deleted per transaction by a prune.
PRUNE_BATCH = 1000

Action = Literal["retry", "cancel"]

APPLIES_TO: dict[str, frozenset[JobStatus]] = {
    "retry": RETRYABLE,
    "cancel": frozenset({JobStatus.QUEUED, JobStatus.RUNNING}),
}


@dataclass(slots=True)
class BulkReport:
    """`matched`: jobs the filter matches (in its statuses); `eligible`: those the
    action applies to, when the action began; `applied`: acted on (for cancel,
    `stopping` of them were running and asked to stop); `skipped`: matched jobs the
    action does not apply to, by status; `changed`: eligible when counted but not by
    the time their turn came."""

    action: str
    dry_run: bool
    matched: int = 0
    eligible: int = 0
    applied: int = 0
    stopping: int = 0
    changed: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "dryRun": self.dry_run,
            "matched": self.matched,
            "eligible": self.eligible,
            "applied": self.applied,
            "stopping": self.stopping,
            "changed": self.changed,
            "skipped": dict(self.skipped),
        }


async def bulk_apply(
    store: JobStore,
    act: Callable[[str], Awaitable[Job]],
    action: Action,
    wanted: JobFilter,
    *,
    dry_run: bool = False,
    batch: int = BATCH,
) -> BulkReport:
    """Apply `act` (the runtime's single-job retry or cancel) to every job `wanted`
    matches that `action` applies to. A filter by source task is refused: the counts
    of a dry run could not honour it."""
    if wanted.source_task_id is not None:
        raise InvalidRequest("a bulk action does not filter by source task")
    requested = wanted.statuses if wanted.statuses is not None else frozenset(JobStatus)
    counts = await store.count_by_status(
        wanted.company_id,
        job_type=wanted.job_type,
        created_after=wanted.created_after,
        created_before=wanted.created_before,
    )
    report = BulkReport(action, dry_run)
    targets = requested & APPLIES_TO[action]
    for status in sorted(requested):
        report.matched += counts[status]
        if status in targets:
            report.eligible += counts[status]
        elif counts[status]:
            report.skipped[str(status)] = counts[status]
    if dry_run:
        return report
    cursor: str | None = None
    while targets:
        page = await store.list_jobs(
            wanted.company_id,
            status=targets,
            job_type=wanted.job_type,
            created_after=wanted.created_after,
            created_before=wanted.created_before,
            limit=batch,
            cursor=cursor,
        )
        for job in page.items:
            try:
                after = await act(job.id)
            except (InvalidTransition, JobNotFound):
                report.changed += 1
                continue
            report.applied += 1
            if action == "cancel" and after.status is JobStatus.RUNNING:
                report.stopping += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return report


@dataclass(frozen=True, slots=True)
class PruneReport:
    dry_run: bool
    older_than_seconds: float
    finished_before: datetime
    matched: int
    deleted: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "dryRun": self.dry_run,
            "olderThanSeconds": self.older_than_seconds,
            "finishedBefore": iso(self.finished_before),
            "matched": self.matched,
            "deleted": self.deleted,
        }


async def prune_finished(
    store: JobStore,
    now: datetime,
    older_than: float,
    *,
    dry_run: bool = False,
    batch: int = PRUNE_BATCH,
) -> PruneReport:
    """Delete the jobs that finished more than `older_than` seconds before `now`, with
    their events, `batch` at a time (what the retention does, on demand)."""
    before = now - timedelta(seconds=older_than)
    matched = await store.count_prunable_jobs(before)
    deleted = 0
    if not dry_run:
        while (gone := await store.prune_jobs(before, batch)) > 0:
            deleted += gone
            if gone < batch:
                break
    return PruneReport(dry_run, older_than, before, matched, deleted)
