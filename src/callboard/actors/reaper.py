"""The lease reaper: reclaims jobs whose worker died.

A running job whose lease ran out goes back to queued for another attempt, or to
failed with "worker lost" when it has no attempts left (or to cancelled if a cancel
was requested). On an exclusive store (embedded SQLite, one process) every job still
running when the node starts belongs to a dead process, so the first pass reclaims
them all at once instead of waiting for their leases to run out.

It also keeps the store to its retention, about once every `prune_interval`: events
older than the event retention are pruned (each job's latest event stays), and jobs
that finished longer ago than the job retention are deleted with their events, in
batches, so the jobs table does not only grow. On PostgreSQL every node does this; a
delete is idempotent (and skips rows another node is deleting), so nothing is
coordinated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import trio

from ..errors import StoreUnavailable
from .ledger import Ledger

log = logging.getLogger("callboard.reaper")

_END_OF_TIME = datetime(9999, 1, 1, tzinfo=UTC)
_REAP_BATCH = 100
_PRUNE_BATCH = 5000
_JOB_PRUNE_BATCH = 1000


@dataclass(frozen=True, slots=True)
class ReaperStatistics:
    passes: int
    reclaimed: int
    pruned: int
    jobs_pruned: int = 0


class Reaper:
    name = "reaper"

    def __init__(
        self,
        ledger: Ledger,
        *,
        lease_owner: str,
        interval: float,
        event_retention: float | None = None,
        job_retention: float | None = None,
        prune_interval: float = 3600.0,
    ) -> None:
        self._ledger = ledger
        self._lease_owner = lease_owner
        self._interval = interval
        self._event_retention = event_retention
        self._job_retention = job_retention
        self._prune_interval = prune_interval
        self._next_prune = -math.inf
        self._passes = 0
        self._reclaimed = 0
        self._pruned = 0
        self._jobs_pruned = 0
        self._recovered_orphans = False

    def statistics(self) -> ReaperStatistics:
        return ReaperStatistics(
            passes=self._passes,
            reclaimed=self._reclaimed,
            pruned=self._pruned,
            jobs_pruned=self._jobs_pruned,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._ledger.store.exclusive and not self._recovered_orphans:
            # Before reporting ready, so no job of ours can be confused with an orphan.
            await self._reap_all(_END_OF_TIME, exclude_owner=self._lease_owner)
            self._recovered_orphans = True
        task_status.started()
        while True:
            try:
                await self._reap_all(self._ledger.now(), exclude_owner=None)
                if trio.current_time() >= self._next_prune:
                    await self._expire()
                    self._next_prune = trio.current_time() + self._prune_interval
            except StoreUnavailable:
                # The next pass retries; an outage is not a crash of the reaper.
                log.debug("store unavailable; the reaper retries next pass", exc_info=True)
            await trio.sleep(self._interval)

    async def _expire(self) -> None:
        if self._job_retention is not None:
            # Before the events: a pruned job takes all of its events with it.
            before = self._ledger.now() - timedelta(seconds=self._job_retention)
            while (gone := await self._ledger.store.prune_jobs(before, _JOB_PRUNE_BATCH)) > 0:
                self._jobs_pruned += gone
                log.debug("deleted %d finished jobs older than the retention", gone)
                if gone < _JOB_PRUNE_BATCH:
                    break
        if self._event_retention is not None:
            before = self._ledger.now() - timedelta(seconds=self._event_retention)
            while (pruned := await self._ledger.store.prune_events(before, _PRUNE_BATCH)) > 0:
                self._pruned += pruned
                if pruned < _PRUNE_BATCH:
                    break

    async def _reap_all(self, expired_before: datetime, exclude_owner: str | None) -> None:
        self._passes += 1
        while True:
            events = await self._ledger.reap(expired_before, exclude_owner, _REAP_BATCH)
            for event in events:
                log.warning(
                    "reclaimed job %s (%s): %s",
                    event.job_id,
                    event.job.job_type,
                    event.type,
                )
            self._reclaimed += len(events)
            if len(events) < _REAP_BATCH:
                return
