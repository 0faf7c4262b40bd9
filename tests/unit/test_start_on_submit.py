"""A lone submit on a node with an idle worker starts its job without a claim
(Dispatcher.start_now + JobStore.insert_running); everything else queues."""

from __future__ import annotations

import pytest
import trio
from boardkit import all_events, running_with_company

from callboard import JobContext, JobSpec, JobStatus
from callboard.jobs import EventType

pytestmark = pytest.mark.trio


async def settled(rt) -> tuple[int, int]:
    """(claims, started on submit) once every task is idle."""
    await trio.testing.wait_all_tasks_blocked()
    stats = rt.statistics().dispatcher
    return stats.claims, stats.started_on_submit


async def test_a_lone_submit_on_an_idle_node_skips_the_claim(make_board, autojump_clock):
    board = make_board(workers=2)
    async with running_with_company(board) as (rt, company):
        claims, _ = await settled(rt)
        job = await rt.submit(company, "noop")
        assert job.status is JobStatus.QUEUED  # what the submit answers
        assert (await rt.wait(job.id)).status is JobStatus.DONE
        assert await settled(rt) == (claims, 1)
        events = await all_events(rt, job.id)
    assert [e.type for e in events] == [EventType.QUEUED, EventType.RUNNING, EventType.DONE]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[1].job.attempt == 1


async def test_what_cannot_start_at_once_goes_through_the_queue(make_board, autojump_clock):
    board = make_board(workers=4)
    release = trio.Event()

    @board.handler("render", concurrency=1)
    async def render(ctx: JobContext) -> None:
        await release.wait()

    async with running_with_company(board) as (rt, company):
        first = await rt.submit(company, "render")
        assert await settled(rt) == (1, 1)  # the start-up claim found nothing
        # The type is at its limit here: queued, claimed once the first one ends.
        second = await rt.submit(company, "render")
        # A batch and a delayed job queue too.
        batch = await rt.submit_many(company, [JobSpec("noop"), JobSpec("noop")])
        later = await rt.submit(company, "noop", delay=5)
        assert (await rt.get(second.id)).status is JobStatus.QUEUED
        for job in batch:
            assert (await rt.wait(job.id)).status is JobStatus.DONE
        release.set()
        for job in (first, second, later):
            assert (await rt.wait(job.id, timeout=30)).status is JobStatus.DONE
        claims, started = await settled(rt)
    assert started == 1
    assert claims >= 3  # the batch, the second render, the delayed job


async def test_a_draining_node_starts_nothing_on_submit(make_board, autojump_clock):
    board = make_board(workers=2)
    async with running_with_company(board) as (rt, company):
        await settled(rt)
        rt._dispatcher.drain()  # the dispatcher alone: the node still accepts submits
        job = await rt.submit(company, "noop")
        await settled(rt)
        assert (await rt.get(job.id)).status is JobStatus.QUEUED
        assert rt.statistics().dispatcher.started_on_submit == 0


async def test_a_job_started_on_submit_does_not_hide_a_delayed_one(make_board, autojump_clock):
    """The start takes the last worker while the dispatcher waits for a delayed job's
    time; the job comes due while no worker is free. Once the worker is free again, it
    runs (the freed slot rings though no claim filled the node)."""
    board = make_board(workers=1)

    @board.handler("slow")
    async def slow(ctx: JobContext) -> None:
        await trio.sleep(10)

    async with running_with_company(board) as (rt, company):
        await settled(rt)
        t0 = trio.current_time()
        later = await rt.submit(company, "noop", delay=5)
        await trio.sleep(1)
        await rt.submit(company, "slow")
        assert rt.statistics().dispatcher.started_on_submit == 1
        assert (await rt.wait(later.id, timeout=60)).status is JobStatus.DONE
        assert trio.current_time() - t0 < 12  # right after the slow job's 10 s
