"""The write path: each job transition goes to the store; its events reach the broker
through the store's `on_commit` hook.

The store calls the hook in the trio thread once a transaction has committed, with
events in id order (see `JobStore.on_commit`). So an event is published only after
its commit (docs/architecture.md, "Data flow"), never twice, never lost to a cancellation of the
caller, and live subscribers see ids in increasing order, which is what lets a
subscriber resume with "everything after the last id I saw".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from ..errors import InvalidRequest, UnknownJobType
from ..handlers import HandlerRegistry, build_new_job
from ..jobs import Asset, Inserted, Job, JobEvent, JobSpec, NewJob, Schedule
from ..runtime.clock import TrioWallClock
from ..store.base import CancelOutcome, JobStore, Renewal
from .broker import Broker
from .failure import Failure
from .grouped_insert import GroupedInsert


class Ledger:
    def __init__(
        self,
        store: JobStore,
        broker: Broker,
        clock: TrioWallClock,
        registry: HandlerRegistry,
        wake_dispatcher: Callable[[], None],
        start_now: Callable[[NewJob, datetime], Awaitable[Inserted | None]] | None = None,
    ) -> None:
        self.store = store
        self.broker = broker
        self.clock = clock
        self.registry = registry
        self._wake_dispatcher = wake_dispatcher
        #: Starts a lone job on an idle worker at once (Dispatcher.start_now).
        self._start_now = start_now
        #: Concurrent submits share one store write (see grouped_insert).
        self.grouped = GroupedInsert(store.insert_jobs, self.now)

    def now(self) -> datetime:
        return self.clock.now()

    # --- submitting ----------------------------------------------------------------------

    async def submit(self, company_id: str, specs: Sequence[JobSpec]) -> list[Inserted]:
        """Validate every spec first (so one bad job rejects the batch and nothing is
        written), then insert them in one transaction."""
        if not specs:
            raise InvalidRequest("submit at least one job")
        now = self.now()
        new_jobs = []
        for index, spec in enumerate(specs):
            try:
                new_jobs.append(build_new_job(self.registry, company_id, spec, now))
            except (InvalidRequest, UnknownJobType) as exc:
                if len(specs) == 1:
                    raise
                # Name the job in the batch, as the HTTP API does ("jobs[3]: ...").
                where = f"jobs[{index}]: "
                if isinstance(exc, UnknownJobType):
                    raise UnknownJobType(exc.job_type, exc.known, where, exc.hint) from None
                raise InvalidRequest(f"{where}{exc}") from None
        if len(new_jobs) == 1 and self._start_now is not None:
            started = await self._start_now(new_jobs[0], now)
            if started is not None:
                return [started]
        # No get_company() first: insert_jobs raises CompanyNotFound itself, writing
        # nothing, and a read before every submit cost a thread round trip.
        inserted = await self.grouped.insert(new_jobs)
        if any(item.created for item in inserted):
            self._wake_dispatcher()
        return inserted

    async def fire_schedule(
        self, schedule: Schedule, job: NewJob | None, next_run_at: datetime, now: datetime
    ) -> Inserted | None:
        """A schedule's tick: its job (None: none) and its next tick, in one transaction."""
        made = await self.store.fire_schedule(schedule, job, next_run_at, now)
        if made is not None:
            self._wake_dispatcher()
        return made

    # --- operator actions ----------------------------------------------------------------

    async def cancel(self, job_id: str) -> CancelOutcome:
        outcome = await self.store.cancel(job_id, self.now())
        return outcome

    async def retry(self, job_id: str) -> Job:
        event = await self.store.retry(job_id, self.now())
        self._wake_dispatcher()
        return event.job

    # --- the worker's side ---------------------------------------------------------------

    async def claim(
        self,
        limit: int,
        type_caps: Mapping[str, int | None],
        lease_owner: str,
        lease_seconds: float,
    ) -> list[Job]:
        now = self.now()
        claimed = await self.store.claim(
            now=now,
            limit=limit,
            type_caps=type_caps,
            lease_owner=lease_owner,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        return [job for job, _ in claimed]

    async def renew(
        self, job_ids: Collection[str], lease_owner: str, expires_at: datetime
    ) -> Renewal:
        return await self.store.renew_leases(job_ids, lease_owner, expires_at)

    async def progress(
        self, job_id: str, lease_owner: str, percent: int, message: str | None
    ) -> JobEvent | None:
        return await self.store.record_progress(job_id, lease_owner, percent, message, self.now())

    async def complete(
        self,
        job_id: str,
        lease_owner: str,
        result_asset_id: str | None = None,
        assets: Sequence[Asset] = (),
        result: str | None = None,
    ) -> JobEvent | None:
        """Done, with the rows of the assets the attempt wrote and its result (JSON text
        from `encode_result`), in one transaction."""
        event = await self.store.complete(
            job_id, lease_owner, self.now(), result_asset_id, assets, result
        )
        return event

    async def fail(
        self, job_id: str, lease_owner: str, failure: Failure, retry_at: datetime | None
    ) -> JobEvent | None:
        event = await self.store.fail(
            job_id,
            lease_owner,
            self.now(),
            failure.message,
            retry_at,
            error_type=failure.type,
            error_traceback=failure.traceback,
        )
        if retry_at is not None and event is not None:
            self._wake_dispatcher()
        return event

    async def mark_cancelled(self, job_id: str, lease_owner: str) -> JobEvent | None:
        event = await self.store.mark_cancelled(job_id, lease_owner, self.now())
        return event

    async def reap(
        self, expired_before: datetime, exclude_owner: str | None, limit: int = 100
    ) -> list[JobEvent]:
        now = self.now()
        events = await self.store.reap_expired(
            now=now,
            expired_before=expired_before,
            retry_at=now,
            exclude_owner=exclude_owner,
            limit=limit,
        )
        if events:
            self._wake_dispatcher()
        return events
