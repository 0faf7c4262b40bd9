"""The lease keeper: renews the leases of every job running on this node, in one store
call per round rather than one per job.

Each running job has a watchdog: a cancel scope around its handler whose deadline is
a margin before the lease runs out. A successful renewal pushes the deadline out; if
renewals fail (the store is down) or hang, the watchdog fires and the handler stops
before the lease can expire, so the reaper of another node never takes a job that is
still running here.

A job is due for renewal a third of the lease after its last one. Each round renews
the jobs due now and those due within the next sixth of the lease, so jobs started
close together share their renewals. A renewal tells the keeper, per job, whether
the lease is still held (if not, the job stops at once and writes nothing more) and
whether a cancel was requested (from another node: the job stops and ends cancelled).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta

import trio

from ..errors import StoreUnavailable
from .capacity import RunningJob
from .ledger import Ledger

log = logging.getLogger("callboard.worker")


@dataclass(slots=True)
class _Held:
    running: RunningJob
    watchdog: trio.CancelScope
    renew_at: float


class LeaseKeeper:
    def __init__(self, ledger: Ledger, lease_owner: str, lease_seconds: float) -> None:
        self._ledger = ledger
        self._owner = lease_owner
        self._lease = lease_seconds
        self._interval = lease_seconds / 3
        #: How long before the lease runs out a job with no renewal is stopped.
        self.margin = min(lease_seconds / 6, 5.0)
        self._held: dict[int, _Held] = {}
        self._doorbell = trio.Event()
        self.rounds = 0
        #: `time.monotonic()` by which the earliest held job must have been stopped (its
        #: watchdog's deadline), or None. A plain float, read by the loop watchdog's
        #: thread: a loop blocked past it cannot stop that job, so the process must end.
        self.stop_by: float | None = None

    def _publish(self) -> None:
        deadlines = [held.watchdog.deadline for held in self._held.values()]
        if not deadlines:
            self.stop_by = None
            return
        self.stop_by = time.monotonic() + (min(deadlines) - trio.current_time())

    def hold(self, running: RunningJob) -> trio.CancelScope:
        """Start keeping this job's lease; the watchdog scope to run its handler in."""
        expires = self._ledger.clock.trio_deadline(running.job.lease_expires_at)
        watchdog = trio.CancelScope(deadline=expires - self.margin)
        self._held[id(running)] = _Held(running, watchdog, trio.current_time() + self._interval)
        self._publish()
        self._doorbell.set()
        return watchdog

    def release(self, running: RunningJob) -> None:
        self._held.pop(id(running), None)
        self._publish()

    def deadline(self, running: RunningJob) -> float:
        """The trio time by which this job must have stopped writing: the margin before
        its lease, as last renewed, runs out (now if it is not held)."""
        held = self._held.get(id(running))
        return trio.current_time() if held is None else held.watchdog.deadline

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            if not self._held:
                await self._doorbell.wait()
                self._doorbell = trio.Event()
                continue
            # A job that starts later is due later, so the earliest due time stands.
            await trio.sleep_until(min(h.renew_at for h in self._held.values()))
            horizon = trio.current_time() + self._interval / 2
            due = [h for h in self._held.values() if h.renew_at <= horizon]
            if due:
                await self._renew(due)

    async def _renew(self, due: list[_Held]) -> None:
        self.rounds += 1
        new_expiry = self._ledger.now() + timedelta(seconds=self._lease)
        try:
            renewal = await self._ledger.renew(
                [h.running.job.id for h in due], self._owner, new_expiry
            )
        except StoreUnavailable:
            # The store reports the outage once; a lease that would run out stops its job.
            log.debug("could not renew %d job lease(s)", len(due), exc_info=True)
            retry_at = trio.current_time() + min(1.0, self._interval)
            for held in due:
                held.renew_at = retry_at
            return
        deadline = self._ledger.clock.trio_deadline(new_expiry) - self.margin
        next_at = trio.current_time() + self._interval
        for held in due:
            running = held.running
            if id(running) not in self._held:
                continue  # it ended while the renewal was in flight
            job_id = running.job.id
            if job_id not in renewal.held:
                running.lease_lost = True
                running.scope.cancel()
                self.release(running)
                continue
            held.watchdog.deadline = deadline
            held.renew_at = next_at
            self._publish()
            if job_id in renewal.cancel_requested:
                running.cancel_requested = True
                running.scope.cancel()
