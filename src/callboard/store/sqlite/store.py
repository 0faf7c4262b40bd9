"""The embedded SQLite JobStore: one process, one file, WAL.

- One process owns the database: `open()` takes an exclusive `flock` on
  `<db>.lock` (the kernel drops it when the process dies, even by SIGKILL), so
  `exclusive` is True and the runtime may reclaim every running job at start-up.
- Every write runs on one writer thread that batches concurrent writes into one
  transaction (`sqlite_writer.Writer`). A write that started is always waited for
  (shielded), so its caller can publish the events it committed.
- Reads run on a small pool of read-only connections in worker threads; a cancelled
  read interrupts its query (`conn.interrupt()`) and waits for the thread to let go of
  the connection before it raises Cancelled.
- Times are stored as `callboard.jobs.iso()` text: fixed-width UTC, so text order is
  time order and SQL compares them as strings.
- Job list cursors are urlsafe base64 of "v1|<created_at>|<id>", the last row's key.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import trio

from ...errors import (
    CompanyExists,
    CompanyNotFound,
    InvalidRequest,
    InvalidTransition,
    JobNotFound,
    ScheduleExists,
    ScheduleNotFound,
    StoreInUse,
    StoreUnavailable,
    TokenNotFound,
)
from ...jobs import (
    RETRYABLE,
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
    iso,
    new_id,
    parse_iso,
    storable_text,
)
from ..base import ApiToken, CancelOutcome, JobStore, NodeInfo, Reachability, Renewal
from ..encoding import decode_cursor, encode_cursor, input_json, newest_first
from ..migrations import apply_sqlite
from ..queries import load_queries
from ..rows import Row, Rows
from .writer import Checkpointer, Writer, WriterStatistics, outbox

__all__ = ["SqliteStatistics", "SqliteStore"]

Q = load_queries("sqlite")
QS = load_queries("sqlite", "schedules.sql")
T = TypeVar("T")

_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}
_REAPED_EVENT = {
    JobStatus.CANCELLED: EventType.CANCELLED,
    JobStatus.QUEUED: EventType.RETRYING,
    JobStatus.FAILED: EventType.FAILED,
}


@dataclass(frozen=True, slots=True)
class SqliteStatistics:
    path: str
    readers: int
    writer: WriterStatistics


# --- conversions -----------------------------------------------------------------------


def _ts(value: datetime) -> str:
    # iso() reads a naive datetime as local time; refuse it rather than shift it.
    if value.tzinfo is None:
        raise ValueError("the store takes timezone-aware UTC datetimes, got a naive one")
    return iso(value.astimezone(UTC))  # type: ignore[return-value]


def _opt_ts(value: datetime | None) -> str | None:
    return None if value is None else _ts(value)


@functools.lru_cache(maxsize=1024)
def _dt(value: str | None) -> datetime | None:
    # Cached: a batch's rows share their times (created_at, run_at, a claim's now),
    # and datetimes are immutable.
    return parse_iso(value)


ROWS = Rows(to_datetime=_dt)


def _asset_params(asset: Asset) -> dict[str, Any]:
    return {
        "id": asset.id,
        "company_id": asset.company_id,
        "namespace": asset.namespace,
        "object_key": asset.object_key,
        "content_type": asset.content_type,
        "byte_size": asset.byte_size,
        "sha256": asset.sha256,
        "original_filename": asset.original_filename,
        "source_task_id": asset.source_task_id,
        "created_by_job_id": asset.created_by_job_id,
        "created_at": _ts(asset.created_at),
    }


def _insert_asset(conn: sqlite3.Connection, params: Mapping[str, Any]) -> Asset:
    try:
        return ROWS.asset(conn.execute(Q["insert_asset"], params).fetchone())
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorname in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
            raise InvalidRequest("an asset with this id or object key already exists") from None
        raise


def _decode_cursor(cursor: str) -> tuple[str, str]:
    created_at, row_id = decode_cursor(cursor)
    return _ts(created_at), row_id


# --- statements run inside the writer's transaction ------------------------------------


def _wire(row: Row, job: Job) -> dict[str, Any]:
    """`job.to_dict()` for the job read from `row`, without formatting its times
    again: the row holds them as `iso()` text already (test_sqlite_store checks that
    the two agree)."""
    return {
        "id": job.id,
        "companyId": job.company_id,
        "jobType": job.job_type,
        "status": row["status"],
        "priority": job.priority,
        "input": dict(job.input),
        "progress": {"percent": job.progress.percent, "message": job.progress.message},
        "attempt": job.attempt,
        "maxAttempts": job.max_attempts,
        "timeoutSeconds": job.timeout_seconds,
        "runAt": row["run_at"],
        "resultAssetId": job.result_asset_id,
        "result": job.result,
        "errorMessage": job.error_message,
        "errorType": job.error_type,
        "errorTraceback": job.error_traceback,
        "sourceTaskId": job.source_task_id,
        "idempotencyKey": job.idempotency_key,
        "createdAt": row["created_at"],
        "startedAt": row["started_at"],
        "finishedAt": row["finished_at"],
        "updatedAt": row["updated_at"],
        "scheduleId": job.schedule_id,
        "scheduledFor": row["scheduled_for"],
    }


def _new_job_row(new: NewJob, created_at: str) -> dict[str, Any]:
    """The insert_job parameters of a job to insert."""
    return {
        "id": new.id,
        "company_id": new.company_id,
        "job_type": new.job_type,
        "priority": new.priority,
        "input": input_json(new.input),
        "max_attempts": new.max_attempts,
        "timeout_seconds": new.timeout_seconds,
        "run_at": _ts(new.run_at),
        "source_task_id": new.source_task_id,
        "idempotency_key": new.idempotency_key,
        "created_at": created_at,
    }


def _queued_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The content_jobs row `insert_job` writes for `row` (a `_new_job_row`), as
    `SELECT *` would read it back. Built here rather than asked for with RETURNING,
    for which SQLite fills a temporary table per statement (test_sqlite_store checks
    that the two agree)."""
    timeout = row["timeout_seconds"]
    return {
        "id": row["id"],
        "company_id": row["company_id"],
        "job_type": row["job_type"],
        "status": "queued",
        "priority": row["priority"],
        "input": row["input"],
        "progress_percent": 0,
        "progress_message": None,
        "attempt": 0,
        "max_attempts": row["max_attempts"],
        "timeout_seconds": None if timeout is None else float(timeout),  # a REAL column
        "run_at": row["run_at"],
        "result_asset_id": None,
        "error_message": None,
        "source_task_id": row["source_task_id"],
        "idempotency_key": row["idempotency_key"],
        "created_at": row["created_at"],
        "started_at": None,
        "finished_at": None,
        "updated_at": row["created_at"],
        "lease_owner": None,
        "lease_expires_at": None,
        "cancel_requested": 0,
        "result": None,
        "schedule_id": None,
        "scheduled_for": None,
        "error_type": None,
        "error_traceback": None,
    }


