"""The running node: `run_node` builds and runs its actor tree, and `RunningBoard` is
what `async with board.running() as rt` gives you.

The tree `run_node` builds:

    root supervisor (one_for_one)
    ├── watchdog                     ends the process if its loop stays blocked (half a lease)
    ├── presence                     announces this node in the store; warns of unshared assets
    ├── broker                       fan-out of committed events
    ├── reaper                       reclaims jobs whose lease ran out
    ├── leases                       renews the leases of the jobs running here
    ├── workers supervisor (one_for_one)
    │   └── worker-1 .. worker-N     run handlers, one job each at a time
    ├── dispatcher                   claims runnable jobs for idle workers
    ├── scheduler                    makes each schedule's job at its tick
    ├── stats                        runtime.stats on the operator feed, every second
    └── (extra children: the web server under `callboard serve`)

Supervision: one_for_one at both levels, because the children share no state that a
crash could corrupt: a crashed worker's job is recovered by its lease, a crashed
dispatcher re-reads the store. More than 5 restarts in 60 s at the root (or more
than max(3, workers) in the pool) escalates as SupervisorEscalation out of
`running()`.

Children start in that order, each ready before the next. Leaving `running()` drains
the node: no new submits, no new claims, running jobs get `shutdown_grace` seconds
to finish, then everything is cancelled. A job still running then keeps its lease,
which runs out; the reaper of the next start (or of another node) reclaims it.

The store's four hooks (`on_commit`, `on_jobs_queued`, `on_cancel_requested`,
`events_wanted`) are set in `run_node`, and nowhere else.

Every `RunningBoard` method validates its input first and raises a typed error
(`UnknownJobType`, `InvalidRequest`, `CompanyNotFound`, `JobNotFound`,
`InvalidTransition`) having written nothing.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio

from .actors.broker import Broker, BrokerStatistics
from .actors.capacity import Capacity
from .actors.dispatcher import Dispatcher, DispatcherStatistics
from .actors.event_stream import EventStream, open_event_stream
from .actors.lease_keeper import LeaseKeeper
from .actors.ledger import Ledger
from .actors.presence import Presence
from .actors.reaper import Reaper, ReaperStatistics
from .actors.scheduler import Scheduler, apply_changes
from .actors.stats import StatsReporter
from .actors.worker import JobRunner, Worker, WorkerSettings
from .config import Settings
from .errors import (
    AssetNotFound,
    CompanyExists,
    CompanyNotFound,
    InvalidRequest,
    JobNotFound,
    Lagged,
    ScheduleNotFound,
    ShuttingDown,
)
from .jobs import (
    SCHEDULE_FIELDS,
    Asset,
    Company,
    Inserted,
    Job,
    JobFilter,
    JobSpec,
    JobStatus,
    JobTypeInfo,
    NewJob,
    Page,
    Schedule,
    as_statuses,
    check_max_running,
    check_name,
    check_reference,
)
from .runtime import ChildSpec, Restart, Strategy, Supervisor, SupervisorStatistics
from .runtime.clock import TrioWallClock
from .runtime.groups import unwrap_sole
from .runtime.watchdog import LoopWatchdog, WatchdogStatistics
from .storage.gc import GcReport, collect_garbage
from .storage.location import open_storage
from .storage.names import UPLOADS
from .storage.writer import AssetStorage, Chunks
from .store.base import JobStore, NodeInfo
from .store.bulk import BulkReport, PruneReport, bulk_apply, prune_finished

if TYPE_CHECKING:
    from .board import Board

log = logging.getLogger("callboard")

MAX_PAGE = 500
WAIT_RECHECK_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class WorkerState:
    name: str
    job_id: str | None
    job_type: str | None
    running_for: float | None
    completed: int


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    lease_owner: str
    accepting: bool
    workers: tuple[WorkerState, ...]
    broker: BrokerStatistics
    dispatcher: DispatcherStatistics
    reaper: ReaperStatistics
    supervisor: SupervisorStatistics | None
    loop: WatchdogStatistics


class RunningBoard:
    def __init__(
        self,
        *,
        ledger: Ledger,
        storage: AssetStorage,
        capacity: Capacity,
        workers: Sequence[Worker],
        dispatcher: Dispatcher,
        reaper: Reaper,
        lease_owner: str,
        settings: Settings,
        presence: Presence,
        leases: LeaseKeeper | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        #: The node's configuration (the web server reads its part from here).
        self.settings = settings
        self._leases = leases
        self._ledger = ledger
        self._store = ledger.store
        self._storage = storage
        self._capacity = capacity
        self._workers = list(workers)
        self._dispatcher = dispatcher
        self._reaper = reaper
        self._presence = presence
        self._scheduler = scheduler
        self.supervisor: Supervisor | None = None
        self.watchdog = LoopWatchdog()
        self.lease_owner = lease_owner
        self.accepting = True
        #: Set when the node starts draining: the web server stops, streams end.
        self.draining = trio.Event()
        self._drain_waits: list[Callable[[], Awaitable[None]]] = []
        self._completed_seen = 0

    @property
    def store(self) -> JobStore:
        """The JobStore, for read-only queries by the web layer."""
        return self._store

    @property
    def storage(self) -> AssetStorage:
        """Asset files (the web layer streams downloads from it)."""
        return self._storage

    def now(self) -> datetime:
        """The node's clock (wall time derived from trio's clock)."""
        return self._ledger.now()

    @property
    def job_types(self) -> list[str]:
        return self._ledger.registry.job_types()

    def job_type_details(self) -> list[JobTypeInfo]:
        """Every job type this node accepts and runs, by name: its defaults, its cap per
        node, and whether it is built in (`noop`; `demo.*` with `demo_types`)."""
        return [
            JobTypeInfo(s.job_type, s.timeout, s.max_attempts, s.concurrency, s.builtin)
            for s in self._ledger.registry.specs()
        ]

    # --- companies -----------------------------------------------------------------------

    async def create_company(self, name: str) -> Company:
        return await self._store.create_company(
            check_name("company name", name), self._ledger.now()
        )

    async def get_company(self, company_id: str) -> Company | None:
        return await self._store.get_company(company_id)

    async def get_company_by_name(self, name: str) -> Company | None:
        return await self._store.get_company_by_name(name)

    async def get_or_create_company(self, name: str) -> Company:
        """The company named `name`, made if there is none yet: what a program that
        runs again (or on several nodes at once) calls instead of `create_company`,
        which raises CompanyExists the second time."""
        name = check_name("company name", name)
        found = await self._store.get_company_by_name(name)
        if found is not None:
            return found
        try:
            return await self._store.create_company(name, self._ledger.now())
        except CompanyExists:
            # Another node or task made it between the read and the insert.
            made = await self._store.get_company_by_name(name)
            if made is None:
                raise
            return made

    async def companies(self) -> list[Company]:
        return await self._store.list_companies()

    async def set_company_max_running(self, company_id: str, max_running: int | None) -> Company:
        """Cap the company's running jobs on every node together (None: no cap). Jobs
        already running finish; claims start no more of its jobs while it is at the
        cap. Raises CompanyNotFound, or InvalidRequest for a cap out of range."""
        return await self._store.set_company_max_running(company_id, check_max_running(max_running))

    async def company_loads(self) -> dict[str, tuple[int, int]]:
        """Running and queued jobs of each company that has any (every node's), by id."""
        return await self._store.count_by_company()

    # --- jobs ----------------------------------------------------------------------------

    async def submit(
        self,
        company_id: str,
        job_type: str,
        input: Mapping[str, Any] | None = None,
        *,
        source_task_id: str | None = None,
        priority: int = 0,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the handler timeout, not this call's
        idempotency_key: str | None = None,
    ) -> Job:
        """Queue one job and return it (status queued), without waiting for it to run.
        With an idempotency key already used by this company, the existing job comes back."""
        spec = JobSpec(
            job_type,
            {} if input is None else input,
            source_task_id=source_task_id,
            priority=priority,
            delay=delay,
            max_attempts=max_attempts,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        (job,) = await self.submit_many(company_id, [spec])
        return job

    async def submit_many(self, company_id: str, specs: Iterable[JobSpec]) -> list[Job]:
        """Queue several jobs in one transaction: all of them, or (on any error) none."""
        specs = list(specs)
        if not self.accepting:
            raise ShuttingDown("the node is shutting down and accepts no new jobs")
        for index, spec in enumerate(specs):
            if not isinstance(spec, JobSpec):
                raise InvalidRequest(f"job {index}: expected a JobSpec, got {type(spec).__name__}")
        inserted = await self._ledger.submit(company_id, specs)
        return [item.job for item in inserted]

    async def get(self, job_id: str) -> Job:
        job = await self._store.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list(
        self,
        company_id: str | None,
        status: JobStatus | str | Collection[JobStatus | str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
        *,
        job_type: str | None = None,
        source_task_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> Page[Job]:
        """Newest first, `limit` (1-500) at a time; pass `page.next_cursor` for the next.
        `status` one status or several (any of them); created_after <= created_at <
        created_before."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
        return await self._store.list_jobs(
            company_id,
            status=_statuses(status),
            job_type=job_type,
            source_task_id=source_task_id,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )

    async def counts(self, company_id: str | None = None) -> dict[JobStatus, int]:
        return await self._store.count_by_status(company_id)

    async def cancel(self, job_id: str) -> Job:
        """A queued job ends cancelled at once; a running one is stopped (here at once,
        on another node at its next lease renewal) and then ends cancelled.
        Raises InvalidTransition for a job already finished."""
        outcome = await self._ledger.cancel(job_id)
        if outcome.event is None:
            self._capacity.cancel(job_id, leased_here=outcome.job.lease_owner == self.lease_owner)
        return outcome.job

    async def retry(self, job_id: str) -> Job:
        """Queue a failed or cancelled job again; it runs as the next attempt."""
        return await self._ledger.retry(job_id)

    async def bulk_retry(self, wanted: JobFilter, *, dry_run: bool = False) -> BulkReport:
        """Retry every failed or cancelled job `wanted` matches, a page at a time
        (`store/bulk.py`); a dry run only counts."""
        return await bulk_apply(self._store, self.retry, "retry", wanted, dry_run=dry_run)

    async def bulk_cancel(self, wanted: JobFilter, *, dry_run: bool = False) -> BulkReport:
        """Cancel every queued or running job `wanted` matches (`store/bulk.py`)."""
        return await bulk_apply(self._store, self.cancel, "cancel", wanted, dry_run=dry_run)

    async def prune_jobs(self, older_than: float, *, dry_run: bool = False) -> PruneReport:
        """Delete the jobs that finished more than `older_than` seconds ago, with their
        events (the job retention, on demand); their assets stay."""
        if not (isinstance(older_than, int | float) and 0 <= older_than < math.inf):
            raise InvalidRequest("older_than must be a number of seconds >= 0")
        return await prune_finished(self._store, self.now(), older_than, dry_run=dry_run)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:  # noqa: ASYNC109 - a public API (tests/unit/test_public_api.py)
        """The job once it is terminal. Raises TimeoutError after `timeout` seconds."""
        if timeout is not None and not (timeout >= 0 and math.isfinite(timeout)):
            raise InvalidRequest("timeout must be a non-negative number of seconds")
        with trio.move_on_after(math.inf if timeout is None else timeout):
            return await self._wait_terminal(job_id)
        raise TimeoutError(f"job {job_id} did not finish within {timeout:g} seconds")

    async def _wait_terminal(self, job_id: str) -> Job:
        while True:
            # Re-read now and then: a job run by another node may reach its end without
            # an event passing through this node's broker.
            with trio.move_on_after(WAIT_RECHECK_SECONDS):
                try:
                    async with open_event_stream(
                        self._store, self._ledger.broker, job_id=job_id
                    ) as events:
                        # Subscribed first, then read: a transition in between is not missed.
                        job = await self.get(job_id)
                        if job.terminal:
                            return job
                        async for event in events:
                            if event.job.terminal:
                                return event.job
                except Lagged:
                    continue
                # The broker closed: the node is stopping before the job finished.
                job = await self.get(job_id)
                if job.terminal:
                    return job
                raise ShuttingDown(f"the node is stopping; job {job_id} is still {job.status}")

    @asynccontextmanager
    async def subscribe(
        self,
        company_id: str | None = None,
        after_event_id: int | None = None,
        *,
        job_id: str | None = None,
        buffer: int | None = None,
        include_runtime_events: bool = False,
    ) -> AsyncIterator[EventStream]:
        """Job events of one company (or all), live; with `after_event_id`, first every
        stored event after it. Iterating raises `Lagged` if you fall behind: subscribe
        again with `after_event_id` set to the last id you saw.

        `include_runtime_events` adds this node's `worker.*` and `runtime.stats` events
        (`NodeEvent`, never stored): the operator's SSE feed uses it. The stream's
        `receive()` is safe to cancel, so a caller can interleave keep-alive pings."""
        if after_event_id is not None and (
            isinstance(after_event_id, bool)
            or not isinstance(after_event_id, int)
            or after_event_id < 0
        ):
            raise InvalidRequest("after_event_id must be a non-negative integer")
        async with open_event_stream(
            self._store,
            self._ledger.broker,
            company_id=company_id,
            job_id=job_id,
            after_event_id=after_event_id,
            buffer=buffer,
            include_runtime_events=include_runtime_events,
        ) as events:
            yield events

    # --- schedules -----------------------------------------------------------------------

    async def create_schedule(
        self,
        company_id: str,
        name: str,
        job_type: str,
        input: Mapping[str, Any] | None = None,
        *,
        cron: str | None = None,
        every: float | None = None,
        timezone: str = "UTC",
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the jobs' timeout, not this call's
        catch_up: str = "skip",
        paused: bool = False,
    ) -> Schedule:
        """A schedule of the company that makes a `job_type` job at every tick of `cron`
        (five fields, read in `timezone`) or every `every` seconds. Raises
        InvalidRequest, InvalidSchedule (a cron expression or timezone that means
        nothing), UnknownJobType, CompanyNotFound or ScheduleExists (the company has
        one of that name), having written nothing."""
        changes = {
            "name": name,
            "job_type": job_type,
            "input": {} if input is None else input,
            "cron": cron,
            "every": every,
            "timezone": timezone,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "catch_up": catch_up,
            "paused": paused,
        }
        schedule = apply_changes(self._ledger.registry, None, company_id, changes, self.now())
        made = await self._store.create_schedule(schedule)
        self._schedules_changed()
        return made

    async def schedules(
        self, company_id: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[Schedule]:
        """A company's schedules (None: every company's), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
        return await self._store.list_schedules(company_id, limit=limit, cursor=cursor)

    async def get_schedule(self, schedule_id: str, company_id: str | None = None) -> Schedule:
        """Raises ScheduleNotFound for an unknown id, or one of another company than
        `company_id` when given."""
        found = await self._store.get_schedule(schedule_id)
        if found is None or (company_id is not None and found.company_id != company_id):
            raise ScheduleNotFound(schedule_id)
        return found

    async def update_schedule(
        self, schedule_id: str, *, company_id: str | None = None, **changes: Any
    ) -> Schedule:
        """Change any of a schedule's fields (the keywords of `create_schedule`:
        `jobs.SCHEDULE_FIELDS`). Giving `cron` drops `every` and the reverse; a change
        of timing (or a resume) moves its next tick to the first one from now."""
        unknown = sorted(set(changes) - set(SCHEDULE_FIELDS))
        if unknown:
            raise InvalidRequest(
                f"unknown schedule field(s): {', '.join(unknown)}; "
                f"allowed: {', '.join(SCHEDULE_FIELDS)}"
            )
        while True:
            current = await self.get_schedule(schedule_id, company_id)
            updated = apply_changes(
                self._ledger.registry, current, current.company_id, changes, self.now()
            )
            stored = await self._store.update_schedule(updated)
            if stored is not None:
                self._schedules_changed()
                return stored
            # It ticked (or was edited) since it was read: apply the change to it anew.

    async def pause_schedule(self, schedule_id: str, company_id: str | None = None) -> Schedule:
        """No job until it is resumed; the ticks in between are not made up for."""
        return await self.update_schedule(schedule_id, company_id=company_id, paused=True)

    async def resume_schedule(self, schedule_id: str, company_id: str | None = None) -> Schedule:
        """Its next tick is the first one from now."""
        return await self.update_schedule(schedule_id, company_id=company_id, paused=False)

    async def delete_schedule(self, schedule_id: str, company_id: str | None = None) -> None:
        """The jobs it made stay. Raises ScheduleNotFound."""
        await self.get_schedule(schedule_id, company_id)
        if not await self._store.delete_schedule(schedule_id):
            raise ScheduleNotFound(schedule_id)
        self._schedules_changed()

    async def apply_declared_schedules(
        self, declared: Iterable[tuple[str, Mapping[str, Any]]]
    ) -> None:
        """Create, or update to match, the schedules declared on the Board
        (`Board.schedule`), by company and name."""
        for company_ref, fields in declared:
            company = await self._store.get_company(company_ref)
            if company is None:
                # Nodes that start together declare the same companies.
                company = await self.get_or_create_company(company_ref)
            existing = await self._store.get_schedule_by_name(company.id, fields["name"])
            if existing is None:
                await self.create_schedule(company.id, **fields)
            else:
                await self.update_schedule(existing.id, **fields)

    def _schedules_changed(self) -> None:
        if self._scheduler is not None:
            self._scheduler.wake()

    # --- assets --------------------------------------------------------------------------

    async def upload_asset(
        self,
        company_id: str,
        filename: str,
        content_type: str,
        chunks: Chunks,
        *,
        source_task_id: str | None = None,
    ) -> Asset:
        """Stream a file into the `uploads` namespace and record it. Raises AssetTooLarge
        over the cap; on any error nothing is kept (no file, no row)."""
        check_reference("sourceTaskId", source_task_id)
        if await self._store.get_company(company_id) is None:
            raise CompanyNotFound(company_id)
        stored = await self._storage.put(
            company_id, UPLOADS, filename, content_type, chunks, now=self.now()
        )
        asset = stored.as_asset(
            company_id, source_task_id=source_task_id, created_by_job_id=None, created_at=self.now()
        )
        try:
            return await self._store.insert_asset(asset)
        except BaseException:
            # The file is in place but its row is not: remove it (a crash here leaves
            # it to gc). A cancelled insert is shielded, so it did not commit either.
            await self._storage.delete(stored.object_key)
            raise

    async def get_asset(self, asset_id: str, company_id: str | None = None) -> Asset:
        """Raises AssetNotFound for an unknown id, or one of another company than
        `company_id` when given."""
        asset = await self._store.get_asset(asset_id)
        if asset is None or (company_id is not None and asset.company_id != company_id):
            raise AssetNotFound(asset_id)
        return asset

    async def list_assets(
        self,
        company_id: str,
        *,
        source_task_id: str | None = None,
        job_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Asset]:
        """A company's assets, newest first, optionally of one source task or one job."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}")
        return await self._store.list_assets(
            company_id,
            source_task_id=source_task_id,
            created_by_job_id=job_id,
            limit=limit,
            cursor=cursor,
        )

    async def collect_garbage(self, *, dry_run: bool = False) -> GcReport:
        """Delete asset files no row refers to, older than an hour (`storage_gc`)."""
        return await collect_garbage(self._storage, self._store, dry_run=dry_run)

    # --- the node ------------------------------------------------------------------------

    @property
    def node_count(self) -> int:
        """Live nodes on this node's store (itself included), as of its last beat."""
        return len(self._presence.live)

    @property
    def warnings(self) -> list[str]:
        """What the node warns about now, one line each (none make it unready): nodes
        sharing the queue that cannot serve each other's assets."""
        return list(self._presence.warnings)

    async def live_nodes(self) -> list[NodeInfo]:
        """Every node on this node's store seen lately, this one included, read now."""
        return await self._store.live_nodes(self.now() - self._presence.live_window)

    def lease_stop_by(self) -> float | None:
        """`time.monotonic()` by which the earliest running job must be stopped (read
        from the loop watchdog's thread)."""
        return self._leases.stop_by if self._leases is not None else None

    def running_jobs(self) -> list[tuple[str, Job]]:
        """(worker name, job) of every job running on this node's workers now."""
        return [(w.name, w.current.job) for w in self._workers if w.current is not None]

    def worker_states(self) -> list[WorkerState]:
        now = trio.current_time()
        states = []
        for worker in self._workers:
            current = worker.current
            states.append(
                WorkerState(
                    name=worker.name,
                    job_id=current.job.id if current else None,
                    job_type=current.job.job_type if current else None,
                    running_for=(now - current.started) if current else None,
                    completed=worker.completed,
                )
            )
        return states

    def statistics(self) -> RuntimeStatistics:
        return RuntimeStatistics(
            lease_owner=self.lease_owner,
            accepting=self.accepting,
            workers=tuple(self.worker_states()),
            broker=self._ledger.broker.statistics(),
            dispatcher=self._dispatcher.statistics(),
            reaper=self._reaper.statistics(),
            supervisor=self.supervisor.statistics() if self.supervisor else None,
            loop=self.watchdog.statistics(),
        )

    @property
    def broker(self) -> Broker:
        """The node's event broker (for tests and introspection; subscribe with
        `subscribe`)."""
        return self._ledger.broker

    def observe_events(self, fn: Callable[[object], None]) -> None:
        """Call `fn(event)` synchronously for every event this node publishes from now
        on (metrics use it); it must be quick and must not block."""
        self._ledger.broker.observe(fn)

    def node_snapshot(self, interval: float) -> dict[str, Any]:
        """This node's part of `runtime.stats`: workers, throughput, subscribers."""
        workers = self.worker_states()
        completed = sum(w.completed for w in workers)
        per_second = (completed - self._completed_seen) / interval if interval > 0 else 0.0
        self._completed_seen = completed
        broker = self._ledger.broker.statistics()
        return {
            "node": self.lease_owner,
            "workers": {
                "total": len(workers),
                "busy": sum(1 for w in workers if w.job_id is not None),
            },
            "jobsPerSecond": round(per_second, 2),
            "subscribers": broker.subscribers,
            "eventsPublished": broker.published,
            "subscribersDropped": broker.dropped,
        }

    async def drain(self, grace: float) -> None:
        """Stop accepting and claiming, end the event streams (clients reconnect with
        Last-Event-ID), and wait up to `grace` seconds for running jobs."""
        self.accepting = False
        self._dispatcher.drain()
        self.draining.set()
        self._ledger.broker.close()
        with trio.move_on_after(grace):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._capacity.wait_until_empty)
                for wait in self._drain_waits:
                    nursery.start_soon(wait)

    def wait_on_drain(self, wait: Callable[[], Awaitable[None]]) -> None:
        """Make `drain` also wait (within its grace) for `wait()`: the web server uses
        it so its last responses finish before the tree is cancelled."""
        self._drain_waits.append(wait)


@asynccontextmanager
async def run_node(
    board: Board,
    store: JobStore,
    extra_children: Callable[[RunningBoard], Sequence[ChildSpec]] | None,
) -> AsyncIterator[RunningBoard]:
    """Build the actor tree over an opened store, wire the store's hooks, run it, and
    drain it on the way out (the module docstring shows the tree)."""
    settings = board.settings
    registry = board.registry
    lease_owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    clock = TrioWallClock()
    broker = Broker()
    dispatcher: Dispatcher | None = None

    def wake_dispatcher() -> None:
        if dispatcher is not None:
            dispatcher.wake()

    def slot_freed() -> None:
        if dispatcher is not None:
            dispatcher.slot_freed()

    async def start_now(job: NewJob, now: datetime) -> Inserted | None:
        if dispatcher is None:
            await trio.lowlevel.checkpoint()
            return None
        return await dispatcher.start_now(job, now)

    capacity = Capacity(
        settings.workers,
        {spec.job_type: spec.concurrency for spec in registry.specs()},
        on_release=slot_freed,
    )
    ledger = Ledger(store, broker, clock, registry, wake_dispatcher, start_now)
    # The store's hooks, all wired here: committed events go to the broker (in
    # id order, after their commit); a store shared with other nodes relays their
    # submits (wake the dispatcher) and their cancels (of jobs running here).
    store.on_commit = broker.publish_many
    store.on_jobs_queued = wake_dispatcher
    store.on_cancel_requested = capacity.cancel
    # Other nodes' events are read back only for someone here: a node without workers
    # and without listeners (an API node, a producer) leaves them in the database.
    has_workers = settings.workers > 0
    store.events_wanted = lambda: has_workers or broker.heeded
    to_workers, from_dispatcher = trio.open_memory_channel[Job](0)
    worker_settings = WorkerSettings(
        lease_owner=lease_owner,
        lease_seconds=settings.lease_seconds,
        backoff=board.retry_backoff,
        progress_interval=board.progress_interval,
        result_max_bytes=settings.result_max_bytes,
    )
    storage = open_storage(settings.storage_location, board.asset_caps)
    check = getattr(storage.backend, "check_at_start", None)
    if check is not None:
        await check()
    leases = LeaseKeeper(ledger, lease_owner, settings.lease_seconds)
    runner = JobRunner(ledger, registry, worker_settings, storage, leases)
    workers = [
        Worker(f"worker-{i + 1}", from_dispatcher, runner, capacity, broker.publish)
        for i in range(settings.workers)
    ]
    dispatcher = Dispatcher(
        ledger,
        capacity,
        to_workers,
        lease_owner=lease_owner,
        lease_seconds=settings.lease_seconds,
        poll_interval=board.poll_interval,
    )
    reaper = Reaper(
        ledger,
        lease_owner=lease_owner,
        interval=max(0.5, settings.lease_seconds / 2),
        event_retention=settings.event_retention,
        job_retention=settings.job_retention,
    )
    worker_pool = Supervisor(
        "workers",
        [ChildSpec(w.name, w.run, Restart.PERMANENT) for w in workers],
        strategy=Strategy.ONE_FOR_ONE,
        max_restarts=max(3, settings.workers),
        period=60.0,
    )
    presence = Presence(
        store,
        clock.now,
        NodeInfo(
            id=lease_owner,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=clock.now(),
            storage_url=settings.storage_location,
            job_types=tuple(registry.job_types()) if settings.workers else (),
        ),
        shared_store=not store.exclusive,
    )
    # Presence first, so the other nodes notify this one of their commits by the
    # time it works. The reaper starts before any claim, so orphans of a dead
    # process are requeued before this node looks for work.
    children = [
        ChildSpec("presence", presence.run, Restart.PERMANENT),
        ChildSpec("broker", broker.run, Restart.PERMANENT),
        ChildSpec("reaper", reaper.run, Restart.PERMANENT),
    ]
    if workers:
        children.append(ChildSpec("leases", leases.run, Restart.PERMANENT))
        children.append(ChildSpec("workers", worker_pool.run, Restart.PERMANENT))
        children.append(ChildSpec("dispatcher", dispatcher.run, Restart.PERMANENT))
    scheduler = Scheduler(ledger)
    children.append(ChildSpec("scheduler", scheduler.run, Restart.PERMANENT))
    rt = RunningBoard(
        scheduler=scheduler,
        ledger=ledger,
        storage=storage,
        capacity=capacity,
        workers=workers,
        dispatcher=dispatcher,
        reaper=reaper,
        lease_owner=lease_owner,
        settings=settings,
        presence=presence,
        leases=leases if workers else None,
    )
    # First child: it watches the loop every other child runs on.
    rt.watchdog = _loop_watchdog(settings, rt)
    children.insert(0, ChildSpec("watchdog", rt.watchdog.run, Restart.PERMANENT))
    stats = StatsReporter(ledger, rt.node_snapshot)
    children.append(ChildSpec("stats", stats.run, Restart.PERMANENT))
    if extra_children is not None:
        children.extend(extra_children(rt))
    root = Supervisor(
        "callboard", children, strategy=Strategy.ONE_FOR_ONE, max_restarts=5, period=60.0
    )
    rt.supervisor = root
    # Before the tree starts: a declaration that is wrong stops the start-up with its
    # own error, and the scheduler's first pass sees the schedules as declared.
    await rt.apply_declared_schedules(board.declared_schedules)
    # The caller's own exception, or the root supervisor's escalation, comes out
    # as itself.
    with unwrap_sole():
        async with trio.open_nursery() as nursery:
            await nursery.start(root.run)
            log.info(
                "callboard node %s running: %d workers, job types %s",
                lease_owner,
                settings.workers,
                ", ".join(registry.job_types()),
            )
            try:
                yield rt
            finally:
                with trio.CancelScope(shield=True):
                    await rt.drain(settings.shutdown_grace)
                nursery.cancel_scope.cancel()


def _loop_watchdog(settings: Settings, rt: RunningBoard) -> LoopWatchdog:
    """A stall of half a lease ends the process: the lease keeper renews every third of
    a lease, so by then at most a sixth of the lease is left before another node could
    take a job this process may still be running. A node with no workers holds no
    lease and only warns."""
    fatal = settings.lease_seconds / 2 if settings.workers and settings.loop_stall_exit else None
    warn = min(0.5, settings.lease_seconds / 4)

    def running() -> str:
        # Called from the watchdog's thread too: no trio call in here.
        busy = rt.running_jobs()
        if not busy:
            return "no job was running"
        return "running " + ", ".join(
            f"{job.job_type} job {job.id} on {name}" for name, job in busy
        )

    def stalled(seconds: float) -> None:
        log.warning(
            "the event loop was blocked for %.2f s (%s): a handler must not block it; "
            "run blocking code with ctx.run_sync or ctx.run_process",
            seconds,
            running(),
        )

    def fatal_stall(seconds: float) -> None:
        log.critical(
            "the event loop has been blocked for %.1f s, half the %g s lease (%s): "
            "ending the process before its leases can run out, so that no job runs twice; "
            "its jobs are reclaimed once their leases expire",
            seconds,
            settings.lease_seconds,
            running(),
        )

    return LoopWatchdog(
        warn_after=warn,
        fatal_after=fatal,
        on_stall=stalled,
        on_fatal=fatal_stall,
        # A loop blocked past a job's stop deadline cannot stop that job before its
        # lease runs out (failing or hanging renewals had brought the deadline close).
        must_run_by=rt.lease_stop_by if fatal is not None else None,
    )


def _statuses(
    status: JobStatus | str | Collection[JobStatus | str] | None,
) -> frozenset[JobStatus] | None:
    try:
        return as_statuses(status)
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise InvalidRequest(f"unknown status in {status!r}; use any of {known}") from None
