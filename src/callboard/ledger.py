"""The write path: each job transition goes to the store, then its events to the broker.

Publishing happens only after the store returned, i.e. after the commit (DESIGN.md
section 1). Store writes shield their own commit wait, and `Broker.publish` is
synchronous, so there is no checkpoint between a commit and its publication: a
cancellation cannot separate them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from .actors.broker import Broker
from .clock import TrioWallClock
from .errors import CompanyNotFound, InvalidRequest
from .jobs import HandlerRegistry, Inserted, Job, JobEvent, JobSpec, build_new_job
from .store.base import CancelOutcome, JobStore, Renewal


class Ledger:
    def __init__(
        self,
        store: JobStore,
        broker: Broker,
        clock: TrioWallClock,
        registry: HandlerRegistry,
        wake_dispatcher: Callable[[], None],
    ) -> None:
        self.store = store
        self.broker = broker
        self.clock = clock
        self.registry = registry
        self._wake_dispatcher = wake_dispatcher

    def now(self) -> datetime:
        return self.clock.now()

    def _publish(self, event: JobEvent | None) -> None:
        if event is not None:
            self.broker.publish(event)

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
            except InvalidRequest as exc:
                if len(specs) == 1:
                    raise
                raise InvalidRequest(f"job {index}: {exc}") from None
        if await self.store.get_company(company_id) is None:
            raise CompanyNotFound(company_id)
        inserted = await self.store.insert_jobs(new_jobs, now)
        for item in inserted:
            self._publish(item.event)
        if any(item.created for item in inserted):
            self._wake_dispatcher()
        return inserted

    # --- operator actions ----------------------------------------------------------------

    async def cancel(self, job_id: str) -> CancelOutcome:
        outcome = await self.store.cancel(job_id, self.now())
        self._publish(outcome.event)
        return outcome

    async def retry(self, job_id: str) -> Job:
        event = await self.store.retry(job_id, self.now())
        self._publish(event)
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
        for _, event in claimed:
            self._publish(event)
        return [job for job, _ in claimed]

    async def renew(
        self, job_ids: Collection[str], lease_owner: str, expires_at: datetime
    ) -> Renewal:
        return await self.store.renew_leases(job_ids, lease_owner, expires_at)

    async def progress(
        self, job_id: str, lease_owner: str, percent: int, message: str | None
    ) -> JobEvent | None:
        event = await self.store.record_progress(job_id, lease_owner, percent, message, self.now())
        self._publish(event)
        return event

    async def complete(
        self, job_id: str, lease_owner: str, result_asset_id: str | None = None
    ) -> JobEvent | None:
        event = await self.store.complete(job_id, lease_owner, self.now(), result_asset_id)
        self._publish(event)
        return event

    async def fail(
        self, job_id: str, lease_owner: str, error_message: str, retry_at: datetime | None
    ) -> JobEvent | None:
        event = await self.store.fail(job_id, lease_owner, self.now(), error_message, retry_at)
        self._publish(event)
        if retry_at is not None and event is not None:
            self._wake_dispatcher()
        return event

    async def mark_cancelled(self, job_id: str, lease_owner: str) -> JobEvent | None:
        event = await self.store.mark_cancelled(job_id, lease_owner, self.now())
        self._publish(event)
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
        for event in events:
            self._publish(event)
        if events:
            self._wake_dispatcher()
        return events