def _insert_queued(
    conn: sqlite3.Connection, row: Mapping[str, Any], query: str = Q["insert_job"]
) -> tuple[Inserted, dict[str, Any]]:
    """Insert one job (its `_new_job_row`) with its queued event; the Inserted and the
    queued row. `query` may write the job in another state (insert_running_job): its
    queued event comes first all the same."""
    try:
        conn.execute(query, row)
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
            raise InvalidRequest(f"job id {row['id']!r} already exists") from None
        raise
    queued = _queued_row(row)
    job = ROWS.job(queued)
    event = _record(conn, EventType.QUEUED, queued, job, row["created_at"])
    return Inserted(job, event, True), queued


def _record(conn: sqlite3.Connection, type_: EventType, row: Row, job: Job, now: str) -> JobEvent:
    """Write the event row for a change just made to `job` (read from `row`); the event
    as a reader will see it: `Job.from_dict()` of the payload, i.e. the job without
    its lease fields and with its input parsed anew from JSON."""
    payload = json.dumps(_wire(row, job), separators=(",", ":"), ensure_ascii=False)
    params = {
        "job_id": job.id,
        "company_id": job.company_id,
        "type": str(type_),
        "payload": payload,
        "created_at": now,
    }
    event_id = conn.execute(Q["insert_event"], params).lastrowid
    created_at = _dt(now)
    assert created_at is not None
    snapshot = dataclasses.replace(
        job,
        input=json.loads(row["input"]),
        lease_owner=None,
        lease_expires_at=None,
        cancel_requested=False,
    )
    event = JobEvent(event_id, type_, job.id, job.company_id, created_at, snapshot)
    outbox().append(event)
    return event


def _change(
    conn: sqlite3.Connection, query: str, params: Mapping[str, Any], type_: EventType
) -> JobEvent | None:
    """One guarded UPDATE of job :id and its event; None when no row matched. The row
    is read back by its key: cheaper in SQLite than RETURNING (queries.sql says why)."""
    if conn.execute(query, params).rowcount == 0:
        return None
    row = conn.execute(Q["get_job"], {"id": params["id"]}).fetchone()
    return _record(conn, type_, row, ROWS.job(row), params["now"])


def _get_job(conn: sqlite3.Connection, job_id: str) -> Job:
    row = conn.execute(Q["get_job"], {"id": job_id}).fetchone()
    if row is None:
        raise JobNotFound(job_id)
    return ROWS.job(row)


def _fetch(query: str, params: Mapping[str, Any], convert: Callable[[sqlite3.Row], T]):
    def run(conn: sqlite3.Connection) -> list[T]:
        return [convert(row) for row in conn.execute(query, params)]

    return run


def _take_lock(path: Path) -> int:
    """Create the database's directory and hold `<db>.lock`; the file descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        raise StoreInUse(
            f"the database {path} is in use by another callboard process"
            f"{f' (pid {holder})' if holder else ''}: it holds the lock {lock_path}"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    # For the message above, seen by the next process that tries.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _release_lock(fd: int) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --- interruptible reads ---------------------------------------------------------------


async def _run_interruptible(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run `fn(conn)` in a worker thread; on cancel, interrupt the query and wait.

    `trio.to_thread.run_sync` ignores cancellation (docs/architecture.md, "Stack notes"),
    so this waits with `wait_task_rescheduled` directly: its abort hook calls `conn.interrupt()` and
    refuses to abandon the thread, which still owns the connection. Once the thread
    returns, a pending cancel is raised.
    """
    await trio.lowlevel.checkpoint_if_cancelled()
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: Any) -> None:
        try:
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)
        except trio.RunFinishedError:
            pass

    def abort(_: Any) -> trio.lowlevel.Abort:
        conn.interrupt()
        return trio.lowlevel.Abort.FAILED

    trio.lowlevel.start_thread_soon(
        functools.partial(fn, conn), deliver, name="callboard-sqlite-read"
    )
    try:
        value = await trio.lowlevel.wait_task_rescheduled(abort)
    except sqlite3.OperationalError:
        await trio.lowlevel.checkpoint_if_cancelled()  # "interrupted" was our doing
        raise
    await trio.lowlevel.checkpoint_if_cancelled()
    return value


