"""The JobStore contract for schedules, on every store kind (conftest.STORE_KINDS):
what `callboard.store.base` says of create/get/list/update/delete, due schedules and
`fire_schedule`, whose unique (schedule, tick) key makes one job per tick."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import trio
from store_contract import T0, at, company, make_job

from callboard.errors import CompanyNotFound, InvalidRequest, ScheduleExists, ScheduleNotFound
from callboard.jobs import CatchUp, EventType, JobStatus, NewJob, Schedule, new_id
from callboard.store.base import JobStore

pytestmark = pytest.mark.trio


def make_schedule(
    company_id: str,
    name: str = "nightly",
    *,
    next_run_at: datetime | None = T0,
    created_at: datetime = T0,
    cron: str | None = "30 2 * * *",
    every: float | None = None,
) -> Schedule:
    return Schedule(
        id=new_id(),
        company_id=company_id,
        name=name,
        job_type="noop",
        input={"n": 1, "s": "é"},
        cron=cron,
        every=every,
        timezone="Europe/Paris",
        priority=3,
        max_attempts=None,
        timeout_seconds=None,
        catch_up=CatchUp.SKIP,
        next_run_at=next_run_at,
        last_run_at=None,
        last_job_id=None,
        paused=False,
        created_at=created_at,
        updated_at=created_at,
    )


def tick_job(schedule: Schedule, tick: datetime) -> NewJob:
    return replace(
        make_job(schedule.company_id, input=dict(schedule.input), priority=schedule.priority),
        schedule_id=schedule.id,
        scheduled_for=tick,
    )


async def jobs_of(store: JobStore, company_id: str) -> list:
    return (await store.list_jobs(company_id, limit=500)).items


async def test_create_get_by_id_and_name(store: JobStore) -> None:
    c = await company(store)
    made = await store.create_schedule(make_schedule(c))
    assert made.input == {"n": 1, "s": "é"} and made.timezone == "Europe/Paris"
    assert made.revision == 1 and made.catch_up is CatchUp.SKIP and not made.paused
    assert await store.get_schedule(made.id) == made
    assert await store.get_schedule_by_name(c, "nightly") == made
    assert await store.get_schedule_by_name(c, "other") is None
    assert await store.get_schedule(new_id()) is None
    every = await store.create_schedule(make_schedule(c, "fast", cron=None, every=1.5))
    assert every.every == 1.5 and every.cron is None


async def test_names_are_unique_within_a_company(store: JobStore) -> None:
    a, b = await company(store, "a"), await company(store, "b")
    await store.create_schedule(make_schedule(a))
    with pytest.raises(ScheduleExists):
        await store.create_schedule(make_schedule(a))
    await store.create_schedule(make_schedule(b))
    with pytest.raises(CompanyNotFound):
        await store.create_schedule(make_schedule(new_id()))
    assert len((await store.list_schedules(None)).items) == 2


async def test_list_newest_first_with_cursor(store: JobStore) -> None:
    a, b = await company(store, "a"), await company(store, "b")
    made = [
        await store.create_schedule(make_schedule(a, f"s{i}", created_at=at(i))) for i in range(5)
    ]
    await store.create_schedule(make_schedule(b, "other"))
    first = await store.list_schedules(a, limit=3)
    assert [s.name for s in first.items] == ["s4", "s3", "s2"]
    assert first.next_cursor is not None
    rest = await store.list_schedules(a, limit=3, cursor=first.next_cursor)
    assert [s.name for s in rest.items] == ["s1", "s0"] and rest.next_cursor is None
    assert len((await store.list_schedules(None, limit=50)).items) == 6
    with pytest.raises(InvalidRequest):
        await store.list_schedules(a, cursor="nonsense")
    assert made[0].name == "s0"


async def test_update_is_guarded_by_revision(store: JobStore) -> None:
    c = await company(store)
    made = await store.create_schedule(make_schedule(c))
    await store.create_schedule(make_schedule(c, "taken"))
    edited = await store.update_schedule(
        replace(made, name="renamed", paused=True, next_run_at=None, updated_at=at(5))
    )
    assert edited is not None and edited.revision == 2 and edited.paused
    assert edited.name == "renamed" and edited.next_run_at is None
    assert edited.updated_at == at(5) and edited.created_at == made.created_at
    # A write from the older read changes nothing.
    assert await store.update_schedule(replace(made, name="stale")) is None
    assert (await store.get_schedule(made.id)).name == "renamed"  # type: ignore[union-attr]
    with pytest.raises(ScheduleExists):
        await store.update_schedule(replace(edited, name="taken"))
    with pytest.raises(ScheduleNotFound):
        await store.update_schedule(replace(edited, id=new_id()))


async def test_delete(store: JobStore) -> None:
    c = await company(store)
    made = await store.create_schedule(make_schedule(c))
    assert await store.delete_schedule(made.id) is True
    assert await store.delete_schedule(made.id) is False
    assert await store.get_schedule(made.id) is None


async def test_due_and_next(store: JobStore) -> None:
    c = await company(store)
    assert await store.next_schedule_at() is None
    late = await store.create_schedule(make_schedule(c, "late", next_run_at=at(10)))
    early = await store.create_schedule(make_schedule(c, "early", next_run_at=at(5)))
    await store.create_schedule(make_schedule(c, "paused", next_run_at=None))
    assert await store.next_schedule_at() == at(5)
    assert await store.due_schedules(at(4), 10) == []
    assert [s.id for s in await store.due_schedules(at(5), 10)] == [early.id]
    assert [s.id for s in await store.due_schedules(at(60), 10)] == [early.id, late.id]
    assert [s.id for s in await store.due_schedules(at(60), 1)] == [early.id]


async def test_fire_makes_one_job_and_advances(store: JobStore) -> None:
    c = await company(store)
    s = await store.create_schedule(make_schedule(c, next_run_at=at(0)))
    before = await store.last_event_id()
    made = await store.fire_schedule(s, tick_job(s, at(0)), at(60), at(0.3))
    assert made is not None and made.created and made.event is not None
    assert made.event.type is EventType.QUEUED and made.event.id > before
    job = made.job
    assert job.status is JobStatus.QUEUED and job.schedule_id == s.id
    assert job.scheduled_for == at(0) and job.priority == 3
    assert made.event.job.schedule_id == s.id and made.event.job.scheduled_for == at(0)
    stored = await store.get_job(job.id)
    assert stored is not None and stored.scheduled_for == at(0) and stored.schedule_id == s.id
    after = await store.get_schedule(s.id)
    assert after is not None and after.next_run_at == at(60) and after.revision == 2
    assert after.last_run_at == at(0) and after.last_job_id == job.id
    # The same read again: the revision moved on, nothing is written.
    assert await store.fire_schedule(s, tick_job(s, at(0)), at(60), at(0.4)) is None
    assert [j.id for j in await jobs_of(store, c)] == [job.id]
    # A skipped tick advances without a job.
    assert await store.fire_schedule(after, None, at(120), at(61)) is None
    skipped = await store.get_schedule(s.id)
    assert skipped is not None and skipped.next_run_at == at(120)
    assert skipped.last_job_id == job.id and skipped.revision == 3


async def test_a_tick_makes_one_job_even_when_the_schedule_is_set_back(store: JobStore) -> None:
    """The unique (schedule, tick) key, not only the revision, keeps a tick to one job:
    a schedule set back to a tick it already ran (clocks apart between nodes) runs
    past it without a second job."""
    c = await company(store)
    s = await store.create_schedule(make_schedule(c, next_run_at=at(0)))
    first = await store.fire_schedule(s, tick_job(s, at(0)), at(60), at(1))
    assert first is not None
    current = await store.get_schedule(s.id)
    assert current is not None
    back = await store.update_schedule(replace(current, next_run_at=at(0)))
    assert back is not None
    assert await store.fire_schedule(back, tick_job(back, at(0)), at(60), at(2)) is None
    assert len(await jobs_of(store, c)) == 1
    moved = await store.get_schedule(s.id)
    assert moved is not None and moved.next_run_at == at(60) and moved.last_job_id == first.job.id


async def test_paused_or_deleted_schedule_does_not_fire(store: JobStore) -> None:
    c = await company(store)
    s = await store.create_schedule(make_schedule(c, next_run_at=at(0)))
    paused = await store.update_schedule(replace(s, paused=True, next_run_at=None))
    assert paused is not None
    assert await store.fire_schedule(paused, tick_job(paused, at(0)), at(60), at(1)) is None
    await store.delete_schedule(s.id)
    assert await store.fire_schedule(paused, tick_job(paused, at(0)), at(60), at(1)) is None
    assert await jobs_of(store, c) == []


async def test_concurrent_fires_of_one_tick_make_one_job(store: JobStore) -> None:
    """Nodes racing for the same tick, each with its own read of the schedule (on
    PostgreSQL, each on its own connection): one job, one queued event."""
    c = await company(store)
    schedules = [
        await store.create_schedule(make_schedule(c, f"s{i}", next_run_at=at(0))) for i in range(4)
    ]
    results: list[object] = []

    async def race(s: Schedule) -> None:
        results.append(await store.fire_schedule(s, tick_job(s, at(0)), at(60), at(0.1)))

    async with trio.open_nursery() as nursery:
        for s in schedules:
            for _ in range(6):
                nursery.start_soon(race, s)
    made = [r for r in results if r is not None]
    assert len(made) == 4
    jobs = await jobs_of(store, c)
    assert sorted((j.schedule_id, j.scheduled_for) for j in jobs) == sorted(
        (s.id, at(0)) for s in schedules
    )
    events = await store.events_after(0, company_id=c)
    assert len(events) == 4


async def test_schedule_times_keep_microseconds(store: JobStore) -> None:
    c = await company(store)
    tick = datetime(2030, 3, 31, 0, 30, 0, 123456, tzinfo=UTC)
    s = await store.create_schedule(make_schedule(c, next_run_at=tick))
    assert (await store.get_schedule(s.id)).next_run_at == tick  # type: ignore[union-attr]
    made = await store.fire_schedule(s, tick_job(s, tick), tick + timedelta(days=1), tick)
    assert made is not None and made.job.scheduled_for == tick
