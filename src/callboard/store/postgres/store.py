"""The PostgreSQL JobStore: several callboard nodes sharing one queue.

- asyncpg under trio-asyncio, behind `driver.PgDriver` (pool, shielded
  writes, LISTEN). Open it with `async with store.opened():` — the driver's event
  loop and the store's background tasks live in that block.
- Every state change is one statement (sql/queries.sql beside this module): the job
  rows change and their events are appended by `callboard_append_events()`, whose
  id lock is held to commit, so ids become visible in id order on every node.
- Completions without assets are batched: while one batch commits, the next
  collects (`_Completions`), so a busy node commits many jobs per round trip.
- `EventFeed` publishes every node's events to this node's broker in id order;
  NOTIFY `callboard_events` carries the new head, `callboard_queued` the same head
  when the commit queued work (the dispatcher wakes on it without reading the
  events), `callboard_cancel` a job id whose cancel this node may have to carry out.
- Every running node keeps a row in `callboard_nodes` (`announce_node`, called by
  the runtime's presence actor): commits notify the other nodes only while there
  are any, so a node alone is not woken by its own NOTIFY after every statement.
- Migrations run under `pg_advisory_lock`, so nodes starting together apply each
  one once. `migrate=False` refuses to start on an older schema instead.
- Times are timestamptz; job input is `json` (kept as written).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import trio

from ...config import redact_url
from ...errors import (
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
from ...jobs import (
    WORKER_LOST,
    WORKER_LOST_TYPE,
    Asset,
    Company,
    EventType,
    Inserted,
    Job,
    JobEvent,
    JobStatus,
    NewJob,
    Page,
    Schedule,
    as_statuses,
    new_id,
    storable_text,
)
from ...runtime.groups import unwrap_sole
from ..base import ApiToken, CancelOutcome, JobStore, NodeInfo, Renewal
from ..encoding import decode_cursor, encode_cursor, input_json, newest_first
from ..migrations import discover
from ..queries import load_queries
from ..rows import Rows
from .driver import ForeignKeyViolation, PgDriver, UniqueViolation
from .feed import EventFeed

__all__ = ["PostgresStore", "SchemaOutdated"]

log = logging.getLogger("callboard.store")

Q = load_queries("postgres")
QS = load_queries("postgres", "schedules.sql")

#: pg_advisory_lock key of the migrations ("callboard" in ASCII, as a bigint).
MIGRATION_LOCK = 0x63616C6C626F6172

EVENTS_CHANNEL = "callboard_events"
CANCEL_CHANNEL = "callboard_cancel"
#: Another node queued work (see 0003_queued_notify.sql): wake the dispatcher.
QUEUED_CHANNEL = "callboard_queued"


class SchemaOutdated(StoreUnavailable):
    """The database's schema is older than this callboard and migrations are off."""


# --- conversions -----------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("the store takes timezone-aware UTC datetimes, got a naive one")
    return value.astimezone(UTC)


def _opt_utc(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)


def _timestamptz(value: datetime | None) -> datetime | None:
    # asyncpg decodes timestamptz to an aware UTC datetime whatever the session's
    # TimeZone, so there is nothing left to normalise.
    return value


ROWS = Rows(to_datetime=_timestamptz)


def _asset_arrays(assets: Sequence[Asset]) -> list[list[Any]]:
    return [
        [a.id for a in assets],
        [a.company_id for a in assets],
        [a.namespace for a in assets],
        [a.object_key for a in assets],
        [a.content_type for a in assets],
        [a.byte_size for a in assets],
        [a.sha256 for a in assets],
        [a.original_filename for a in assets],
        [a.source_task_id for a in assets],
        [a.created_by_job_id for a in assets],
        [_utc(a.created_at) for a in assets],
    ]


def _asset_conflict(exc: UniqueViolation) -> InvalidRequest:
    return InvalidRequest("an asset with this id or object key already exists")


# --- batched completions -----------------------------------------------------------------


@dataclass(slots=True)
class _Completion:
    job_id: str
    lease_owner: str
    result_asset_id: str | None
    at: datetime
    result: str | None
    done: trio.Event = field(default_factory=trio.Event)
    event: JobEvent | None = None
    error: BaseException | None = None