class SqliteStore(JobStore):
    exclusive = True

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "NORMAL",
        readers: int = 4,
        max_batch: int = 64,
    ) -> None:
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {sorted(_SYNCHRONOUS)}")
        if readers < 1:
            raise ValueError("readers must be at least 1")
        self.path = Path(path)
        self._reachability = Reachability(f"the SQLite store {self.path}")
        self._synchronous = synchronous.upper()
        self._reader_count = readers
        self._checkpointer = Checkpointer(self._connect_checkpointer, Q["wal_checkpoint_passive"])
        self._writer = Writer(
            self._connect_writer,
            self._setup_writer,
            max_batch=max_batch,
            after_commit=self._checkpointer.poke,
        )
        self._state = "new"  # new -> opening -> open -> closed
        self._lock_fd: int | None = None
        self._pool_send, self._pool_receive = trio.open_memory_channel[sqlite3.Connection](readers)
        self._readers: list[sqlite3.Connection] = []
        #: The migration versions the last open() applied (empty when up to date).
        self.applied_migrations: list[int] = []

    def statistics(self) -> SqliteStatistics:
        return SqliteStatistics(str(self.path), len(self._readers), self._writer.statistics())

    # --- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(Q["busy_timeout"])
        return conn

    def _connect_writer(self) -> sqlite3.Connection:
        conn = self._connect()
        (mode,) = conn.execute(Q["journal_mode_wal"]).fetchone()
        if mode != "wal":
            raise StoreUnavailable(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute(Q[f"synchronous_{self._synchronous.lower()}"])
        conn.execute(Q["foreign_keys_on"])
        conn.execute(Q["wal_autocheckpoint_backstop"])
        return conn

    def _connect_checkpointer(self) -> sqlite3.Connection:
        conn = self._connect()
        # A checkpoint's fsyncs follow its own connection's setting.
        conn.execute(Q[f"synchronous_{self._synchronous.lower()}"])
        return conn

    @staticmethod
    def _setup_writer(conn: sqlite3.Connection) -> list[int]:
        return apply_sqlite(conn)

    def _connect_readers(self) -> list[sqlite3.Connection]:
        readers = []
        try:
            for _ in range(self._reader_count):
                conn = self._connect()
                conn.execute(Q["query_only"])
                conn.execute(Q["open_wal"]).fetchone()
                readers.append(conn)
        except BaseException:
            for conn in readers:
                conn.close()
            raise
        return readers

    # --- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        if self._state != "new":
            raise StoreUnavailable("a SqliteStore opens once; make a new one to reopen")
        self._state = "opening"
        try:
            self._lock_fd = await trio.to_thread.run_sync(_take_lock, self.path)
            self.applied_migrations = await self._writer.start()
            self._readers = await trio.to_thread.run_sync(self._connect_readers)
            self._checkpointer.start()
        except BaseException as exc:
            with trio.CancelScope(shield=True):
                await self.aclose()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            raise
        for conn in self._readers:
            self._pool_send.send_nowait(conn)
        self._state = "open"

    async def aclose(self) -> None:
        if self._state == "closed":
            return
        self._state = "closed"
        with trio.CancelScope(shield=True):
            await self._writer.stop()
            await trio.to_thread.run_sync(self._checkpointer.stop)
            # Take back every read connection, so none is closed under a running query.
            for _ in range(len(self._readers)):
                await self._pool_receive.receive()
            await self._pool_receive.aclose()  # wakes readers waiting for a connection
            await self._pool_send.aclose()
            readers, self._readers = self._readers, []
            if readers:
                await trio.to_thread.run_sync(lambda: [conn.close() for conn in readers])
            if self._lock_fd is not None:
                fd, self._lock_fd = self._lock_fd, None
                await trio.to_thread.run_sync(_release_lock, fd)

    async def ping(self) -> None:
        if not self._writer.alive and self._state == "open":
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("the SQLite writer thread is not running")
        await self._read(lambda conn: conn.execute(Q["ping"]).fetchone())

    # --- the two paths to the database -------------------------------------------------

    @property  # type: ignore[override]
    def on_commit(self) -> Callable[[list[JobEvent]], None] | None:
        return self._writer.on_commit

    @on_commit.setter
    def on_commit(self, fn: Callable[[list[JobEvent]], None] | None) -> None:
        self._writer.on_commit = fn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._state != "open":
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("the SQLite store is not open")
        try:
            conn = await self._pool_receive.receive()
        except trio.ClosedResourceError:
            raise StoreUnavailable("the SQLite store is closed") from None
        try:
            return await _run_interruptible(conn, fn)
        except sqlite3.Error as exc:
            if not isinstance(exc, sqlite3.IntegrityError):  # disk, I/O, corruption
                self._reachability.lost(exc)
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc
        finally:
            self._pool_send.send_nowait(conn)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in the writer's next transaction. Once queued, the wait is shielded:
        the write will commit or fail, and the caller gets to know which."""
        if self._state != "open":
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("the SQLite store is not open")
        try:
            result = await self._writer.submit(fn)
        except sqlite3.Error as exc:
            if not isinstance(exc, sqlite3.IntegrityError):  # disk, I/O, corruption
                self._reachability.lost(exc)
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc
        # Only a write says the store is back: reads can work while writes fail (a full
        # disk), and must not make the outage flap.
        self._reachability.reached()
        return result

    # --- companies ---------------------------------------------------------------------

    async def create_company(self, name: str, now: datetime) -> Company:
        params = {"id": new_id(), "name": name, "created_at": _ts(now)}

        def write(conn: sqlite3.Connection) -> Company:
            try:
                return ROWS.company(conn.execute(Q["insert_company"], params).fetchone())
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
                    raise CompanyExists(name) from None
                raise

        return await self._write(write)

    async def get_company(self, company_id: str) -> Company | None:
        rows = await self._read(_fetch(Q["get_company"], {"id": company_id}, ROWS.company))
        return rows[0] if rows else None

    async def get_company_by_name(self, name: str) -> Company | None:
        rows = await self._read(_fetch(Q["get_company_by_name"], {"name": name}, ROWS.company))
        return rows[0] if rows else None

    async def list_companies(self) -> list[Company]:
        return await self._read(_fetch(Q["list_companies"], {}, ROWS.company))

    # --- fair share --------------------------------------------------------------------

    async def set_company_max_running(self, company_id: str, max_running: int | None) -> Company:
        if max_running is not None and max_running < 1:
            raise InvalidRequest("maxRunning must be at least 1, or null for no cap")
        params = {"id": company_id, "max_running": max_running}

        def write(conn: sqlite3.Connection) -> Company:
            row = conn.execute(Q["set_company_max_running"], params).fetchone()
            if row is None:
                raise CompanyNotFound(company_id)
            return ROWS.company(row)

        return await self._write(write)

    async def count_by_company(self) -> dict[str, tuple[int, int]]:
        rows = await self._read(_fetch(Q["count_by_company"], {}, tuple))
        return {company_id: (running, queued) for company_id, running, queued in rows}

    # --- submitting --------------------------------------------------------------------

    async def insert_jobs(self, jobs: Sequence[NewJob], now: datetime) -> list[Inserted]:
        created_at = _ts(now)
        rows = [_new_job_row(new, created_at) for new in jobs]
        if not rows:
            await trio.lowlevel.checkpoint()
            return []
        companies = list(dict.fromkeys(row["company_id"] for row in rows))

        def write(conn: sqlite3.Connection) -> list[Inserted]:
            for company_id in companies:
                if conn.execute(Q["company_exists"], {"id": company_id}).fetchone() is None:
                    raise CompanyNotFound(company_id)
            by_key: dict[tuple[str, str], Job] = {}
            out = []
            for row in rows:
                key = (row["company_id"], row["idempotency_key"])
                if row["idempotency_key"] is not None:
                    existing = by_key.get(key)
                    if existing is None:
                        found = conn.execute(Q["get_job_by_idempotency_key"], row).fetchone()
                        existing = None if found is None else ROWS.job(found)
                    if existing is not None:
                        by_key[key] = existing
                        out.append(Inserted(existing, None, False))
                        continue
                inserted, _ = _insert_queued(conn, row)
                if row["idempotency_key"] is not None:
                    by_key[key] = inserted.job
                out.append(inserted)
            return out

        return await self._write(write)

    async def insert_running(
        self,
        job: NewJob,
        now: datetime,
        *,
        lease_owner: str,
        lease_expires_at: datetime,
    ) -> tuple[Inserted, Job] | None:
        at = _ts(now)
        row = {
            **_new_job_row(job, at),
            "now": at,
            "lease_owner": lease_owner,
            "lease_expires_at": _ts(lease_expires_at),
        }
        if job.run_at > now:
            await trio.lowlevel.checkpoint()
            return None

        def write(conn: sqlite3.Connection) -> tuple[Inserted, Job] | None:
            if conn.execute(Q["company_exists"], {"id": job.company_id}).fetchone() is None:
                raise CompanyNotFound(job.company_id)
            if job.idempotency_key is not None and (
                conn.execute(Q["get_job_by_idempotency_key"], row).fetchone() is not None
            ):
                return None
            if conn.execute(Q["overtakes_queued"], row).fetchone() is not None:
                return None
            inserted, queued = _insert_queued(conn, row, Q["insert_running_job"])
            started = {
                **queued,
                "status": "running",
                "attempt": 1,
                "started_at": at,
                "updated_at": at,
                "lease_owner": row["lease_owner"],
                "lease_expires_at": row["lease_expires_at"],
            }
            running = ROWS.job(started)
            _record(conn, EventType.RUNNING, started, running, at)
            return inserted, running

        return await self._write(write)

    # --- reading -----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        rows = await self._read(_fetch(Q["get_job"], {"id": job_id}, ROWS.job))
        return rows[0] if rows else None

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
        after_created_at, after_id = _decode_cursor(cursor) if cursor is not None else (None, None)
        statuses = as_statuses(status)
        params = {
            "company_id": company_id,
            "job_type": job_type,
            "source_task_id": source_task_id,
            "created_after": _opt_ts(created_after),
            "created_before": _opt_ts(created_before),
            "after_created_at": after_created_at,
            "after_id": after_id,
            "limit": limit + 1,  # one more than asked tells whether a next page exists
        }
        if statuses is None:
            query = Q["list_jobs_all"] if company_id is None else Q["list_jobs_company"]
            jobs = await self._read(_fetch(query, params, ROWS.job))
        else:
            query = (
                Q["list_jobs_all_status"] if company_id is None else Q["list_jobs_company_status"]
            )

            def read(conn: sqlite3.Connection) -> list[Job]:
                lists = [
                    _fetch(query, {**params, "status": str(one)}, ROWS.job)(conn)
                    for one in sorted(statuses)
                ]
                return newest_first(lists, limit + 1)

            jobs = await self._read(read)
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
        params = {
            "company_id": company_id,
            "job_type": job_type,
            "created_after": _opt_ts(created_after),
            "created_before": _opt_ts(created_before),
        }
        rows = await self._read(_fetch(Q["count_by_status"], params, lambda r: (r[0], r[1])))
        counts = dict.fromkeys(JobStatus, 0)
        for status, n in rows:
            counts[JobStatus(status)] = n
        return counts

    async def count_queued(self, now: datetime, at_most: int) -> int:
        params = {"now": _ts(now), "at_most": max(at_most, 0)}
        [value] = await self._read(_fetch(Q["count_queued"], params, lambda r: r[0]))
        return value

    async def next_run_at(self, job_types: Collection[str]) -> datetime | None:
        params = {"job_types": json.dumps(list(job_types))}
        [value] = await self._read(_fetch(Q["next_run_at"], params, lambda r: r[0]))
        return _dt(value)

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
        params = {
            "now": _ts(now),
            "limit": limit,
            "type_caps": json.dumps(dict(type_caps)),
            "lease_owner": lease_owner,
            "lease_expires_at": _ts(lease_expires_at),
        }
        if limit < 1 or not type_caps:
            await trio.lowlevel.checkpoint()
            return []

        def write(conn: sqlite3.Connection) -> list[tuple[Job, JobEvent]]:
            order = [r[0] for r in conn.execute(Q["claim_order"], params).fetchall()]
            if not order:
                return []
            place = {job_id: i for i, job_id in enumerate(order)}
            rows = conn.execute(Q["claim"], {**params, "ids": json.dumps(order)}).fetchall()
            rows.sort(key=lambda r: place[r["id"]])
            claimed = []
            for row in rows:
                job = ROWS.job(row)
                claimed.append((job, _record(conn, EventType.RUNNING, row, job, params["now"])))
            return claimed

        return await self._write(write)

    async def renew_leases(
        self, job_ids: Collection[str], lease_owner: str, lease_expires_at: datetime
    ) -> Renewal:
        params = {
            "job_ids": json.dumps(list(job_ids)),
            "lease_owner": lease_owner,
            "lease_expires_at": _ts(lease_expires_at),
        }
        if not job_ids:
            await trio.lowlevel.checkpoint()
            return Renewal(frozenset(), frozenset())

        def write(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            return [(r[0], r[1]) for r in conn.execute(Q["renew_leases"], params).fetchall()]

        rows = await self._write(write)
        return Renewal(
            frozenset(job_id for job_id, _ in rows),
            frozenset(job_id for job_id, cancel in rows if cancel),
        )

    async def record_progress(
        self,
        job_id: str,
        lease_owner: str,
        percent: int,
        message: str | None,
        now: datetime,
    ) -> JobEvent | None:
        params = {
            "id": job_id,
            "lease_owner": lease_owner,
            "percent": percent,
            "message": storable_text(message),
            "now": _ts(now),
        }
        return await self._write(
            lambda conn: _change(conn, Q["record_progress"], params, EventType.PROGRESS)
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
        params = {
            "id": job_id,
            "lease_owner": lease_owner,
            "result_asset_id": result_asset_id,
            "result": result,
            "now": _ts(now),
        }
        rows = [_asset_params(asset) for asset in assets]

        def write(conn: sqlite3.Connection) -> JobEvent | None:
            event = _change(conn, Q["complete"], params, EventType.DONE)
            if event is None:
                return None
            # Same savepoint as the transition: an error here rolls both back.
            for row in rows:
                if row["company_id"] != event.company_id or row["created_by_job_id"] != job_id:
                    raise InvalidRequest(
                        f"asset {row['id']!r} must belong to job {job_id!r} and its company"
                    )
                _insert_asset(conn, row)
            return event

        return await self._write(write)

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
        params = {
            "id": job_id,
            "lease_owner": lease_owner,
            "error_message": storable_text(error_message),
            "error_type": storable_text(error_type),
            "error_traceback": storable_text(error_traceback),
            "retry_at": _opt_ts(retry_at),
            "now": _ts(now),
        }
        if retry_at is None:
            query, type_ = Q["fail_final"], EventType.FAILED
        else:
            query, type_ = Q["fail_retry"], EventType.RETRYING

        def write(conn: sqlite3.Connection) -> JobEvent | None:
            guard = {k: params[k] for k in ("id", "lease_owner", "now")}
            guard["only_if_requested"] = 1
            cancelled = _change(conn, Q["mark_cancelled"], guard, EventType.CANCELLED)
            if cancelled is not None:
                return cancelled
            return _change(conn, query, params, type_)

        return await self._write(write)

    async def mark_cancelled(self, job_id: str, lease_owner: str, now: datetime) -> JobEvent | None:
        params = {"id": job_id, "lease_owner": lease_owner, "now": _ts(now), "only_if_requested": 0}
        return await self._write(
            lambda conn: _change(conn, Q["mark_cancelled"], params, EventType.CANCELLED)
        )

    # --- operator actions --------------------------------------------------------------

    async def cancel(self, job_id: str, now: datetime) -> CancelOutcome:
        params = {"id": job_id, "now": _ts(now)}

        def write(conn: sqlite3.Connection) -> CancelOutcome:
            job = _get_job(conn, job_id)
            if job.status == JobStatus.QUEUED:
                row = conn.execute(Q["cancel_queued"], params).fetchone()
                job = ROWS.job(row)
                event = _record(conn, EventType.CANCELLED, row, job, params["now"])
                return CancelOutcome(job, event)
            if job.status == JobStatus.RUNNING:
                return CancelOutcome(
                    ROWS.job(conn.execute(Q["request_cancel"], params).fetchone()), None
                )
            raise InvalidTransition(job_id, str(job.status), "cancel")

        return await self._write(write)

    async def retry(self, job_id: str, now: datetime) -> JobEvent:
        params = {"id": job_id, "now": _ts(now)}

        def write(conn: sqlite3.Connection) -> JobEvent:
            job = _get_job(conn, job_id)
            if job.status not in RETRYABLE:
                raise InvalidTransition(job_id, str(job.status), "retry")
            event = _change(conn, Q["retry"], params, EventType.QUEUED)
            assert event is not None  # the writer is the only one changing rows
            return event

        return await self._write(write)

    async def reap_expired(
        self,
        *,
        now: datetime,
        expired_before: datetime,
        retry_at: datetime,
        exclude_owner: str | None = None,
        limit: int = 100,
    ) -> list[JobEvent]:
        select = {
            "expired_before": _ts(expired_before),
            "exclude_owner": exclude_owner,
            "limit": limit,
        }
        update = {
            "now": _ts(now),
            "retry_at": _ts(retry_at),
            "worker_lost": WORKER_LOST,
            "worker_lost_type": WORKER_LOST_TYPE,
        }
        if limit < 1:
            await trio.lowlevel.checkpoint()
            return []

        def write(conn: sqlite3.Connection) -> list[JobEvent]:
            events = []
            # Oldest lease first; the UPDATE clears the lease, so it cannot order them.
            for (job_id,) in conn.execute(Q["expired_leases"], select).fetchall():
                row = conn.execute(Q["reap"], {**update, "id": job_id}).fetchone()
                job = ROWS.job(row)
                events.append(_record(conn, _REAPED_EVENT[job.status], row, job, update["now"]))
            return events

        return await self._write(write)

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
        params = {"after_id": after_id, "company_id": company_id, "job_id": job_id, "limit": limit}
        if job_id is not None:
            query = Q["events_after_job"]
        elif company_id is not None:
            query = Q["events_after_company"]
        else:
            query = Q["events_after_all"]
        return await self._read(_fetch(query, params, ROWS.event))

    async def latest_event(self, job_id: str) -> JobEvent | None:
        rows = await self._read(_fetch(Q["latest_event"], {"job_id": job_id}, ROWS.event))
        return rows[0] if rows else None

    async def last_event_id(self) -> int:
        [value] = await self._read(_fetch(Q["last_event_id"], {}, lambda r: r[0]))
        return value

    async def pruned_through(self) -> int:
        [value] = await self._read(_fetch(Q["pruned_through"], {}, lambda r: r[0]))
        return value

    async def prune_events(self, before: datetime, limit: int = 10_000) -> int:
        params = {"before": _ts(before), "limit": limit}

        def write(conn: sqlite3.Connection) -> int:
            ids = [row[0] for row in conn.execute(Q["prune_events"], params).fetchall()]
            if ids:
                conn.execute(Q["raise_pruned_through"], {"id": max(ids)})
            return len(ids)

        return await self._write(write)

    # --- retention ---------------------------------------------------------------------

    async def prune_jobs(self, finished_before: datetime, limit: int = 1000) -> int:
        params = {"before": _ts(finished_before), "limit": max(limit, 0)}

        def write(conn: sqlite3.Connection) -> int:
            ids = [row[0] for row in conn.execute(Q["prunable_jobs"], params).fetchall()]
            if not ids:
                return 0
            doomed = {"ids": json.dumps(ids)}
            events = [row[0] for row in conn.execute(Q["prune_job_events"], doomed).fetchall()]
            if events:
                conn.execute(Q["raise_pruned_through"], {"id": max(events)})
            conn.execute(Q["prune_jobs"], doomed)
            return len(ids)

        return await self._write(write)

    async def count_prunable_jobs(self, finished_before: datetime) -> int:
        params = {"before": _ts(finished_before)}
        [value] = await self._read(_fetch(Q["count_prunable_jobs"], params, lambda r: r[0]))
        return value

    # --- node presence -----------------------------------------------------------------

    async def announce_node(self, node: NodeInfo, now: datetime, forget_before: datetime) -> None:
        params = {
            "node_id": node.id,
            "host": node.host,
            "pid": node.pid,
            "started_at": _ts(node.started_at),
            "storage_url": node.storage_url,
            "job_types": json.dumps(list(node.job_types)),
            "now": _ts(now),
        }
        before = {"forget_before": _ts(forget_before)}

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(Q["forget_nodes_before"], before)
            conn.execute(Q["announce_node"], params)

        await self._write(write)

    async def live_nodes(self, since: datetime) -> list[NodeInfo]:
        return await self._read(_fetch(Q["live_nodes"], {"since": _ts(since)}, ROWS.node))

    async def forget_node(self, node_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(Q["forget_node"], {"node_id": node_id})

        await self._write(write)

    # --- API tokens --------------------------------------------------------------------

    async def create_token(self, token: ApiToken) -> ApiToken:
        params = {
            "id": token.id,
            "company_id": token.company_id,
            "label": token.label,
            "prefix": token.prefix,
            "hash": token.hash,
            "created_at": _ts(token.created_at),
            "revoked_at": _opt_ts(token.revoked_at),
        }

        def write(conn: sqlite3.Connection) -> ApiToken:
            if token.company_id is not None and (
                conn.execute(Q["get_company"], {"id": token.company_id}).fetchone() is None
            ):
                raise CompanyNotFound(token.company_id)
            try:
                return ROWS.token(conn.execute(Q["insert_token"], params).fetchone())
            except sqlite3.IntegrityError:
                raise InvalidRequest("a token with this id or secret already exists") from None

        return await self._write(write)

    async def find_tokens(self, prefix: str) -> list[ApiToken]:
        return await self._read(_fetch(Q["find_tokens"], {"prefix": prefix}, ROWS.token))

    async def list_tokens(self, company_id: str | None) -> list[ApiToken]:
        if company_id is None:
            return await self._read(_fetch(Q["list_operator_tokens"], {}, ROWS.token))
        return await self._read(
            _fetch(Q["list_company_tokens"], {"company_id": company_id}, ROWS.token)
        )

    async def revoke_token(self, token_id: str, company_id: str | None, now: datetime) -> ApiToken:
        params = {"id": token_id, "company_id": company_id, "now": _ts(now)}

        def write(conn: sqlite3.Connection) -> ApiToken:
            row = conn.execute(Q["revoke_token"], params).fetchone()
            if row is None:
                raise TokenNotFound(token_id)
            return ROWS.token(row)

        return await self._write(write)

    async def count_by_type_and_status(self) -> dict[tuple[str, JobStatus], int]:
        rows = await self._read(
            _fetch(Q["count_by_type_and_status"], {}, lambda r: (r[0], JobStatus(r[1]), r[2]))
        )
        return {(job_type, status): n for job_type, status, n in rows}

    # --- assets ------------------------------------------------------------------------

    async def insert_asset(self, asset: Asset) -> Asset:
        params = _asset_params(asset)

        def write(conn: sqlite3.Connection) -> Asset:
            if conn.execute(Q["company_exists"], {"id": asset.company_id}).fetchone() is None:
                raise CompanyNotFound(asset.company_id)
            if asset.created_by_job_id is not None:
                _get_job(conn, asset.created_by_job_id)
            return _insert_asset(conn, params)

        return await self._write(write)

    async def get_asset(self, asset_id: str) -> Asset | None:
        rows = await self._read(_fetch(Q["get_asset"], {"id": asset_id}, ROWS.asset))
        return rows[0] if rows else None

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
        after_created_at, after_id = _decode_cursor(cursor) if cursor is not None else (None, None)
        params = {
            "company_id": company_id,
            "source_task_id": source_task_id,
            "created_by_job_id": created_by_job_id,
            "after_created_at": after_created_at,
            "after_id": after_id,
            "limit": limit + 1,  # one more than asked tells whether a next page exists
        }
        query = Q["list_assets"] if source_task_id is None else Q["list_assets_of_task"]
        assets = await self._read(_fetch(query, params, ROWS.asset))
        items = assets[:limit]
        return Page(items, encode_cursor(items[-1]) if len(assets) > limit else None)

    async def list_all_assets(self, after: str | None, limit: int) -> list[Asset]:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        if after is None:
            query, params = Q["list_all_assets"], {"limit": limit}
        else:
            query, params = Q["list_all_assets_after"], {"after": after, "limit": limit}
        return await self._read(_fetch(query, params, ROWS.asset))

    async def existing_asset_keys(self, object_keys: Collection[str]) -> set[str]:
        if not object_keys:
            await trio.lowlevel.checkpoint()
            return set()
        params = {"object_keys": json.dumps(list(object_keys))}
        return set(await self._read(_fetch(Q["existing_asset_keys"], params, lambda r: r[0])))

    # --- schedules ---------------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        params = _schedule_params(schedule)

        def write(conn: sqlite3.Connection) -> Schedule:
            if conn.execute(Q["company_exists"], {"id": schedule.company_id}).fetchone() is None:
                raise CompanyNotFound(schedule.company_id)
            try:
                return ROWS.schedule(conn.execute(QS["insert_schedule"], params).fetchone())
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
                    raise ScheduleExists(schedule.company_id, schedule.name) from None
                if exc.sqlite_errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
                    raise InvalidRequest(f"schedule id {schedule.id!r} already exists") from None
                raise

        return await self._write(write)

    async def get_schedule(self, schedule_id: str) -> Schedule | None:
        rows = await self._read(_fetch(QS["get_schedule"], {"id": schedule_id}, ROWS.schedule))
        return rows[0] if rows else None

    async def get_schedule_by_name(self, company_id: str, name: str) -> Schedule | None:
        params = {"company_id": company_id, "name": name}
        rows = await self._read(_fetch(QS["get_schedule_by_name"], params, ROWS.schedule))
        return rows[0] if rows else None

    async def list_schedules(
        self, company_id: str | None, *, limit: int = 50, cursor: str | None = None
    ) -> Page[Schedule]:
        if limit < 1:
            raise InvalidRequest("limit must be at least 1")
        after_created_at, after_id = _decode_cursor(cursor) if cursor is not None else (None, None)
        params = {
            "company_id": company_id,
            "after_created_at": after_created_at,
            "after_id": after_id,
            "limit": limit + 1,
        }
        query = QS["list_schedules_all"] if company_id is None else QS["list_schedules_company"]
        found = await self._read(_fetch(query, params, ROWS.schedule))
        items = found[:limit]
        return Page(items, encode_cursor(items[-1]) if len(found) > limit else None)

    async def update_schedule(self, schedule: Schedule) -> Schedule | None:
        params = _schedule_params(schedule)

        def write(conn: sqlite3.Connection) -> Schedule | None:
            try:
                row = conn.execute(QS["update_schedule"], params).fetchone()
            except sqlite3.IntegrityError as exc:
                if exc.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE":
                    raise ScheduleExists(schedule.company_id, schedule.name) from None
                raise
            if row is not None:
                return ROWS.schedule(row)
            if conn.execute(QS["get_schedule"], {"id": schedule.id}).fetchone() is None:
                raise ScheduleNotFound(schedule.id)
            return None

        return await self._write(write)

    async def delete_schedule(self, schedule_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            return conn.execute(QS["delete_schedule"], {"id": schedule_id}).fetchone() is not None

        return await self._write(write)

    async def due_schedules(self, now: datetime, limit: int) -> list[Schedule]:
        params = {"now": _ts(now), "limit": limit}
        return await self._read(_fetch(QS["due_schedules"], params, ROWS.schedule))

    async def next_schedule_at(self) -> datetime | None:
        rows = await self._read(_fetch(QS["next_schedule_at"], {}, lambda r: r[0]))
        return _dt(rows[0]) if rows else None

    async def fire_schedule(
        self,
        schedule: Schedule,
        job: NewJob | None,
        next_run_at: datetime,
        now: datetime,
    ) -> Inserted | None:
        at = _ts(now)
        guard = {"id": schedule.id, "revision": schedule.revision}
        row = None
        if job is not None:
            row = {
                **_new_job_row(job, at),
                "schedule_id": schedule.id,
                "scheduled_for": _opt_ts(job.scheduled_for),
            }

        def write(conn: sqlite3.Connection) -> Inserted | None:
            if conn.execute(QS["schedule_at_revision"], guard).fetchone() is None:
                return None
            made = None
            if row is not None and (
                conn.execute(QS["schedule_tick_exists"], row).fetchone() is None
            ):
                if conn.execute(Q["company_exists"], {"id": row["company_id"]}).fetchone() is None:
                    raise CompanyNotFound(row["company_id"])
                inserted = conn.execute(QS["insert_scheduled_job"], row).fetchone()
                job_made = ROWS.job(inserted)
                made = Inserted(
                    job_made, _record(conn, EventType.QUEUED, inserted, job_made, at), True
                )
            conn.execute(
                QS["advance_schedule"],
                {
                    **guard,
                    "next_run_at": _ts(next_run_at),
                    "last_run_at": row["scheduled_for"] if made and row else None,
                    "last_job_id": made.job.id if made else None,
                    "now": at,
                },
            )
            return made

        return await self._write(write)


def _schedule_params(schedule: Schedule) -> dict[str, Any]:
    return {
        "id": schedule.id,
        "company_id": schedule.company_id,
        "name": schedule.name,
        "job_type": schedule.job_type,
        "input": input_json(schedule.input),
        "cron": schedule.cron,
        "every": schedule.every,
        "timezone": schedule.timezone,
        "priority": schedule.priority,
        "max_attempts": schedule.max_attempts,
        "timeout_seconds": schedule.timeout_seconds,
        "catch_up": str(schedule.catch_up),
        "next_run_at": _opt_ts(schedule.next_run_at),
        "last_run_at": _opt_ts(schedule.last_run_at),
        "last_job_id": schedule.last_job_id,
        "paused": int(schedule.paused),
        "created_at": _ts(schedule.created_at),
        "updated_at": _ts(schedule.updated_at),
        "revision": schedule.revision,
    }
