"""Schedules: their fields checked and resolved (`apply_changes`), and the actor that
makes each schedule's job at its tick (`Scheduler`).

Every node runs a scheduler; none leads. Each sleeps until the earliest `next_run_at`
(woken early when a schedule changes on its node, and re-reading every `recheck`
seconds for changes made on other nodes), then for each due schedule calls
`JobStore.fire_schedule`: one transaction that inserts the tick's job and advances
the schedule, only while the schedule is at the revision it read. Nodes racing for a
tick all try; the store's unique (schedule, tick) key and the revision guard let one
job through. A node that loses changes nothing and reads the schedule anew.

Ticks missed while no node ran (the latest due tick is more than `missed_after`
seconds old): `catchUp: skip` (the default) makes no job for them and waits for the
next tick; `once` makes one job, for the latest of them. Either way a schedule makes
at most one job per pass, so a node back after a week does not flood the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import trio

from ..errors import InvalidRequest, StoreUnavailable, UnknownJobType
from ..handlers import HandlerRegistry, build_new_job
from ..jobs import CatchUp, Inserted, JobSpec, NewJob, Schedule, check_name, new_id
from ..store.base import JobStore
from .ledger import Ledger
from .ticks import check_cron, check_every, check_timezone, first_tick, latest_tick

log = logging.getLogger("callboard.scheduler")

#: The fields whose change moves a schedule's next tick.
_TIMING = ("cron", "every", "timezone")


def apply_changes(
    registry: HandlerRegistry,
    base: Schedule | None,
    company_id: str,
    changes: Mapping[str, Any],
    now: datetime,
) -> Schedule:
    """A schedule made from `changes` (Python names, `jobs.SCHEDULE_FIELDS`) over
    `base` (None: a new schedule), every field checked; its next tick computed anew
    when its timing changed or it was resumed, None while paused. Raises
    InvalidRequest, InvalidSchedule or UnknownJobType naming the field, having
    changed nothing."""
    fields: dict[str, Any] = (
        {
            "name": base.name,
            "job_type": base.job_type,
            "input": base.input,
            "cron": base.cron,
            "every": base.every,
            "timezone": base.timezone,
            "priority": base.priority,
            "max_attempts": base.max_attempts,
            "timeout": base.timeout_seconds,
            "catch_up": base.catch_up,
            "paused": base.paused,
        }
        if base is not None
        else {
            "input": {},
            "cron": None,
            "every": None,
            "timezone": "UTC",
            "priority": 0,
            "max_attempts": None,
            "timeout": None,
            "catch_up": CatchUp.SKIP,
            "paused": False,
        }
    )
    # Setting one of cron and every replaces the other.
    if changes.get("cron") is not None and "every" not in changes:
        fields["every"] = None
    if changes.get("every") is not None and "cron" not in changes:
        fields["cron"] = None
    fields.update(changes)
    name = check_name("schedule name", fields.get("name"))
    job_type = fields.get("job_type")
    if not isinstance(job_type, str):
        raise InvalidRequest("jobType is required and must be a string")
    cron, every = fields["cron"], fields["every"]
    if (cron is None) == (every is None):
        raise InvalidRequest("give either cron (a cron expression) or every (seconds), not both")
    cron = check_cron(cron) if cron is not None else None
    every = check_every(every) if every is not None else None
    timezone = check_timezone(fields["timezone"] if fields["timezone"] is not None else "UTC")
    try:
        catch_up = CatchUp(fields["catch_up"])
    except ValueError:
        raise InvalidRequest("catchUp must be 'skip' or 'once'") from None
    paused = fields["paused"]
    if not isinstance(paused, bool):
        raise InvalidRequest("paused must be true or false")
    # The job it will make, checked as a submit is: input, priority, attempts, timeout
    # and the job type (UnknownJobType).
    trial = build_new_job(
        registry,
        company_id,
        JobSpec(
            job_type,
            fields["input"] if fields["input"] is not None else {},
            priority=fields["priority"] if fields["priority"] is not None else 0,
            max_attempts=fields["max_attempts"],
            timeout=fields["timeout"],
        ),
        now,
    )
    if paused:
        next_run_at = None
    elif base is None or base.paused or any(fields[f] != getattr(base, f) for f in _TIMING):
        next_run_at = first_tick(cron, every, timezone, now)
    else:
        next_run_at = base.next_run_at
    return Schedule(
        id=base.id if base is not None else new_id(),
        company_id=company_id,
        name=name,
        job_type=job_type,
        input=trial.input,
        cron=cron,
        every=every,
        timezone=timezone,
        priority=trial.priority,
        max_attempts=fields["max_attempts"],
        timeout_seconds=trial.timeout_seconds if fields["timeout"] is not None else None,
        catch_up=catch_up,
        next_run_at=next_run_at,
        last_run_at=base.last_run_at if base is not None else None,
        last_job_id=base.last_job_id if base is not None else None,
        paused=paused,
        created_at=base.created_at if base is not None else now,
        updated_at=now,
        revision=base.revision if base is not None else 1,
    )


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    passes: int
    made: int
    skipped: int


class Scheduler:
    name = "scheduler"

    def __init__(
        self,
        ledger: Ledger,
        *,
        recheck: float = 10.0,
        missed_after: float = 60.0,
        retry_after: float = 1.0,
        batch: int = 100,
    ) -> None:
        self._ledger = ledger
        self._recheck = recheck
        self._missed_after = missed_after
        self._retry_after = retry_after
        self._batch = batch
        self._woken = trio.Event()
        self._passes = 0
        self._made = 0
        self._skipped = 0

    @property
    def store(self) -> JobStore:
        return self._ledger.store

    def statistics(self) -> SchedulerStatistics:
        return SchedulerStatistics(passes=self._passes, made=self._made, skipped=self._skipped)

    def wake(self) -> None:
        """A schedule changed on this node: look at the schedules again now."""
        self._woken.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            # A new event before reading: a change made while the pass reads is not lost.
            self._woken = trio.Event()
            try:
                next_at = await self._pass()
                wait = self._recheck
                if next_at is not None:
                    until = (next_at - self._ledger.now()).total_seconds()
                    wait = min(wait, max(0.0, until))
            except StoreUnavailable:
                log.debug("store unavailable; the scheduler retries", exc_info=True)
                wait = self._retry_after
            with trio.move_on_after(wait):
                await self._woken.wait()

    async def _pass(self) -> datetime | None:
        """Fire every due schedule; the earliest next tick after that."""
        self._passes += 1
        for _ in range(10):
            due = await self.store.due_schedules(self._ledger.now(), self._batch)
            for schedule in due:
                await self.fire(schedule)
            if len(due) < self._batch:
                break
        return await self.store.next_schedule_at()

    async def fire(self, schedule: Schedule) -> Inserted | None:
        """Make the job of a due schedule's latest tick (or skip it) and advance it."""
        assert schedule.next_run_at is not None
        now = self._ledger.now()
        latest, following = latest_tick(
            schedule.cron, schedule.every, schedule.timezone, schedule.next_run_at, now
        )
        missed = (now - latest).total_seconds() > self._missed_after
        job = None
        if schedule.catch_up is CatchUp.ONCE or not missed:
            job = self._job(schedule, latest, now)
        else:
            log.info(
                "schedule %s (%s) missed its tick of %s while no node ran: skipped "
                "(catchUp: skip); next at %s",
                schedule.name,
                schedule.id,
                latest.isoformat(),
                following.isoformat(),
            )
        made = await self._ledger.fire_schedule(schedule, job, following, now)
        if made is not None:
            self._made += 1
        elif job is None:
            self._skipped += 1
        return made

    def _job(self, schedule: Schedule, tick: datetime, now: datetime) -> NewJob | None:
        try:
            new = build_new_job(
                self._ledger.registry,
                schedule.company_id,
                JobSpec(
                    schedule.job_type,
                    schedule.input,
                    priority=schedule.priority,
                    max_attempts=schedule.max_attempts,
                    timeout=schedule.timeout_seconds,
                ),
                now,
            )
        except (InvalidRequest, UnknownJobType) as exc:
            # A node whose handlers changed since the schedule was made: the tick
            # passes without a job rather than stopping every other schedule.
            log.warning(
                "schedule %s (%s) made no job for its tick of %s: %s",
                schedule.name,
                schedule.id,
                tick.isoformat(),
                exc,
            )
            return None
        return replace(new, schedule_id=schedule.id, scheduled_for=tick)