class _Completions:
    """Collects completions while the previous batch commits, then commits them all
    in one statement. Callers wait shielded: a completion that was handed over is
    committed or failed, and its caller learns which."""

    def __init__(self, commit: Callable[[list[_Completion]], Any], max_batch: int) -> None:
        self._commit = commit
        self._max_batch = max_batch
        self._queue: list[_Completion] = []
        self._wake = trio.Event()
        self._open = False
        self.batches = 0
        self.completions = 0

    async def submit(self, item: _Completion) -> JobEvent | None:
        if not self._open:
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("the PostgreSQL store is not open")
        self._queue.append(item)
        self._wake.set()
        with trio.CancelScope(shield=True):
            await item.done.wait()
        if item.error is not None:
            raise item.error
        return item.event

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._open = True
        task_status.started()
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    with trio.CancelScope(shield=True):
                        await self._commit_batch(batch)
        finally:
            self._open = False
            for item in self._queue:
                item.error = StoreUnavailable("the PostgreSQL store closed")
                item.done.set()
            self._queue.clear()

    async def _commit_batch(self, batch: list[_Completion]) -> None:
        answered = False
        try:
            events = await self._commit(batch)
            for item in batch:
                item.event = events.get(item.job_id)
            answered = True
        except Exception as exc:
            for item in batch:
                item.error = exc
            answered = True
        finally:
            # Whatever happened, no caller is left waiting (they wait shielded).
            for item in batch:
                if not answered:
                    item.error = StoreUnavailable("the completion writer stopped")
                item.done.set()
        self.batches += 1
        self.completions += len(batch)


