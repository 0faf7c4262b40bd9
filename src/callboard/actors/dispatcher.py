"""The dispatcher: claims runnable jobs and hands them to idle workers.

It claims at most as many jobs as there are idle workers (and as each job type's
concurrency limit still allows), highest priority first, and passes them on over a
zero-buffer channel, so a job is only ever claimed when a worker is free to take it
(backpressure). A worker that is only recording its last outcome counts as idle
(`Capacity.finishing`): the next claim overlaps that write instead of waiting for
it, which on PostgreSQL takes one round trip per job out of a busy worker's cycle.

It sleeps until one of: a submit or retry on this node (the wake-up channel, so the
fast path has no polling delay), a worker freeing its slot, the earliest `run_at` of
a delayed job, or the poll interval (which covers jobs made runnable by another
node).

A lone submit may skip the claim (`start_now`): when this node has an idle worker
(its type under its concurrency limit), is not claiming right now, and its last
claim emptied the queue with no wake-up since, the store inserts the job straight
into running under this node's lease, provided no queued job it would overtake is
waiting (`JobStore.insert_running`), and the job goes to a worker at once. That is
one round trip to the store instead of two (insert, then claim), and no dispatcher
wake-up in between: most of a lone job's latency on PostgreSQL. Batches, delayed
jobs and a busy node take the queue as before.

A freed slot rings only when a claim may find something: the last claim was full
or a job type hit its concurrency cap (more may be waiting), work was signalled
since the last claim, or the dispatcher parked with no timer because no worker (or
no type) was free, so a delayed job that came due meanwhile went unnoticed.
Otherwise the queue was empty when last looked at, and nothing but a signal or the
time of a delayed job can change that; a freed slot that rang anyway would cost a
claim (and a next_run_at) per finished job.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import trio

from ..errors import StoreUnavailable
from ..jobs import Inserted, NewJob
from ..runtime import Actor
from .capacity import Capacity
from .ledger import Ledger

log = logging.getLogger("callboard.dispatcher")


@dataclass(frozen=True, slots=True)
class DispatcherStatistics:
    claims: int
    dispatched: int
    started_on_submit: int
    wakeups: int
    idle_workers: int


class Dispatcher(Actor[None]):
    """Its inbox is a coalescing doorbell of size 1: any number of `wake()` calls
    before the dispatcher looks count once, which loses nothing because it re-reads
    the store after every wake-up."""

    def __init__(
        self,
        ledger: Ledger,
        capacity: Capacity,
        to_workers: trio.MemorySendChannel,
        *,
        lease_owner: str,
        lease_seconds: float,
        poll_interval: float = 2.0,
        max_batch: int = 64,
    ) -> None:
        super().__init__("dispatcher", inbox_size=1)
        self._ledger = ledger
        self._capacity = capacity
        self._to_workers = to_workers
        self._wakeups = 0
        self._new_work = True
        self._backlog = True
        self._lease_owner = lease_owner
        self._lease_seconds = lease_seconds
        self._poll_interval = poll_interval
        self._max_batch = max_batch
        self._claims = 0
        self._dispatched = 0
        self._started_on_submit = 0
        self._draining = False
        #: A claim is in flight: its limit counted the idle slots before it began.
        self._claiming = False
        #: The last claim took fewer jobs than it could: nothing was left runnable.
        self._queue_emptied = False
        #: Asleep without a timer until a worker is freed (see slot_freed).
        self._parked = False

    def statistics(self) -> DispatcherStatistics:  # type: ignore[override]
        return DispatcherStatistics(
            claims=self._claims,
            dispatched=self._dispatched,
            started_on_submit=self._started_on_submit,
            wakeups=self._wakeups,
            idle_workers=self._capacity.idle(),
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        outage = 0.5
        while not self._draining:
            try:
                if await self._dispatch_once():
                    continue  # a full batch: there may be more waiting right now
                pause = await self._sleep_seconds()
                outage = 0.5
            except StoreUnavailable:
                # Ride out an outage here: supervisor restarts are for bugs, and a few
                # seconds of unreachable store must not use up the restart budget.
                # The store reports the outage once; this is one of its retries.
                log.debug("store unavailable; retrying in %.1fs", outage, exc_info=True)
                pause, outage = outage, min(outage * 2, self._poll_interval * 4)
            with trio.move_on_after(pause):
                await self.inbox.receive()
        # Returning would count as an exit to the supervisor; a draining node stays idle.
        await trio.sleep_forever()

    def drain(self) -> None:
        """Stop claiming jobs (the node is shutting down); jobs already handed out run on."""
        self._draining = True
        self.wake()

    def wake(self) -> None:
        """Look at the store now: a job was submitted, retried or requeued."""
        self._new_work = True
        self._ring()

    def slot_freed(self) -> None:
        """A worker became free: look again if a claim may find something."""
        if self._new_work or self._backlog or self._parked:
            self._ring()

    def _ring(self) -> None:
        self._wakeups += 1
        try:
            self.send_nowait(None)
        except trio.WouldBlock:
            pass

    async def start_now(self, job: NewJob, now: datetime) -> Inserted | None:
        """Start a submitted job on an idle worker of this node without queueing it
        first (see the module docstring). None if it was not started: then nothing was
        written, and the caller inserts it queued."""
        if not self._may_start_now(job.job_type):
            return None
        attempt = 1  # a new job's first
        if not self._capacity.reserve_slot(job.id, attempt, job.job_type):
            return None  # this attempt holds a slot already: not a new job
        handed = False
        try:
            started = await self._ledger.store.insert_running(
                job,
                now,
                lease_owner=self._lease_owner,
                lease_expires_at=now + timedelta(seconds=self._lease_seconds),
            )
            if started is None:
                return None
            inserted, running = started
            # Leased to this node from now on: it reaches a worker even if the
            # submitter goes away. A slot is reserved, so a worker is free or about to be.
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 10):
                try:
                    await self._to_workers.send(running)
                    handed = True
                except trio.BrokenResourceError:
                    pass
            if handed:
                self._dispatched += 1
                self._started_on_submit += 1
            else:
                log.error(
                    "job %s was started on submit but no worker took it; its lease "
                    "will expire and the reaper will requeue or fail it",
                    job.id,
                )
            return inserted
        finally:
            if not handed:
                self._capacity.release_slot(job.id, attempt)

    def _may_start_now(self, job_type: str) -> bool:
        # Hints that queued jobs are waiting (the store's check is what guarantees no
        # job is overtaken; these spare it a statement bound to find that out).
        if self._new_work or not self._queue_emptied:
            return False
        # A worker free this moment, not one still recording an outcome: a job started
        # on submit is handed over at once.
        if self._draining or self._claiming or self._capacity.free_now() <= 0:
            return False
        caps = self._capacity.type_caps()
        if job_type not in caps:
            return False
        cap = caps[job_type]
        return cap is None or cap > 0

    async def _dispatch_once(self) -> bool:
        """Claim and hand out one batch; True if the batch was full."""
        idle = self._capacity.idle()
        if idle <= 0 or self._draining:
            return False
        caps = self._capacity.type_caps()
        if not any(cap is None or cap > 0 for cap in caps.values()):
            return False
        limit = min(idle, self._max_batch)
        self._new_work = False
        self._claiming = True
        try:
            jobs = await self._ledger.claim(limit, caps, self._lease_owner, self._lease_seconds)
        except BaseException:
            self._new_work = True
            raise
        finally:
            self._claiming = False
        self._claims += 1
        for job in jobs:
            self._capacity.reserve(job)
        self._queue_emptied = len(jobs) < limit
        self._backlog = len(jobs) == limit or any(
            cap == 0 for cap in self._capacity.type_caps().values()
        )
        for job in jobs:
            await self._to_workers.send(job)
            self._dispatched += 1
        return len(jobs) == limit

    async def _sleep_seconds(self) -> float:
        # Parked: no timer runs, so the next freed worker must ring (a start on
        # submit can fill the last slot without a full claim setting the backlog).
        self._parked = True
        if self._capacity.idle() <= 0:
            return math.inf  # only a freed worker (which rings) can change anything
        caps = self._capacity.type_caps()
        startable = [t for t, cap in caps.items() if cap is None or cap > 0]
        if not startable:
            return math.inf
        self._parked = False
        next_at = await self._ledger.store.next_run_at(startable)
        if next_at is None:
            return self._poll_interval
        until = (next_at - self._ledger.now()).total_seconds()
        # A floor, so a job another node holds locked (seen by next_run_at, skipped by
        # claim) cannot make this loop spin.
        return max(0.01, min(self._poll_interval, until))
