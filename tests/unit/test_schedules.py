"""Schedules through the whole actor tree, on the in-memory store, in virtual time:
ticks on time, catch-up after a node was down, pause and resume, edits, the
daylight-saving days of Europe/Paris, and schedules declared on the Board."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import trio

from callboard import running_board
from callboard.errors import (
    CompanyNotFound,
    InvalidRequest,
    InvalidSchedule,
    ScheduleExists,
    ScheduleNotFound,
    UnknownJobType,
)
from callboard.jobs import CatchUp
from callboard.runtime.clock import TrioWallClock
from callboard.store.memory import MemoryStore

pytestmark = pytest.mark.trio


@pytest.fixture
def wall(monkeypatch):
    """Make the node's wall clock start at a chosen time (and keep counting from it
    across restarts within the test, as a real clock would)."""
    start: list[datetime] = [datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)]

    def clock() -> TrioWallClock:
        return TrioWallClock(start[0] + timedelta(seconds=trio.current_time()))

    monkeypatch.setattr(running_board, "TrioWallClock", clock)

    def set_start(moment: datetime) -> None:
        start[0] = moment - timedelta(seconds=trio.current_time())

    return set_start


async def scheduled_jobs(rt, company_id):
    jobs = (await rt.list(company_id, limit=500)).items
    return sorted((j for j in jobs if j.schedule_id is not None), key=lambda j: j.scheduled_for)


async def test_every_makes_one_job_per_tick_on_time(make_board, autojump_clock, wall):
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        start = rt.now()
        s = await rt.create_schedule(c, "pulse", "noop", {"k": 1}, every=10, priority=4)
        assert s.next_run_at == start + timedelta(seconds=10)
        await trio.sleep(35)
        jobs = await scheduled_jobs(rt, c)
        assert [j.scheduled_for for j in jobs] == [
            start + timedelta(seconds=10 * i) for i in (1, 2, 3)
        ]
        for job in jobs:
            assert job.schedule_id == s.id and job.input == {"k": 1} and job.priority == 4
            # Made within a second of its tick.
            assert timedelta(0) <= job.created_at - job.scheduled_for < timedelta(seconds=1)
        after = await rt.get_schedule(s.id)
        assert after.last_job_id == jobs[-1].id and after.last_run_at == jobs[-1].scheduled_for
        assert after.next_run_at == start + timedelta(seconds=40)


async def test_cron_ticks_on_the_minute_in_its_timezone(make_board, autojump_clock, wall):
    wall(datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC))
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        s = await rt.create_schedule(c, "five", "noop", cron="*/5 * * * *", timezone="Asia/Kolkata")
        # Kolkata is UTC+05:30: its :05 minutes are UTC's :35 ones.
        assert s.next_run_at == datetime(2030, 1, 1, 12, 5, tzinfo=UTC)
        await trio.sleep(11 * 60)
        jobs = await scheduled_jobs(rt, c)
        assert [j.scheduled_for for j in jobs] == [
            datetime(2030, 1, 1, 12, 5, tzinfo=UTC),
            datetime(2030, 1, 1, 12, 10, tzinfo=UTC),
        ]


async def test_an_edit_wakes_the_scheduler(make_board, autojump_clock, wall):
    """A schedule made while the scheduler sleeps runs at its first tick, not at the
    scheduler's next look."""
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        await rt.create_schedule(c, "slow", "noop", every=3600)
        await trio.sleep(2.3)
        s = await rt.create_schedule(c, "quick", "noop", every=2)
        await trio.sleep(2.5)
        [job] = await scheduled_jobs(rt, c)
        assert job.schedule_id == s.id
        assert job.created_at - job.scheduled_for < timedelta(seconds=0.1)


async def test_daily_0230_in_paris_on_the_spring_forward_day(make_board, autojump_clock, wall):
    """2025-03-30: Paris goes from 02:00 to 03:00, so 02:30 does not exist; the tick
    runs once, at 03:00 (01:00 UTC), and the next day at 02:30 again."""
    wall(datetime(2025, 3, 29, 23, 50, tzinfo=UTC))  # 00:50 CET
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        s = await rt.create_schedule(
            c, "nightly", "noop", cron="30 2 * * *", timezone="Europe/Paris"
        )
        assert s.next_run_at == datetime(2025, 3, 30, 1, 0, tzinfo=UTC)
        await trio.sleep(3 * 3600)  # to 03:50 UTC, 05:50 CEST
        ticks = [j.scheduled_for for j in await scheduled_jobs(rt, c)]
        after = await rt.get_schedule(s.id)
    assert ticks == [datetime(2025, 3, 30, 1, 0, tzinfo=UTC)]  # 03:00 CEST, after the gap
    assert after.next_run_at == datetime(2025, 3, 31, 0, 30, tzinfo=UTC)  # 02:30 CEST