class PostgresStore(JobStore):
    exclusive = False

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = 10,
        migrate: bool = True,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        max_completion_batch: int = 500,
    ) -> None:
        self.dsn = dsn
        self._migrate = migrate
        self._driver = PgDriver(
            dsn,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            statement_timeout=statement_timeout,
        )
        self._feed = EventFeed(self._read_feed, self.last_event_id)
        self._completions = _Completions(self._complete_many, max_completion_batch)
        self._state = "new"  # new -> open -> closed
        #: The migration versions the last open applied (empty when up to date).
        self.applied_migrations: list[int] = []

    def __repr__(self) -> str:
        return f"PostgresStore({redact_url(self.dsn)!r})"

    # --- hooks the runtime sets ----------------------------------------------------------

    @property  # type: ignore[override]
    def on_commit(self) -> Callable[[list[JobEvent]], None] | None:
        return self._feed.publish

    @on_commit.setter
    def on_commit(self, fn: Callable[[list[JobEvent]], None] | None) -> None:
        self._feed.publish = fn

    @property  # type: ignore[override]
    def on_jobs_queued(self) -> Callable[[], None] | None:
        return self._feed.on_jobs_queued

    @on_jobs_queued.setter
    def on_jobs_queued(self, fn: Callable[[], None] | None) -> None:
        self._feed.on_jobs_queued = fn

    @property  # type: ignore[override]
    def events_wanted(self) -> Callable[[], bool] | None:
        return self._feed.wanted

    @events_wanted.setter
    def events_wanted(self, fn: Callable[[], bool] | None) -> None:
        self._feed.wanted = fn

    def _cancel_notified(self, job_id: str) -> None:
        if self.on_cancel_requested is not None:
            self.on_cancel_requested(job_id)

    def _events_notified(self, payload: str) -> None:
        try:
            head = int(payload)
        except ValueError:
            log.warning("ignoring a malformed %s notification: %r", EVENTS_CHANNEL, payload)
            return
        self._feed.notified(head)

    def _queued_notified(self, payload: str) -> None:
        try:
            head = int(payload)
        except ValueError:
            log.warning("ignoring a malformed %s notification: %r", QUEUED_CHANNEL, payload)
            return
        self._feed.queued(head)

    # --- lifecycle ---------------------------------------------------------------------

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[PostgresStore]:
        if self._state != "new":
            raise StoreUnavailable("a PostgresStore opens once; make a new one to reopen")
        self._state = "open"
        try:
            # A failure to start (no server, old schema) comes out as itself.
            with unwrap_sole():
                async with self._driver.running(), trio.open_nursery() as nursery:
                    self.applied_migrations = await self._prepare_schema()
                    self._feed.start_at(await self.last_event_id())
                    await nursery.start(self._completions.run)
                    await nursery.start(
                        partial(
                            self._driver.listen,
                            {
                                QUEUED_CHANNEL: self._queued_notified,
                                EVENTS_CHANNEL: self._events_notified,
                                CANCEL_CHANNEL: self._cancel_notified,
                            },
                            self._feed.reconnected,
                            # This node's own submits woke its dispatcher already.
                            not_from_self=frozenset({QUEUED_CHANNEL}),
                        )
                    )
                    await nursery.start(self._feed.run)
                    try:
                        yield self
                    finally:
                        nursery.cancel_scope.cancel()
        finally:
            self._state = "closed"

    async def open(self) -> None:
        await trio.lowlevel.checkpoint()
        raise StoreUnavailable(
            "a PostgresStore runs background tasks: open it with `async with store.opened()`"
        )

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    async def ping(self) -> None:
        await self._driver.fetchval(Q["ping"])

    async def _prepare_schema(self) -> list[int]:
        known = discover("postgres")
        conn = await self._driver.connect(statement_timeout=None)
        try:
            return await self._driver.run_on(
                conn, lambda c: _apply_migrations(c, known, migrate=self._migrate)
            )
        finally:
            with trio.CancelScope(shield=True):
                await self._driver.release(conn)

    # --- companies ---------------------------------------------------------------------

    async def create_company(self, name: str, now: datetime) -> Company:
        try:
            row = await self._driver.fetchrow(
                Q["insert_company"], new_id(), name, _utc(now), write=True
            )
        except UniqueViolation:
            raise CompanyExists(name) from None
        assert row is not None
        return ROWS.company(row)

    async def get_company(self, company_id: str) -> Company | None:
        row = await self._driver.fetchrow(Q["get_company"], company_id)
        return None if row is None else ROWS.company(row)

    async def get_company_by_name(self, name: str) -> Company | None:
        row = await self._driver.fetchrow(Q["get_company_by_name"], name)
        return None if row is None else ROWS.company(row)

    async def list_companies(self) -> list[Company]:
        return [ROWS.company(row) for row in await self._driver.fetch(Q["list_companies"])]

    # --- fair share --------------------------------------------------------------------

    async def set_company_max_running(self, company_id: str, max_running: int | None) -> Company:
        if max_running is not None and max_running < 1:
            await trio.lowlevel.checkpoint()
            raise InvalidRequest("maxRunning must be at least 1, or null for no cap")
        row = await self._driver.fetchrow(
            Q["set_company_max_running"], company_id, max_running, write=True
        )
        if row is None:
            raise CompanyNotFound(company_id)
        return ROWS.company(row)

    async def count_by_company(self) -> dict[str, tuple[int, int]]:
        rows = await self._driver.fetch(Q["count_by_company"])
        return {row["company_id"]: (row["running"], row["queued"]) for row in rows}

    # --- submitting --------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Inserted]:
        if not jobs:
            await trio.lowlevel.checkpoint()
            return []
        at = _utc(now)
        arrays = [
            [j.id for j in jobs],
            [j.company_id for j in jobs],
            [j.job_type for j in jobs],
            [j.priority for j in jobs],
            [input_json(j.input) for j in jobs],
            [j.max_attempts for j in jobs],
            [j.timeout_seconds for j in jobs],
            [_utc(j.run_at) for j in jobs],
            [j.source_task_id for j in jobs],
            [j.idempotency_key for j in jobs],
        ]
        ids = arrays[0]
        if len(set(ids)) != len(ids):
            raise InvalidRequest("job ids in one batch must be distinct")
        try:
            rows, events = await self._changes(
                lambda: self._driver.fetch(Q["insert_jobs"], *arrays, at, write=True),
                EventType.QUEUED,
            )
        except (ForeignKeyViolation, UniqueViolation) as exc:
            raise await self._insert_refused(exc, jobs) from None
        # A queued job has no lease: the event's job is the job.
        made = {
            row["input_ord"] - 1: (event.job, event)
            for row, event in zip(rows, events, strict=True)
        }
        out: list[Inserted | None] = [None] * len(jobs)
        for index, (job, event) in made.items():
            out[index] = Inserted(job, event, True)
        if len(made) < len(jobs):
            await self._fill_existing(jobs, made, out)
        return out  # type: ignore[return-value]

    async def _insert_refused(
        self, exc: ForeignKeyViolation | UniqueViolation, jobs: Sequence[NewJob]
    ) -> Exception:
        """The domain error for an insert PostgreSQL refused."""
        if isinstance(exc, ForeignKeyViolation):
            companies = list(dict.fromkeys(j.company_id for j in jobs))
            missing = await self._driver.fetch(Q["missing_companies"], companies)
            return CompanyNotFound(missing[0]["id"] if missing else companies[0])
        if exc.constraint_name == "content_jobs_pkey":
            return InvalidRequest("a job with this id already exists")
        return StoreUnavailable(f"PostgreSQL: {exc}")

    async def insert_running(
        self,
        job: NewJob,
        now: datetime,
        *,
        lease_owner: str,
        lease_expires_at: datetime,
    ) -> tuple[Inserted, Job] | None:
        at = _utc(now)
        input_text = input_json(job.input)
        # The queued event's job as a reader of its payload gets it (its own input).
        queued = replace(job.queued(at), run_at=_utc(job.run_at), input=json.loads(input_text))
        token = self._feed.write_started()
        try:
            try:
                row = await self._driver.fetchrow(
                    Q["insert_running"],
                    job.id,
                    job.company_id,
                    job.job_type,
                    job.priority,
                    input_text,
                    job.max_attempts,
                    job.timeout_seconds,
                    queued.run_at,
                    job.source_task_id,
                    job.idempotency_key,
                    at,
                    lease_owner,
                    _utc(lease_expires_at),
                    json.dumps(queued.to_dict()),
                    write=True,
                )
            except (ForeignKeyViolation, UniqueViolation) as exc:
                raise await self._insert_refused(exc, [job]) from None
            except StoreUnavailable:
                # The insert may have committed with its answer lost (the connection
                # dropped after COMMIT): the job would then sit leased to this node, run
                # by no worker, until the reaper spent an attempt on it. Look.
                started = await self._started_here(job.id, lease_owner, at)
                if started is None:
                    raise
                log.warning("a start on submit's answer was lost; recovered job %s", job.id)
                return started
            if row is None:
                return None
            running = ROWS.change_event(row, EventType.RUNNING)
            queued_event = JobEvent(
                running.id - 1, EventType.QUEUED, job.id, job.company_id, at, queued
            )
            self._feed.committed([queued_event, running])
        finally:
            self._feed.write_ended(token)
        return Inserted(queued, queued_event, True), ROWS.job(row)

    async def _started_here(
        self, job_id: str, lease_owner: str, at: datetime
    ) -> tuple[Inserted, Job] | None:
        """The job `insert_running` started at `at` for `lease_owner`, if it did."""
        row = await self._driver.fetchrow(Q["get_job"], job_id)
        if row is None:
            return None
        started = (row["status"], row["lease_owner"], row["attempt"], row["started_at"])
        if started != ("running", lease_owner, 1, at):
            return None
        events = await self.events_after(0, job_id=job_id, limit=2)
        if [e.type for e in events] != [EventType.QUEUED, EventType.RUNNING]:
            return None
        self._feed.committed(events)
        return Inserted(events[0].job, events[0], True), ROWS.job(row)

    async def _fill_existing(
        self,
        jobs: Sequence[NewJob],
        made: Mapping[int, tuple[Job, JobEvent]],
        out: list[Inserted | None],
    ) -> None:
        """Jobs skipped for a repeated idempotency key: the job that holds the key
        (inserted earlier in this batch, or before, by anyone) comes back instead."""
        skipped = [i for i in range(len(jobs)) if i not in made]
        keys = [(jobs[i].company_id, jobs[i].idempotency_key) for i in skipped]
        if any(key is None for _, key in keys):
            raise StoreUnavailable("PostgreSQL skipped a job that has no idempotency key")
        rows = await self._driver.fetch(
            Q["jobs_by_idempotency_key"], [c for c, _ in keys], [k for _, k in keys]
        )
        holders = {(row["company_id"], row["idempotency_key"]): ROWS.job(row) for row in rows}
        for index, key in zip(skipped, keys, strict=True):
            holder = holders.get(key)  # type: ignore[arg-type]
            if holder is None:
                raise StoreUnavailable("a job with this idempotency key vanished; submit again")
            out[index] = Inserted(holder, None, False)

    # --- reading -----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._driver.fetchrow(Q["get_job"], job_id)
        return None if row is None else ROWS.job(row)

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
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after_at, after_id = decode_cursor(cursor) if cursor is not None else (None, None)
        statuses = as_statuses(status)
        args = (
            company_id,
            job_type,
            source_task_id,
            None if created_after is None else _utc(created_after),
            None if created_before is None else _utc(created_before),
            after_at,
            after_id,
            limit + 1,  # one more than asked tells whether a next page exists
        )
        if statuses is None:
            jobs = [ROWS.job(row) for row in await self._driver.fetch(Q["list_jobs"], *args)]
        else:
            query = Q["list_jobs_status" if company_id is None else "list_jobs_company_status"]
            lists = [
                [ROWS.job(row) for row in await self._driver.fetch(query, *args, str(one))]
                for one in sorted(statuses)
            ]
            jobs = newest_first(lists, limit + 1)
        items = jobs[:limit]
        return Page(items, encode_cursor(items[-1]) if len(jobs) > limit else None)

    async def count_by_status(
        self,
        company_id: str | None = None,
        *,
        job_type: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
    ) -> dict[JobStatus, int]:
        counts = dict.fromkeys(JobStatus, 0)
        rows = await self._driver.fetch(
            Q["count_by_status"],
            company_id,
            job_type,
            None if created_after is None else _utc(created_after),
            None if created_before is None else _utc(created_before),
        )
        for status, n in rows:
            counts[JobStatus(status)] = n
        return counts

    async def count_by_type_and_status(self) -> dict[tuple[str, JobStatus], int]:
        rows = await self._driver.fetch(Q["count_by_type_and_status"])
        return {(job_type, JobStatus(status)): n for job_type, status, n in rows}

    async def count_queued(self, now: datetime, at_most: int) -> int:
        return await self._driver.fetchval(Q["count_queued"], _utc(now), max(at_most, 0))

    async def next_run_at(self, job_types: Collection[str]) -> datetime | None:
        return await self._driver.fetchval(Q["next_run_at"], list(job_types))

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
        if limit < 1 or not type_caps:
            await trio.lowlevel.checkpoint()
            return []
        try:
            rows, events = await self._changes(
                lambda: self._driver.fetch(
                    Q["claim"],
                    list(type_caps),
                    list(type_caps.values()),
                    limit,
                    _utc(now),
                    lease_owner,
                    _utc(lease_expires_at),
                    write=True,
                ),
                EventType.RUNNING,
            )
        except StoreUnavailable:
            # The claim may have committed with its answer lost (the connection
            # dropped after COMMIT). Its jobs would sit leased to this node, run by
            # no worker, until the reaper failed them as "worker lost": find them.
            recovered = await self._driver.fetch(Q["claimed_at"], lease_owner, _utc(now))
            if not recovered:
                raise
            log.warning("a claim's answer was lost; recovered its %d job(s)", len(recovered))
            rows, events = (
                recovered,
                [ROWS.change_event(row, EventType.RUNNING) for row in recovered],
            )
            self._feed.committed(events)
        return [(ROWS.job(row), event) for row, event in zip(rows, events, strict=True)]

    async def _changes(
        self, write: Callable[[], Awaitable[list[Any] | None]], type_: EventType | None
    ) -> tuple[list[Any], list[JobEvent]]:
        """Run a statement that changes jobs and appends their events, and hand the
        events to the feed. The feed knows the write is in flight meanwhile, so it
        does not read back from the database what this call is about to publish."""
        token = self._feed.write_started()
        try:
            rows = await write() or []
            events = [ROWS.change_event(row, type_) for row in rows]
            self._feed.committed(events)
            return rows, events
        finally:
            self._feed.write_ended(token)

    async def _one_change(self, query: str, *args: Any, type_: EventType | None) -> JobEvent | None:
        _, events = await self._changes(lambda: self._driver.fetch(query, *args, write=True), type_)
        return events[0] if events else None

    async def renew_leases(
        self, job_ids: Collection[str], lease_owner: str, lease_expires_at: datetime
    ) -> Renewal:
        if not job_ids:
            await trio.lowlevel.checkpoint()
            return Renewal(frozenset(), frozenset())
        rows = await self._driver.fetch(
            Q["renew_leases"], list(job_ids), lease_owner, _utc(lease_expires_at), write=True
        )
        return Renewal(
            frozenset(row["id"] for row in rows),
            frozenset(row["id"] for row in rows if row["cancel_requested"]),
        )

    async def record_progress(
        self,
        job_id: str,
        lease_owner: str,
        percent: int,
        message: str | None,
        now: datetime,
    ) -> JobEvent | None:
        return await self._one_change(
            Q["record_progress"],
            job_id,
            lease_owner,
            percent,
            storable_text(message),
            _utc(now),
            type_=EventType.PROGRESS,
        )

    async def complete(
        self,
        job_id: str,
        lease_owner: str,
        now: datetime,
        result_asset_id: str | None = None,
        assets: Sequence[Asset] = (),
        result: str | None = None,
    ) -> JobEvent | None:
        if assets:
            return await self._complete_with_assets(
                job_id, lease_owner, _utc(now), result_asset_id, assets, result
            )
        return await self._completions.submit(
            _Completion(job_id, lease_owner, result_asset_id, _utc(now), result)
        )

    async def _complete_many(self, batch: list[_Completion]) -> dict[str, JobEvent]:
        batch = sorted(batch, key=lambda c: c.job_id)  # lock order: see complete_many
        _, events = await self._changes(
            lambda: self._driver.fetch(
                Q["complete_many"],
                [c.job_id for c in batch],
                [c.lease_owner for c in batch],
                [c.result_asset_id for c in batch],
                [c.at for c in batch],
                [c.result for c in batch],
                write=True,
            ),
            EventType.DONE,
        )
        return {event.job_id: event for event in events}

    async def _complete_with_assets(
        self,
        job_id: str,
        lease_owner: str,
        now: datetime,
        result_asset_id: str | None,
        assets: Sequence[Asset],
        result: str | None,
    ) -> JobEvent | None:
        """Done and its assets in one transaction: the job row is locked first, the
        assets checked against it and inserted, then the transition appends its
        event (taking the event id lock last, as every writer does)."""
        arrays = _asset_arrays(assets)

        async def write(conn: Any) -> list[Any] | None:
            company_id = await conn.fetchval(Q["lock_running_job"], job_id, lease_owner)
            if company_id is None:
                return None
            for asset in assets:
                if asset.company_id != company_id or asset.created_by_job_id != job_id:
                    raise InvalidRequest(
                        f"asset {asset.id!r} must belong to job {job_id!r} and its company"
                    )
            await conn.execute(Q["insert_assets"], *arrays)
            return await conn.fetch(
                Q["complete_many"], [job_id], [lease_owner], [result_asset_id], [now], [result]
            )

        try:
            _, events = await self._changes(
                lambda: self._driver.run(write, write=True, transaction=True), EventType.DONE
            )
        except UniqueViolation as exc:
            raise _asset_conflict(exc) from None
        return events[0] if events else None

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
        return await self._one_change(
            Q["fail"],
            job_id,
            lease_owner,
            _utc(now),
            storable_text(error_message),
            _opt_utc(retry_at),
            storable_text(error_type),
            storable_text(error_traceback),
            type_=None,
        )

    async def mark_cancelled(self, job_id: str, lease_owner: str, now: datetime) -> JobEvent | None:
        return await self._one_change(
            Q["mark_cancelled"], job_id, lease_owner, _utc(now), type_=EventType.CANCELLED
        )

    # --- operator actions --------------------------------------------------------------

    async def cancel(self, job_id: str, now: datetime) -> CancelOutcome:
        at = _utc(now)
        # Each step is one statement guarded by the status it expects; a job that
        # moved on between them is looked at again.
        for _ in range(5):
            rows, events = await self._changes(
                lambda: self._driver.fetch(Q["cancel_queued"], job_id, at, write=True),
                EventType.CANCELLED,
            )
            if rows:
                return CancelOutcome(ROWS.job(rows[0]), events[0])
            row = await self._driver.fetchrow(Q["request_cancel"], job_id, write=True)
            if row is not None:
                return CancelOutcome(ROWS.job(row), None)
            job = await self.get_job(job_id)
            if job is None:
                raise JobNotFound(job_id)
            if job.terminal:
                raise InvalidTransition(job_id, str(job.status), "cancel")
        raise StoreUnavailable(f"job {job_id} keeps changing; try the cancel again")

    async def retry(self, job_id: str, now: datetime) -> JobEvent:
        event = await self._one_change(Q["retry"], job_id, _utc(now), type_=EventType.QUEUED)
        if event is not None:
            return event
        job = await self.get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        raise InvalidTransition(job_id, str(job.status), "retry")

    async def reap_expired(
        self,
        *,
        now: datetime,
        expired_before: datetime,
        retry_at: datetime,
        exclude_owner: str | None = None,
        limit: int = 100,
    ) -> list[JobEvent]:
        if limit < 1:
            await trio.lowlevel.checkpoint()
            return []
        _, events = await self._changes(
            lambda: self._driver.fetch(
                Q["reap"],
                _utc(now),
                _utc(expired_before),
                _utc(retry_at),
                exclude_owner,
                limit,
                WORKER_LOST,
                WORKER_LOST_TYPE,
                write=True,
            ),
            None,
        )
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
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        rows = await self._driver.fetch(Q["events_after"], after_id, company_id, job_id, limit)
        return [ROWS.event(row) for row in rows]

    async def _read_feed(self, after_id: int, through: int, limit: int) -> list[JobEvent]:
        rows = await self._driver.fetch(Q["events_after_all"], after_id, through, limit)
        return [ROWS.event(row) for row in rows]

    async def latest_event(self, job_id: str) -> JobEvent | None:
        row = await self._driver.fetchrow(Q["latest_event"], job_id)
        return None if row is None else ROWS.event(row)

    async def last_event_id(self) -> int:
        return await self._driver.fetchval(Q["last_event_id"])

    async def pruned_through(self) -> int:
        return await self._driver.fetchval(Q["pruned_through"])

    async def prune_events(self, before: datetime, limit: int = 10_000) -> int:
        return await self._driver.fetchval(Q["prune_events"], _utc(before), limit, write=True)

    # --- retention ---------------------------------------------------------------------

    async def prune_jobs(self, finished_before: datetime, limit: int = 1000) -> int:
        return await self._driver.fetchval(
            Q["prune_jobs"], _utc(finished_before), max(limit, 0), write=True
        )

    async def count_prunable_jobs(self, finished_before: datetime) -> int:
        return await self._driver.fetchval(Q["count_prunable_jobs"], _utc(finished_before))

    # --- node presence -----------------------------------------------------------------

    async def announce_node(self, node: NodeInfo, now: datetime, forget_before: datetime) -> None:
        # Idempotent, so it runs as a read: retried on a fresh connection, not shielded.
        await self._driver.execute(
            Q["announce_node"],
            node.id,
            node.host,
            node.pid,
            _utc(node.started_at),
            node.storage_url,
            json.dumps(list(node.job_types)),
            _utc(now),
            _utc(forget_before),
        )

    async def live_nodes(self, since: datetime) -> list[NodeInfo]:
        return [ROWS.node(row) for row in await self._driver.fetch(Q["live_nodes"], _utc(since))]

    async def forget_node(self, node_id: str) -> None:
        await self._driver.execute(Q["forget_node"], node_id)

    # --- API tokens --------------------------------------------------------------------

    async def create_token(self, token: ApiToken) -> ApiToken:
        try:
            row = await self._driver.fetchrow(
                Q["insert_token"],
                token.id,
                token.company_id,
                token.label,
                token.prefix,
                token.hash,
                _utc(token.created_at),
                _opt_utc(token.revoked_at),
                write=True,
            )
        except ForeignKeyViolation:
            raise CompanyNotFound(token.company_id or "") from None
        except UniqueViolation:
            raise InvalidRequest("a token with this id or secret already exists") from None
        assert row is not None
        return ROWS.token(row)

    async def find_tokens(self, prefix: str) -> list[ApiToken]:
        return [ROWS.token(row) for row in await self._driver.fetch(Q["find_tokens"], prefix)]

    async def list_tokens(self, company_id: str | None) -> list[ApiToken]:
        if company_id is None:
            rows = await self._driver.fetch(Q["list_operator_tokens"])
        else:
            rows = await self._driver.fetch(Q["list_company_tokens"], company_id)
        return [ROWS.token(row) for row in rows]

    async def revoke_token(self, token_id: str, company_id: str | None, now: datetime) -> ApiToken:
        row = await self._driver.fetchrow(
            Q["revoke_token"], token_id, company_id, _utc(now), write=True
        )
        if row is None:
            raise TokenNotFound(token_id)
        return ROWS.token(row)

    # --- assets ------------------------------------------------------------------------

    async def insert_asset(self, asset: Asset) -> Asset:
        try:
            rows = await self._driver.fetch(Q["insert_assets"], *_asset_arrays([asset]), write=True)
        except ForeignKeyViolation as exc:
            if exc.constraint_name == "assets_created_by_job_id_fkey":
                raise JobNotFound(asset.created_by_job_id or "") from None
            raise CompanyNotFound(asset.company_id) from None
        except UniqueViolation as exc:
            raise _asset_conflict(exc) from None
        return ROWS.asset(rows[0])

    async def get_asset(self, asset_id: str) -> Asset | None:
        row = await self._driver.fetchrow(Q["get_asset"], asset_id)
        return None if row is None else ROWS.asset(row)

    async def list_assets(
        self,
        company_id: str,
        *,
        source_task_id: str | None = None,
        created_by_job_id: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Asset]:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after_at, after_id = decode_cursor(cursor) if cursor is not None else (None, None)
        rows = await self._driver.fetch(
            Q["list_assets"],
            company_id,
            source_task_id,
            created_by_job_id,
            after_at,
            after_id,
            limit + 1,
        )
        assets = [ROWS.asset(row) for row in rows]
        items = assets[:limit]
        return Page(items, encode_cursor(items[-1]) if len(assets) > limit else None)

    async def list_all_assets(self, after: str | None, limit: int) -> list[Asset]:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        if after is None:
            rows = await self._driver.fetch(Q["list_all_assets"], limit)
        else:
            rows = await self._driver.fetch(Q["list_all_assets_after"], after, limit)
        return [ROWS.asset(row) for row in rows]

    async def existing_asset_keys(self, object_keys: Collection[str]) -> set[str]:
        if not object_keys:
            await trio.lowlevel.checkpoint()
            return set()
        rows = await self._driver.fetch(Q["existing_asset_keys"], list(object_keys))
        return {row[0] for row in rows}

    # --- migrations (asyncio side: runs inside the driver's loop) ----------------------------

    # --- schedules ---------------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        try:
            row = await self._driver.fetchrow(
                QS["insert_schedule"],
                schedule.id,
                schedule.company_id,
                *_schedule_fields(schedule),
                _utc(schedule.created_at),
                _utc(schedule.updated_at),
                schedule.revision,
                write=True,
            )
        except ForeignKeyViolation:
            raise CompanyNotFound(schedule.company_id) from None
        except UniqueViolation as exc:
            if exc.constraint_name == "schedules_pkey":
                raise InvalidRequest(f"schedule id {schedule.id!r} already exists") from None
            raise ScheduleExists(schedule.company_id, schedule.name) from None
        assert row is not None
        return ROWS.schedule(row)

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        row = await self._driver.fetchrow(QS["get_schedule"], schedule_id)
        return None if row is None else ROWS.schedule(row)

    async def get_schedule_by_name(self, company_id: str, name: str) -> Schedule | None:
        row = await self._driver.fetchrow(QS["get_schedule_by_name"], company_id, name)
        return None if row is None else ROWS.schedule(row)

    async def list_schedules(
        self, company_id: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Schedule]:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after_at, after_id = decode_cursor(cursor) if cursor is not None else (None, None)
        rows = await self._driver.fetch(
            QS["list_schedules"], company_id, after_at, after_id, limit + 1
        )
        found = [ROWS.schedule(row) for row in rows]
        items = found[:limit]
        return Page(items, encode_cursor(items[-1]) if len(found) > limit else None)

    async def update_schedule(self, schedule: Schedule) -> Schedule | None:
        try:
            row = await self._driver.fetchrow(
                QS["update_schedule"],
                schedule.id,
                schedule.revision,
                *_schedule_fields(schedule),
                _utc(schedule.updated_at),
                write=True,
            )
        except UniqueViolation:
            raise ScheduleExists(schedule.company_id, schedule.name) from None
        if row is not None:
            return ROWS.schedule(row)
        if await self.get_schedule(schedule.id) is None:
            raise ScheduleNotFound(schedule.id)
        return None

    async def delete_schedule(self, schedule_id: str) -> bool:
        row = await self._driver.fetchrow(QS["delete_schedule"], schedule_id, write=True)
        return row is not None

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        rows = await self._driver.fetch(QS["due_schedules"], _utc(now), limit)
        return [ROWS.schedule(row) for row in rows]

    async def next_schedule_at(self) -> datetime | None:
        return await self._driver.fetchval(QS["next_schedule_at"])

    async def fire_schedule(
        self,
        schedule: Schedule,
        job: NewJob | None,
        next_run_at: datetime,
        now: datetime,
    ) -> Inserted | None:
        at = _utc(now)
        if job is None:
            job_args: list[Any] = [None] * 9
        else:
            job_args = [
                job.id,
                job.company_id,
                job.job_type,
                job.priority,
                input_json(job.input),
                job.max_attempts,
                job.timeout_seconds,
                _utc(job.run_at),
                _opt_utc(job.scheduled_for),
            ]
        args = [schedule.id, schedule.revision, _utc(next_run_at), at, *job_args]
        try:
            _, events = await self._changes(
                lambda: self._driver.fetch(QS["fire_schedule"], *args, write=True),
                EventType.QUEUED,
            )
        except ForeignKeyViolation:
            raise CompanyNotFound(schedule.company_id) from None
        if not events:
            return None
        return Inserted(events[0].job, events[0], True)


