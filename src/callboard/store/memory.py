"""The in-memory JobStore (`callboard.testing` re-exports it for users' tests).

`MemoryStore` is a whole `JobStore` in memory, for unit tests under trio's virtual
clock: it never touches threads or the machine's clock, and every method passes
through a trio checkpoint so it schedules like real I/O. It passes the same contract
suite (`tests/store/store_contract.py`) as the SQLite and PostgreSQL stores, so code
tested against it behaves the same on a real database.
"""

from __future__ import annotations

import bisect
import copy
import itertools
import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import trio

from ..errors import (
    CompanyExists,
    CompanyNotFound,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    ScheduleExists,
    ScheduleNotFound,
    StoreUnavailable,
    TokenNotFound,
)
from ..jobs import (
    RETRYABLE,
    TERMINAL,
    WORKER_LOST,
    WORKER_LOST_TYPE,
    Asset,
    Company,
    EventType,
    Inserted,
    Job,
    JobEvent,
    JobFilter,
    JobStatus,
    NewJob,
    Page,
    Progress,
    Schedule,
    as_statuses,
    new_id,
    storable_text,
)
from .base import ApiToken, CancelOutcome, JobStore, NodeInfo, Renewal
from .encoding import decode_cursor, encode_cursor, input_json

__all__ = ["MemoryStore"]

CANCELLED_MESSAGE = "cancelled"


def _utc(ts: datetime) -> datetime:
    # A naive datetime would silently be read as local time by iso(): refuse it.
    if ts.tzinfo is None:
        raise ValueError("the store takes timezone-aware UTC datetimes, got a naive one")
    return ts.astimezone(UTC)


def _json_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """The input as it would come back from a database: JSON types only."""
    return json.loads(input_json(value))