async def test_daily_0230_in_paris_on_the_fall_back_day(make_board, autojump_clock, wall):
    """2025-10-26: Paris goes from 03:00 back to 02:00, so 02:30 happens twice; the
    tick runs once, the first time (02:30 CEST, 00:30 UTC)."""
    wall(datetime(2025, 10, 25, 23, 50, tzinfo=UTC))  # 01:50 CEST
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        s = await rt.create_schedule(
            c, "nightly", "noop", cron="30 2 * * *", timezone="Europe/Paris"
        )
        await trio.sleep(3 * 3600)  # past both 02:30s (00:30 and 01:30 UTC)
        ticks = [j.scheduled_for for j in await scheduled_jobs(rt, c)]
        after = await rt.get_schedule(s.id)
    assert ticks == [datetime(2025, 10, 26, 0, 30, tzinfo=UTC)]  # 02:30 CEST only
    assert after.next_run_at == datetime(2025, 10, 27, 1, 30, tzinfo=UTC)  # 02:30 CET


async def test_every_counts_real_seconds_across_daylight_saving(make_board, autojump_clock, wall):
    """An interval ignores the wall clock: an hourly one stays an hour apart in UTC."""
    wall(datetime(2025, 10, 25, 23, 50, tzinfo=UTC))
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        await rt.create_schedule(c, "hourly", "noop", every=3600, timezone="Europe/Paris")
        await trio.sleep(3 * 3600 + 1)
        ticks = [j.scheduled_for for j in await scheduled_jobs(rt, c)]
    assert [b - a for a, b in itertools.pairwise(ticks)] == [timedelta(hours=1)] * 2


@pytest.mark.parametrize("catch_up", ["skip", "once"])
async def test_ticks_missed_while_no_node_ran(make_board, autojump_clock, wall, catch_up):
    store = MemoryStore()
    board = make_board(store=store)
    async with board.running() as rt:
        c = (await rt.create_company("acme")).id
        start = rt.now()
        s = await rt.create_schedule(c, "tenmin", "noop", every=600, catch_up=catch_up)
        await trio.sleep(100)
    # No node runs for an hour: the ticks of 600 s ... 3600 s pass.
    await trio.sleep(3600)
    async with board.running() as rt:
        await trio.sleep(1)
        first = await scheduled_jobs(rt, c)
        await trio.sleep(600)
        later = await scheduled_jobs(rt, c)
    if catch_up == "once":
        # One job for all of them, for the latest, at once.
        assert [j.scheduled_for for j in first] == [start + timedelta(seconds=3600)]
    else:
        assert first == []
    assert later[-1].scheduled_for == start + timedelta(seconds=4200)
    assert len(later) == len(first) + 1
    assert all(j.schedule_id == s.id for j in later)


async def test_a_restart_within_a_tick_misses_nothing(make_board, autojump_clock, wall):
    """A node back within `missed_after` of a tick still makes it (catchUp skip)."""
    store = MemoryStore()
    board = make_board(store=store)
    async with board.running() as rt:
        c = (await rt.create_company("acme")).id
        start = rt.now()
        await rt.create_schedule(c, "tenmin", "noop", every=600)
        await trio.sleep(590)
    await trio.sleep(30)
    async with board.running() as rt:
        await trio.sleep(0.5)
        [job] = await scheduled_jobs(rt, c)
    assert job.scheduled_for == start + timedelta(seconds=600)


async def test_pause_and_resume(make_board, autojump_clock, wall):
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        s = await rt.create_schedule(c, "pulse", "noop", every=10)
        await trio.sleep(15)
        paused = await rt.pause_schedule(s.id)
        assert paused.paused and paused.next_run_at is None
        await trio.sleep(100)
        assert len(await scheduled_jobs(rt, c)) == 1
        resumed = await rt.resume_schedule(s.id)
        assert not resumed.paused
        # The next tick counts from the resume: the paused ones are not made up for.
        assert resumed.next_run_at == rt.now() + timedelta(seconds=10)
        await trio.sleep(10.5)
        jobs = await scheduled_jobs(rt, c)
        assert len(jobs) == 2 and jobs[-1].scheduled_for == resumed.next_run_at