async def _apply_migrations(conn: Any, known: Sequence[Any], *, migrate: bool) -> list[int]:
    """Apply pending migrations under the advisory lock, each in its own transaction;
    with `migrate` False only check that none is pending."""
    await conn.execute(Q["advisory_lock"], MIGRATION_LOCK)
    try:
        if migrate:
            await conn.execute(Q["create_schema_version"])
        applied = set()
        if await conn.fetchval(Q["schema_version_exists"]):
            applied = {row[0] for row in await conn.fetch(Q["applied_versions"])}
        if applied and max(applied) > len(known):
            raise StoreUnavailable(
                f"the database is at schema version {max(applied)}, newer than this "
                f"callboard knows (up to {len(known)}): upgrade callboard"
            )
        pending = [m for m in known if m.version not in applied]
        if pending and not migrate:
            raise SchemaOutdated(
                f"the database schema is at version {max(applied, default=0)}, this "
                f"callboard needs {len(known)}: run `callboard migrate` (or start without "
                "--no-migrate)"
            )
        done = []
        for migration in pending:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(Q["record_migration"], migration.version, migration.name)
            done.append(migration.version)
        return done
    finally:
        await conn.execute(Q["advisory_unlock"], MIGRATION_LOCK)


def _schedule_fields(schedule: Schedule) -> list[Any]:
    """insert_schedule's $3..$16 (update_schedule's too): everything an edit may change."""
    return [
        schedule.name,
        schedule.job_type,
        input_json(schedule.input),
        schedule.cron,
        schedule.every,
        schedule.timezone,
        schedule.priority,
        schedule.max_attempts,
        schedule.timeout_seconds,
        str(schedule.catch_up),
        _opt_utc(schedule.next_run_at),
        _opt_utc(schedule.last_run_at),
        schedule.last_job_id,
        schedule.paused,
    ]