class MemoryStore(JobStore):
    """An in-memory JobStore, exact to the contract in `callboard.store.base`.

    - Data survives `aclose()` + `open()` on the same instance, which is how a test
      simulates a restart.
    - `exclusive` is a constructor argument so a test can play either an embedded
      store (a restarted process owns every running job) or a shared one.
    - `set_available(False)` makes every method raise StoreUnavailable until it is
      set back, to test how callers ride out an outage.
    - Writes mutate state synchronously after their first checkpoint, so a write
      that started always completes and returns, as the contract demands of real
      stores (their commit wait is shielded).
    """

    def __init__(self, *, exclusive: bool = False) -> None:
        self.exclusive = exclusive
        self._companies: dict[str, Company] = {}
        self._jobs: dict[str, Job] = {}
        self._events: list[JobEvent] = []
        self._tokens: dict[str, ApiToken] = {}
        self._assets: dict[str, Asset] = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._schedules: dict[str, Schedule] = {}
        self._pruned_through = 0
        self._outbox: list[JobEvent] = []
        self._last_event_id = 0
        self._open = False
        self._available = True

    # --- test hooks --------------------------------------------------------------------

    def set_available(self, available: bool) -> None:
        self._available = available

    # --- plumbing ----------------------------------------------------------------------

    async def _enter(self) -> None:
        await trio.lowlevel.checkpoint()
        self._outbox.clear()
        if not self._open:
            raise StoreUnavailable("the store is not open")
        if not self._available:
            raise StoreUnavailable("the store is unavailable (MemoryStore.set_available)")

    async def _leave(self) -> None:
        # The "commit": hand its events over in id order, then let other tasks run, as
        # they would while a real commit is answered, without letting a cancel undo a
        # result the caller must get.
        events, self._outbox = self._outbox, []
        if events and self.on_commit is not None:
            self.on_commit(events)
        await trio.lowlevel.cancel_shielded_checkpoint()

    @staticmethod
    def _out(job: Job) -> Job:
        return replace(job, input=copy.deepcopy(dict(job.input)), result=copy.deepcopy(job.result))

    def _event(self, type_: EventType, job: Job, now: datetime) -> JobEvent:
        self._last_event_id += 1
        # The snapshot is the wire form of the job, as a database store reads it back
        # from its JSON payload (lease fields are not part of it).
        snapshot = Job.from_dict(copy.deepcopy(job.to_dict()))
        event = JobEvent(self._last_event_id, type_, job.id, job.company_id, now, snapshot)
        self._events.append(event)
        self._outbox.append(event)
        return event

    def _save(self, job: Job, type_: EventType, now: datetime) -> JobEvent:
        self._jobs[job.id] = job
        return self._event(type_, job, now)

    def _leased(self, job_id: str, lease_owner: str) -> Job | None:
        job = self._jobs.get(job_id)
        if job is None or job.status != JobStatus.RUNNING or job.lease_owner != lease_owner:
            return None
        return job

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()
        self._open = True

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
        self._open = False

    async def ping(self) -> None:
        await self._enter()

    # --- companies ---------------------------------------------------------------------

    async def create_company(self, name: str, now: datetime) -> Company:
        await self._enter()
        now = _utc(now)
        if any(c.name == name for c in self._companies.values()):
            raise CompanyExists(name)
        company = Company(new_id(), name, now)
        self._companies[company.id] = company
        await self._leave()
        return company

    async def get_company(self, company_id: str) -> Company | None:
        await self._enter()
        return self._companies.get(company_id)

    async def get_company_by_name(self, name: str) -> Company | None:
        await self._enter()
        return next((c for c in self._companies.values() if c.name == name), None)

    async def list_companies(self) -> list[Company]:
        await self._enter()
        # sorted() is stable: equal created_at keeps insertion order, like SQLite's rowid.
        return sorted(self._companies.values(), key=lambda c: c.created_at)

    # --- fair share --------------------------------------------------------------------

    async def set_company_max_running(self, company_id: str, max_running: int | None) -> Company:
        await self._enter()
        if max_running is not None and max_running < 1:
            raise InvalidRequest("maxRunning must be at least 1, or null for no cap")
        company = self._companies.get(company_id)
        if company is None:
            raise CompanyNotFound(company_id)
        company = replace(company, max_running=max_running)
        self._companies[company_id] = company
        await self._leave()
        return company

    def _running_by_company(self) -> Counter[str]:
        return Counter(j.company_id for j in self._jobs.values() if j.status == JobStatus.RUNNING)

    async def count_by_company(self) -> dict[str, tuple[int, int]]:
        await self._enter()
        running = Counter(
            j.company_id for j in self._jobs.values() if j.status == JobStatus.RUNNING
        )
        queued = Counter(j.company_id for j in self._jobs.values() if j.status == JobStatus.QUEUED)
        return {c: (running[c], queued[c]) for c in sorted(running.keys() | queued.keys())}

    # --- submitting --------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Inserted]:
        await self._enter()
        now = _utc(now)
        # Plan everything before writing anything: all or nothing.
        for new in jobs:
            if new.company_id not in self._companies:
                raise CompanyNotFound(new.company_id)
        by_key = {
            (j.company_id, j.idempotency_key): j
            for j in self._jobs.values()
            if j.idempotency_key is not None
        }
        plan: list[tuple[Job, bool]] = []
        new_ids: set[str] = set()
        for new in jobs:
            key = (new.company_id, new.idempotency_key)
            if new.idempotency_key is not None and key in by_key:
                plan.append((by_key[key], False))
                continue
            if new.id in self._jobs or new.id in new_ids:
                raise InvalidRequest(f"job id {new.id!r} already exists")
            new_ids.add(new.id)
            job = replace(new.queued(now), input=_json_copy(new.input), run_at=_utc(new.run_at))
            if new.idempotency_key is not None:
                by_key[key] = job
            plan.append((job, True))
        results = [
            Inserted(self._out(job), self._save(job, EventType.QUEUED, now), True)
            if created
            else Inserted(self._out(job), None, False)
            for job, created in plan
        ]
        await self._leave()
        return results

    async def insert_running(
        self,
        job: NewJob,
        now: datetime,
        *,
        lease_owner: str,
        lease_expires_at: datetime,
    ) -> tuple[Inserted, Job] | None:
        await self._enter()
        now = _utc(now)
        if job.company_id not in self._companies:
            raise CompanyNotFound(job.company_id)
        if job.id in self._jobs:
            raise InvalidRequest(f"job id {job.id!r} already exists")
        overtakes = _utc(job.run_at) > now or any(
            j.status == JobStatus.QUEUED
            and j.job_type == job.job_type
            and j.run_at <= now
            and j.priority >= job.priority
            for j in self._jobs.values()
        )
        # A capped company's jobs are counted by claim only (JobStore.insert_running).
        overtakes = overtakes or self._companies[job.company_id].max_running is not None
        known_key = job.idempotency_key is not None and any(
            (j.company_id, j.idempotency_key) == (job.company_id, job.idempotency_key)
            for j in self._jobs.values()
        )
        if overtakes or known_key:
            await self._leave()
            return None
        queued = replace(job.queued(now), input=_json_copy(job.input), run_at=_utc(job.run_at))
        queued_event = self._save(queued, EventType.QUEUED, now)
        running = self._start(queued, now, lease_owner, _utc(lease_expires_at))
        self._save(running, EventType.RUNNING, now)
        await self._leave()
        return Inserted(self._out(queued), queued_event, True), self._out(running)

    # --- reading -----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        await self._enter()
        job = self._jobs.get(job_id)
        return None if job is None else self._out(job)

    async def list_jobs(
        self,
        company_id: str | None,
        *,
        status: JobStatus | Collection[JobStatus] | None = None,
        job_type: str | None = None,
        source_task_id: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Job]:
        await self._enter()
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after = decode_cursor(cursor) if cursor is not None else None
        wanted = JobFilter(
            company_id,
            as_statuses(status),
            job_type,
            source_task_id,
            None if created_after is None else _utc(created_after),
            None if created_before is None else _utc(created_before),
        )
        matching = [
            j
            for j in self._jobs.values()
            if wanted.matches(j) and (after is None or (j.created_at, j.id) < after)
        ]
        matching.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        items = [self._out(j) for j in matching[:limit]]
        more = len(matching) > limit
        return Page(items, encode_cursor(items[-1]) if more else None)

    async def count_by_status(
        self,
        company_id: str | None = None,
        *,
        job_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> dict[JobStatus, int]:
        await self._enter()
        wanted = JobFilter(
            company_id,
            None,
            job_type,
            None,
            None if created_after is None else _utc(created_after),
            None if created_before is None else _utc(created_before),
        )
        counts = dict.fromkeys(JobStatus, 0)
        for job in self._jobs.values():
            if wanted.matches(job):
                counts[job.status] += 1
        return counts

    async def count_queued(self, now: datetime, at_most: int) -> int:
        await self._enter()
        due = (j for j in self._jobs.values() if j.status == JobStatus.QUEUED and j.run_at <= now)
        return sum(1 for _ in itertools.islice(due, max(at_most, 0)))

    async def next_run_at(self, job_types: Collection[str]) -> datetime | None:
        await self._enter()
        types = set(job_types)
        return min(
            (
                j.run_at
                for j in self._jobs.values()
                if j.status == JobStatus.QUEUED and j.job_type in types
            ),
            default=None,
        )

    # --- the worker's side -------------------------------------------------------------

    async def claim(
        self,
        *,
        now: datetime,
        limit: int,
        type_caps: Mapping[str, int | None],
        lease_owner: str,
        lease_expires_at: datetime,
    ) -> list[tuple[Job, JobEvent]]:
        await self._enter()
        now, lease_expires_at = _utc(now), _utc(lease_expires_at)
        # The dict keeps insertion order, which breaks ties (FIFO) as rowid does in SQL.
        seq = {job_id: i for i, job_id in enumerate(self._jobs)}
        running = Counter(
            j.company_id for j in self._jobs.values() if j.status == JobStatus.RUNNING
        )
        by_company = sorted(
            (
                j
                for j in self._jobs.values()
                if j.status == JobStatus.QUEUED and j.run_at <= now and j.job_type in type_caps
            ),
            key=lambda j: (j.company_id, -j.priority, j.run_at, j.created_at, seq[j.id]),
        )
        # Fair order (JobStore.claim): each company's jobs ranked from 0, keyed by
        # priority, then its running count plus the rank.
        keyed = []
        for _, group in itertools.groupby(by_company, key=lambda j: j.company_id):
            for rank, j in enumerate(group):
                load = running[j.company_id] + rank
                cap = self._companies[j.company_id].max_running
                if cap is None or load < cap:
                    keyed.append(((-j.priority, load, j.run_at, j.created_at, seq[j.id]), j))
        keyed.sort(key=lambda pair: pair[0])
        taken: Counter[str] = Counter()
        out: list[tuple[Job, JobEvent]] = []
        for _, job in keyed:
            if len(out) >= limit:
                break
            cap = type_caps[job.job_type]
            if cap is not None and taken[job.job_type] >= cap:
                continue
            taken[job.job_type] += 1
            job = self._start(job, now, lease_owner, lease_expires_at)
            out.append((self._out(job), self._save(job, EventType.RUNNING, now)))
        await self._leave()
        return out

    @staticmethod
    def _start(job: Job, now: datetime, lease_owner: str, lease_expires_at: datetime) -> Job:
        return replace(
            job,
            status=JobStatus.RUNNING,
            attempt=job.attempt + 1,
            started_at=now,
            finished_at=None,
            lease_owner=lease_owner,
            lease_expires_at=lease_expires_at,
            progress=Progress(0, None),
            updated_at=now,
        )

    async def renew_leases(
        self, job_ids: Collection[str], lease_owner: str, lease_expires_at: datetime
    ) -> Renewal:
        await self._enter()
        lease_expires_at = _utc(lease_expires_at)
        held: set[str] = set()
        cancel_requested: set[str] = set()
        for job_id in set(job_ids):
            job = self._leased(job_id, lease_owner)
            if job is None:
                continue
            self._jobs[job_id] = replace(job, lease_expires_at=lease_expires_at)
            held.add(job_id)
            if job.cancel_requested:
                cancel_requested.add(job_id)
        await self._leave()
        return Renewal(frozenset(held), frozenset(cancel_requested))

    async def record_progress(
        self,
        job_id: str,
        lease_owner: str,
        percent: int,
        message: str | None,
        now: datetime,
    ) -> JobEvent | None:
        await self._enter()
        now = _utc(now)
        job = self._leased(job_id, lease_owner)
        if job is None:
            return None
        job = replace(job, progress=Progress(percent, storable_text(message)), updated_at=now)
        event = self._save(job, EventType.PROGRESS, now)
        await self._leave()
        return event

    async def complete(
        self,
        job_id: str,
        lease_owner: str,
        now: datetime,
        result_asset_id: str | None = None,
        assets: Sequence[Asset] = (),
        result: str | None = None,
    ) -> JobEvent | None:
        await self._enter()
        now = _utc(now)
        job = self._leased(job_id, lease_owner)
        if job is None:
            return None
        # Check every asset before changing anything: the transition and the rows go
        # together or not at all.
        rows = [replace(a, created_at=_utc(a.created_at)) for a in assets]
        for asset in rows:
            if asset.company_id != job.company_id or asset.created_by_job_id != job.id:
                raise InvalidRequest(
                    f"asset {asset.id!r} must belong to job {job.id!r} and its company"
                )
        self._check_new_assets(rows)
        for asset in rows:
            self._assets[asset.id] = asset
        job = replace(
            job,
            status=JobStatus.DONE,
            progress=Progress(100, job.progress.message),
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
            error_message=None,
            error_type=None,
            error_traceback=None,
            result_asset_id=result_asset_id if result_asset_id is not None else job.result_asset_id,
            # Parsed, as the SQL stores read it back: the job holds its own copy.
            result=None if result is None else json.loads(result),
            updated_at=now,
        )
        event = self._save(job, EventType.DONE, now)
        await self._leave()
        return event

    async def fail(
        self,
        job_id: str,
        lease_owner: str,
        now: datetime,
        error_message: str,
        retry_at: datetime | None = None,
        *,
        error_type: str | None = None,
        error_traceback: str | None = None,
    ) -> JobEvent | None:
        await self._enter()
        now = _utc(now)
        retry_at = None if retry_at is None else _utc(retry_at)
        job = self._leased(job_id, lease_owner)
        if job is None:
            return None
        if job.cancel_requested:
            event = self._save(self._cancelled(job, now), EventType.CANCELLED, now)
            await self._leave()
            return event
        job = replace(
            job,
            error_message=storable_text(error_message),
            error_type=storable_text(error_type),
            error_traceback=storable_text(error_traceback),
            lease_owner=None,
            lease_expires_at=None,
            updated_at=now,
        )
        if retry_at is not None:
            job = replace(job, status=JobStatus.QUEUED, run_at=retry_at)
            event = self._save(job, EventType.RETRYING, now)
        else:
            job = replace(job, status=JobStatus.FAILED, finished_at=now)
            event = self._save(job, EventType.FAILED, now)
        await self._leave()
        return event

    async def mark_cancelled(self, job_id: str, lease_owner: str, now: datetime) -> JobEvent | None:
        await self._enter()
        now = _utc(now)
        job = self._leased(job_id, lease_owner)
        if job is None:
            return None
        event = self._save(self._cancelled(job, now), EventType.CANCELLED, now)
        await self._leave()
        return event

    @staticmethod
    def _cancelled(job: Job, now: datetime) -> Job:
        return replace(
            job,
            status=JobStatus.CANCELLED,
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
            error_message=CANCELLED_MESSAGE,
            error_type=None,
            error_traceback=None,
            updated_at=now,
        )

    # --- operator actions --------------------------------------------------------------

    async def cancel(self, job_id: str, now: datetime) -> CancelOutcome:
        await self._enter()
        now = _utc(now)
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.terminal:
            raise InvalidTransition(job_id, str(job.status), "cancel")
        if job.status == JobStatus.QUEUED:
            job = self._cancelled(job, now)
            outcome = CancelOutcome(self._out(job), self._save(job, EventType.CANCELLED, now))
        else:
            job = replace(job, cancel_requested=True)
            self._jobs[job_id] = job
            outcome = CancelOutcome(self._out(job), None)
        await self._leave()
        return outcome

    async def retry(self, job_id: str, now: datetime) -> JobEvent:
        await self._enter()
        now = _utc(now)
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if job.status not in RETRYABLE:
            raise InvalidTransition(job_id, str(job.status), "retry")
        job = replace(
            job,
            status=JobStatus.QUEUED,
            run_at=now,
            cancel_requested=False,
            finished_at=None,
            max_attempts=max(job.max_attempts, job.attempt + 1),
            updated_at=now,
        )
        event = self._save(job, EventType.QUEUED, now)
        await self._leave()
        return event

    async def reap_expired(
        self,
        *,
        now: datetime,
        expired_before: datetime,
        retry_at: datetime,
        exclude_owner: str | None = None,
        limit: int = 100,
    ) -> list[JobEvent]:
        await self._enter()
        now, expired_before, retry_at = _utc(now), _utc(expired_before), _utc(retry_at)
        expired = sorted(
            (
                j
                for j in self._jobs.values()
                if j.status == JobStatus.RUNNING
                and j.lease_expires_at is not None
                and j.lease_expires_at <= expired_before
                and (exclude_owner is None or j.lease_owner != exclude_owner)
            ),
            key=lambda j: (j.lease_expires_at, j.id),
        )
        events: list[JobEvent] = []
        for job in expired[: max(limit, 0)]:
            if job.cancel_requested:
                events.append(self._save(self._cancelled(job, now), EventType.CANCELLED, now))
                continue
            job = replace(
                job,
                error_message=WORKER_LOST,
                error_type=WORKER_LOST_TYPE,
                error_traceback=None,
                lease_owner=None,
                lease_expires_at=None,
                updated_at=now,
            )
            if job.attempt < job.max_attempts:
                job = replace(job, status=JobStatus.QUEUED, run_at=retry_at)
                events.append(self._save(job, EventType.RETRYING, now))
            else:
                job = replace(job, status=JobStatus.FAILED, finished_at=now)
                events.append(self._save(job, EventType.FAILED, now))
        await self._leave()
        return events

    # --- events ------------------------------------------------------------------------

    async def events_after(
        self,
        after_id: int,
        *,
        company_id: str | None = None,
        job_id: str | None = None,
        limit: int = 500,
    ) -> list[JobEvent]:
        await self._enter()
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        out: list[JobEvent] = []
        start = bisect.bisect_right(self._events, after_id, key=lambda e: e.id)
        for event in itertools.islice(self._events, start, None):
            if company_id is not None and event.company_id != company_id:
                continue
            if job_id is not None and event.job_id != job_id:
                continue
            out.append(event)
            if len(out) >= limit:
                break
        return out

    async def latest_event(self, job_id: str) -> JobEvent | None:
        await self._enter()
        return next((e for e in reversed(self._events) if e.job_id == job_id), None)

    async def last_event_id(self) -> int:
        await self._enter()
        return self._events[-1].id if self._events else 0

    async def pruned_through(self) -> int:
        await self._enter()
        return self._pruned_through

    async def prune_events(self, before: datetime, limit: int = 10_000) -> int:
        await self._enter()
        before = _utc(before)
        latest = {e.job_id: e.id for e in self._events}
        doomed: set[int] = set()
        for event in self._events:
            if len(doomed) >= limit or event.created_at >= before:
                break
            if latest[event.job_id] != event.id:
                doomed.add(event.id)
        self._events = [e for e in self._events if e.id not in doomed]
        self._pruned_through = max([self._pruned_through, *doomed])
        await self._leave()
        return len(doomed)

    # --- retention ---------------------------------------------------------------------

    def _prunable(self, finished_before: datetime) -> list[Job]:
        finished_before = _utc(finished_before)
        return sorted(
            (
                j
                for j in self._jobs.values()
                if j.status in TERMINAL
                and j.finished_at is not None
                and j.finished_at < finished_before
            ),
            key=lambda j: (j.finished_at, j.id),
        )

    async def prune_jobs(self, finished_before: datetime, limit: int = 1000) -> int:
        await self._enter()
        doomed = {j.id for j in self._prunable(finished_before)[: max(limit, 0)]}
        gone = [e.id for e in self._events if e.job_id in doomed]
        self._events = [e for e in self._events if e.job_id not in doomed]
        self._pruned_through = max([self._pruned_through, *gone])
        for job_id in doomed:
            del self._jobs[job_id]
        for asset in list(self._assets.values()):
            if asset.created_by_job_id in doomed:
                self._assets[asset.id] = replace(asset, created_by_job_id=None)
        await self._leave()
        return len(doomed)

    async def count_prunable_jobs(self, finished_before: datetime) -> int:
        await self._enter()
        return len(self._prunable(finished_before))

    # --- node presence -----------------------------------------------------------------

    async def announce_node(self, node: NodeInfo, now: datetime, forget_before: datetime) -> None:
        await self._enter()
        forget_before = _utc(forget_before)
        self._nodes = {
            key: n
            for key, n in self._nodes.items()
            if n.last_seen is not None and n.last_seen >= forget_before
        }
        self._nodes[node.id] = replace(
            node,
            started_at=_utc(node.started_at),
            job_types=tuple(node.job_types),
            last_seen=_utc(now),
        )
        await self._leave()

    async def live_nodes(self, since: datetime) -> list[NodeInfo]:
        await self._enter()
        since = _utc(since)
        live = [n for n in self._nodes.values() if n.last_seen is not None and n.last_seen >= since]
        return sorted(live, key=lambda n: (n.started_at, n.id))

    async def forget_node(self, node_id: str) -> None:
        await self._enter()
        self._nodes.pop(node_id, None)
        await self._leave()

    # --- API tokens --------------------------------------------------------------------

    async def create_token(self, token: ApiToken) -> ApiToken:
        await self._enter()
        if token.company_id is not None and token.company_id not in self._companies:
            raise CompanyNotFound(token.company_id)
        if token.id in self._tokens or any(t.hash == token.hash for t in self._tokens.values()):
            raise InvalidRequest("a token with this id or secret already exists")
        token = replace(token, created_at=_utc(token.created_at))
        self._tokens[token.id] = token
        await self._leave()
        return token

    async def find_tokens(self, prefix: str) -> list[ApiToken]:
        await self._enter()
        return [t for t in self._tokens.values() if t.prefix == prefix]

    async def list_tokens(self, company_id: str | None) -> list[ApiToken]:
        await self._enter()
        return [t for t in self._tokens.values() if t.company_id == company_id]

    async def revoke_token(self, token_id: str, company_id: str | None, now: datetime) -> ApiToken:
        await self._enter()
        token = self._tokens.get(token_id)
        if token is None or token.company_id != company_id:
            raise TokenNotFound(token_id)
        if token.revoked_at is None:
            token = replace(token, revoked_at=_utc(now))
            self._tokens[token_id] = token
        await self._leave()
        return token

    async def count_by_type_and_status(self) -> dict[tuple[str, JobStatus], int]:
        await self._enter()
        return dict(Counter((j.job_type, j.status) for j in self._jobs.values()))

    # --- assets ------------------------------------------------------------------------

    def _check_new_assets(self, assets: Sequence[Asset]) -> None:
        ids = set(self._assets)
        keys = {a.object_key for a in self._assets.values()}
        for asset in assets:
            if asset.id in ids or asset.object_key in keys:
                raise InvalidRequest("an asset with this id or object key already exists")
            ids.add(asset.id)
            keys.add(asset.object_key)

    async def insert_asset(self, asset: Asset) -> Asset:
        await self._enter()
        asset = replace(asset, created_at=_utc(asset.created_at))
        if asset.company_id not in self._companies:
            raise CompanyNotFound(asset.company_id)
        if asset.created_by_job_id is not None and asset.created_by_job_id not in self._jobs:
            raise JobNotFound(asset.created_by_job_id)
        self._check_new_assets([asset])
        self._assets[asset.id] = asset
        await self._leave()
        return asset

    async def get_asset(self, asset_id: str) -> Asset | None:
        await self._enter()
        return self._assets.get(asset_id)

    async def list_assets(
        self,
        company_id: str,
        *,
        source_task_id: str | None = None,
        created_by_job_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Asset]:
        await self._enter()
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after = decode_cursor(cursor) if cursor is not None else None
        matching = [
            a
            for a in self._assets.values()
            if a.company_id == company_id
            and (source_task_id is None or a.source_task_id == source_task_id)
            and (created_by_job_id is None or a.created_by_job_id == created_by_job_id)
            and (after is None or (a.created_at, a.id) < after)
        ]
        matching.sort(key=lambda a: (a.created_at, a.id), reverse=True)
        items = matching[:limit]
        return Page(items, encode_cursor(items[-1]) if len(matching) > limit else None)

    async def list_all_assets(self, after: str | None, limit: int) -> list[Asset]:
        await self._enter()
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        found = sorted(
            (a for a in self._assets.values() if after is None or a.id > after),
            key=lambda a: a.id,
        )
        return found[:limit]

    async def existing_asset_keys(self, object_keys: Collection[str]) -> set[str]:
        await self._enter()
        wanted = set(object_keys)
        return {a.object_key for a in self._assets.values() if a.object_key in wanted}

    # --- schedules ---------------------------------------------------------------------

    @staticmethod
    def _schedule_out(schedule: Schedule) -> Schedule:
        return replace(schedule, input=copy.deepcopy(dict(schedule.input)))

    def _name_taken(self, schedule: Schedule) -> bool:
        return any(
            s.company_id == schedule.company_id and s.name == schedule.name and s.id != schedule.id
            for s in self._schedules.values()
        )

    @staticmethod
    def _schedule_in(schedule: Schedule) -> Schedule:
        return replace(
            schedule,
            input=_json_copy(schedule.input),
            next_run_at=None if schedule.next_run_at is None else _utc(schedule.next_run_at),
            last_run_at=None if schedule.last_run_at is None else _utc(schedule.last_run_at),
            created_at=_utc(schedule.created_at),
            updated_at=_utc(schedule.updated_at),
        )

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        await self._enter()
        if schedule.company_id not in self._companies:
            raise CompanyNotFound(schedule.company_id)
        if schedule.id in self._schedules:
            raise InvalidRequest(f"schedule id {schedule.id!r} already exists")
        if self._name_taken(schedule):
            raise ScheduleExists(schedule.company_id, schedule.name)
        stored = self._schedule_in(schedule)
        self._schedules[stored.id] = stored
        await self._leave()
        return self._schedule_out(stored)

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        await self._enter()
        found = self._schedules.get(schedule_id)
        return None if found is None else self._schedule_out(found)

    async def get_schedule_by_name(self, company_id: str, name: str) -> Schedule | None:
        await self._enter()
        found = next(
            (s for s in self._schedules.values() if (s.company_id, s.name) == (company_id, name)),
            None,
        )
        return None if found is None else self._schedule_out(found)

    async def list_schedules(
        self, company_id: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Schedule]:
        await self._enter()
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after = decode_cursor(cursor) if cursor is not None else None
        matching = [
            s
            for s in self._schedules.values()
            if (company_id is None or s.company_id == company_id)
            and (after is None or (s.created_at, s.id) < after)
        ]
        matching.sort(key=lambda s: (s.created_at, s.id), reverse=True)
        items = [self._schedule_out(s) for s in matching[:limit]]
        more = len(matching) > limit
        return Page(items, encode_cursor(items[-1]) if more else None)

    async def update_schedule(self, schedule: Schedule) -> Schedule | None:
        await self._enter()
        stored = self._schedules.get(schedule.id)
        if stored is None:
            raise ScheduleNotFound(schedule.id)
        if stored.revision != schedule.revision:
            await self._leave()
            return None
        if self._name_taken(schedule):
            raise ScheduleExists(stored.company_id, schedule.name)
        updated = replace(
            self._schedule_in(schedule),
            company_id=stored.company_id,
            created_at=stored.created_at,
            revision=stored.revision + 1,
        )
        self._schedules[updated.id] = updated
        await self._leave()
        return self._schedule_out(updated)

    async def delete_schedule(self, schedule_id: str) -> bool:
        await self._enter()
        found = self._schedules.pop(schedule_id, None) is not None
        await self._leave()
        return found

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        await self._enter()
        now = _utc(now)
        due = [
            s
            for s in self._schedules.values()
            if not s.paused and s.next_run_at is not None and s.next_run_at <= now
        ]
        due.sort(key=lambda s: (s.next_run_at, s.id))
        return [self._schedule_out(s) for s in due[:limit]]

    async def next_schedule_at(self) -> datetime | None:
        await self._enter()
        times = [
            s.next_run_at
            for s in self._schedules.values()
            if not s.paused and s.next_run_at is not None
        ]
        return min(times, default=None)

    async def fire_schedule(
        self,
        schedule: Schedule,
        job: NewJob | None,
        next_run_at: datetime,
        now: datetime,
    ) -> Inserted | None:
        await self._enter()
        now = _utc(now)
        stored = self._schedules.get(schedule.id)
        if stored is None or stored.paused or stored.revision != schedule.revision:
            await self._leave()
            return None
        if job is not None and job.company_id not in self._companies:
            raise CompanyNotFound(job.company_id)
        made = None
        if job is not None and job.scheduled_for is not None:
            tick = _utc(job.scheduled_for)
            exists = any(
                j.schedule_id == schedule.id and j.scheduled_for == tick
                for j in self._jobs.values()
            )
            if not exists:
                if job.id in self._jobs:
                    raise InvalidRequest(f"job id {job.id!r} already exists")
                queued = replace(
                    job.queued(now),
                    input=_json_copy(job.input),
                    run_at=_utc(job.run_at),
                    schedule_id=schedule.id,
                    scheduled_for=tick,
                )
                made = Inserted(self._out(queued), self._save(queued, EventType.QUEUED, now), True)
        self._schedules[stored.id] = replace(
            stored,
            next_run_at=_utc(next_run_at),
            last_run_at=made.job.scheduled_for if made else stored.last_run_at,
            last_job_id=made.job.id if made else stored.last_job_id,
            updated_at=now,
            revision=stored.revision + 1,
        )
        await self._leave()
        return made