async def test_update_changes_timing_and_fields(make_board, autojump_clock, wall):
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        s = await rt.create_schedule(c, "pulse", "noop", every=100)
        await trio.sleep(5)
        kept = await rt.update_schedule(s.id, input={"v": 2}, priority=7)
        assert kept.next_run_at == s.next_run_at and kept.input == {"v": 2}
        cron = await rt.update_schedule(s.id, cron="0 * * * *")
        assert cron.every is None and cron.cron == "0 * * * *"
        assert cron.next_run_at == datetime(2030, 1, 1, 13, 0, tzinfo=UTC)
        back = await rt.update_schedule(s.id, every=1)
        assert back.cron is None and back.every == 1
        await trio.sleep(1.5)
        [job] = await scheduled_jobs(rt, c)
        assert job.input == {"v": 2} and job.priority == 7
        renamed = await rt.update_schedule(s.id, name="renamed", catch_up="once")
        assert renamed.name == "renamed" and renamed.catch_up is CatchUp.ONCE


async def test_delete_stops_it_and_keeps_its_jobs(make_board, autojump_clock, wall):
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        s = await rt.create_schedule(c, "pulse", "noop", every=10)
        await trio.sleep(15)
        await rt.delete_schedule(s.id)
        await trio.sleep(100)
        assert len(await scheduled_jobs(rt, c)) == 1
        with pytest.raises(ScheduleNotFound):
            await rt.get_schedule(s.id)
        with pytest.raises(ScheduleNotFound):
            await rt.delete_schedule(s.id)


async def test_bad_schedules_are_refused(make_board, autojump_clock, wall):
    async with make_board().running() as rt:
        c = (await rt.create_company("acme")).id
        other = (await rt.create_company("other")).id
        ok = await rt.create_schedule(c, "ok", "noop", every=1)
        cases = [
            ({"cron": "61 * * * *"}, InvalidSchedule, "invalid cron expression"),
            ({"cron": "* * * *"}, InvalidSchedule, "5 fields"),
            ({"cron": "0 0 * * * *"}, InvalidSchedule, "5 fields"),
            (
                {"cron": "0 3 * * *", "timezone": "Mars/Olympus"},
                InvalidSchedule,
                "unknown timezone",
            ),
            ({"every": 0.5}, InvalidRequest, "every must be"),
            ({"every": float("nan")}, InvalidRequest, "every must be"),
            ({}, InvalidRequest, "either cron"),
            ({"cron": "0 3 * * *", "every": 5}, InvalidRequest, "either cron"),
            ({"every": 5, "catch_up": "all"}, InvalidRequest, "catchUp"),
            ({"every": 5, "max_attempts": 0}, InvalidRequest, "maxAttempts"),
            ({"every": 5, "timeout": -1}, InvalidRequest, "timeout"),
            ({"every": 5, "priority": 2**40}, InvalidRequest, "priority"),
        ]
        for kwargs, error, words in cases:
            with pytest.raises(error, match=words):
                await rt.create_schedule(c, "bad", "noop", **kwargs)
        with pytest.raises(UnknownJobType):
            await rt.create_schedule(c, "bad", "no.such.type", every=5)
        with pytest.raises(InvalidRequest, match="schedule name"):
            await rt.create_schedule(c, "  ", "noop", every=5)
        with pytest.raises(ScheduleExists):
            await rt.create_schedule(c, "ok", "noop", every=5)
        with pytest.raises(CompanyNotFound):
            await rt.create_schedule("nope", "x", "noop", every=5)
        with pytest.raises(InvalidRequest, match="unknown schedule field"):
            await rt.update_schedule(ok.id, colour="red")
        with pytest.raises(InvalidSchedule):
            await rt.update_schedule(ok.id, cron="nonsense here")
        with pytest.raises(ScheduleNotFound):
            await rt.update_schedule(ok.id, company_id=other, paused=True)
        # Nothing was written by any of them.
        assert [s.name for s in (await rt.schedules()).items] == ["ok"]
        assert (await rt.get_schedule(ok.id)).every == 1


async def test_schedules_declared_on_the_board(make_board, autojump_clock, wall):
    store = MemoryStore()
    board = make_board(store=store)
    board.schedule("nightly", company="acme", job_type="noop", cron="0 3 * * *", input={"v": 1})
    async with board.running() as rt:
        company = await rt.get_company_by_name("acme")
        assert company is not None
        [s] = (await rt.schedules(company.id)).items
        assert s.name == "nightly" and s.cron == "0 3 * * *" and s.input == {"v": 1}
        await rt.pause_schedule(s.id)
    # Declared again with other fields: the same schedule, updated, still paused.
    board.schedule("nightly", company="acme", job_type="noop", every=60, input={"v": 2})
    async with board.running() as rt:
        [again] = (await rt.schedules(company.id)).items
        assert again.id == s.id and again.every == 60 and again.cron is None
        assert again.input == {"v": 2} and again.paused
    wrong = make_board(store=store)
    wrong.schedule("broken", company="acme", job_type="no.such.type", every=60)
    with pytest.raises(UnknownJobType):
        async with wrong.running():
            pass
