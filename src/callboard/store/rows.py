"""Rows of the SQL stores as records: one set of column-to-field mappings.

SQLite and PostgreSQL keep the same columns, so `Job`, `JobEvent`, `Company`,
`ApiToken`, `Asset` and `NodeInfo` are built from a row the same way; kept once here, a column
added to both schemas is mapped once and cannot come out differently per store.

What does differ is how a driver hands over a time: SQLite as `iso()` text,
asyncpg as a datetime. Each store passes its conversion (`Rows.to_datetime`).
JSON columns arrive as text from both, and `bool()` takes SQLite's 0/1 as well as
PostgreSQL's booleans, so neither needs a hook of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..jobs import Asset, CatchUp, Company, EventType, Job, JobEvent, JobStatus, Progress, Schedule
from .base import ApiToken, NodeInfo

__all__ = ["Row", "Rows"]


class Row(Protocol):
    """What both drivers' rows have in common: `sqlite3.Row` is no `Mapping`."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class Rows:
    """The records of one dialect's rows."""

    #: A time column's value as an aware UTC datetime; None for NULL.
    to_datetime: Callable[[Any], Any]

    def job(self, row: Row, *, with_lease: bool = True) -> Job:
        """`with_lease=False`: the job as an event's payload holds it (no lease)."""
        dt = self.to_datetime
        return Job(
            id=row["id"],
            company_id=row["company_id"],
            job_type=row["job_type"],
            status=JobStatus(row["status"]),
            priority=row["priority"],
            input=json.loads(row["input"]),
            progress=Progress(row["progress_percent"], row["progress_message"]),
            attempt=row["attempt"],
            max_attempts=row["max_attempts"],
            timeout_seconds=row["timeout_seconds"],
            run_at=dt(row["run_at"]),
            result_asset_id=row["result_asset_id"],
            result=None if row["result"] is None else json.loads(row["result"]),
            error_message=row["error_message"],
            error_type=row["error_type"],
            error_traceback=row["error_traceback"],
            source_task_id=row["source_task_id"],
            idempotency_key=row["idempotency_key"],
            created_at=dt(row["created_at"]),
            started_at=dt(row["started_at"]),
            finished_at=dt(row["finished_at"]),
            updated_at=dt(row["updated_at"]),
            lease_owner=row["lease_owner"] if with_lease else None,
            lease_expires_at=dt(row["lease_expires_at"]) if with_lease else None,
            cancel_requested=bool(row["cancel_requested"]) and with_lease,
            schedule_id=row["schedule_id"],
            scheduled_for=dt(row["scheduled_for"]),
        )

    def event(self, row: Row) -> JobEvent:
        """A stored event: its job is the payload as written, not the job's row now."""
        return JobEvent(
            id=row["id"],
            type=EventType(row["type"]),
            job_id=row["job_id"],
            company_id=row["company_id"],
            created_at=self.to_datetime(row["created_at"]),
            job=Job.from_dict(json.loads(row["payload"])),
        )

    def change_event(self, row: Row, type_: EventType | None = None) -> JobEvent:
        """The event a transition statement appended for `row` (its job columns, event_id
        and, when it varies by row, event_type): the job as the stored payload has it,
        without lease fields, built from the columns (cheaper than parsing the payload)."""
        job = self.job(row, with_lease=False)
        return JobEvent(
            id=row["event_id"],
            type=type_ if type_ is not None else EventType(row["event_type"]),
            job_id=job.id,
            company_id=job.company_id,
            created_at=job.updated_at,
            job=job,
        )

    def company(self, row: Row) -> Company:
        return Company(
            row["id"], row["name"], self.to_datetime(row["created_at"]), row["max_running"]
        )

    def token(self, row: Row) -> ApiToken:
        return ApiToken(
            id=row["id"],
            company_id=row["company_id"],
            label=row["label"],
            prefix=row["prefix"],
            hash=row["hash"],
            created_at=self.to_datetime(row["created_at"]),
            revoked_at=self.to_datetime(row["revoked_at"]),
        )

    def asset(self, row: Row) -> Asset:
        return Asset(
            id=row["id"],
            company_id=row["company_id"],
            namespace=row["namespace"],
            object_key=row["object_key"],
            content_type=row["content_type"],
            byte_size=row["byte_size"],
            sha256=row["sha256"],
            original_filename=row["original_filename"],
            source_task_id=row["source_task_id"],
            created_by_job_id=row["created_by_job_id"],
            created_at=self.to_datetime(row["created_at"]),
        )

    def node(self, row: Row) -> NodeInfo:
        return NodeInfo(
            id=row["node_id"],
            host=row["host"],
            pid=row["pid"],
            started_at=self.to_datetime(row["started_at"]),
            storage_url=row["storage_url"],
            job_types=tuple(json.loads(row["job_types"])),
            last_seen=self.to_datetime(row["last_seen"]),
        )

    def schedule(self, row: Row) -> Schedule:
        dt = self.to_datetime
        return Schedule(
            id=row["id"],
            company_id=row["company_id"],
            name=row["name"],
            job_type=row["job_type"],
            input=json.loads(row["input"]),
            cron=row["cron"],
            every=row["every"],
            timezone=row["timezone"],
            priority=row["priority"],
            max_attempts=row["max_attempts"],
            timeout_seconds=row["timeout_seconds"],
            catch_up=CatchUp(row["catch_up"]),
            next_run_at=dt(row["next_run_at"]),
            last_run_at=dt(row["last_run_at"]),
            last_job_id=row["last_job_id"],
            paused=bool(row["paused"]),
            created_at=dt(row["created_at"]),
            updated_at=dt(row["updated_at"]),
            revision=row["revision"],
        )
