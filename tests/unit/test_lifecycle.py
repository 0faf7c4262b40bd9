"""The job lifecycle through the whole actor tree, on the in-memory store, in virtual time."""

from __future__ import annotations

import itertools

import pytest
import trio
from boardkit import all_events, running_with_company

from callboard import (
    CompanyNotFound,
    InvalidRequest,
    InvalidTransition,
    JobContext,
    JobNotFound,
    JobSpec,
    JobStatus,
    UnknownJobType,
)
from callboard.jobs import EventType

pytestmark = pytest.mark.trio


def types(events) -> list[str]:
    return [str(e.type) for e in events]


async def test_full_lifecycle_with_event_order(make_board, autojump_clock):
    board = make_board()

    @board.handler("diagram")
    async def diagram(ctx: JobContext) -> None:
        await ctx.progress(20, "laying out")
        await trio.sleep(1)
        await ctx.progress(80, "rendering")

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "diagram", {"x": 1}, source_task_id="task-7")
        assert job.status is JobStatus.QUEUED and job.attempt == 0
        done = await rt.wait(job.id, timeout=10)
        assert done.status is JobStatus.DONE
        assert done.attempt == 1
        assert done.progress.percent == 100 and done.progress.message == "rendering"
        assert done.source_task_id == "task-7"
        assert done.started_at is not None and done.finished_at >= done.started_at
        events = await all_events(rt, job.id)
    assert types(events) == [
        EventType.QUEUED,
        EventType.RUNNING,
        EventType.PROGRESS,
        EventType.PROGRESS,
        EventType.DONE,
    ]
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e.job.progress.percent for e in events[2:4]] == [20, 80]
    assert events[-1].job == done


async def test_handler_exception_fails_job_and_worker_keeps_working(make_board, autojump_clock):
    board = make_board(workers=1)
    async with running_with_company(board) as (rt, company):
        bad = await rt.submit(company, "demo.fail", {"message": "disk on fire"})
        good = await rt.submit(company, "noop")
        failed = await rt.wait(bad.id, timeout=10)
        assert failed.status is JobStatus.FAILED
        assert failed.error_message == "disk on fire"
        assert (await rt.wait(good.id, timeout=10)).status is JobStatus.DONE
        assert rt.statistics().supervisor.restarts == 0


async def test_timeout_fails_the_attempt_with_a_clear_message(make_board, autojump_clock):
    board = make_board()

    @board.handler("slow", timeout=5)
    async def slow(ctx: JobContext) -> None:
        await trio.sleep(60)

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "slow")
        start = trio.current_time()
        failed = await rt.wait(job.id, timeout=30)
        assert failed.status is JobStatus.FAILED
        assert failed.error_message == "timed out after 5 seconds"
        assert 5 <= trio.current_time() - start < 6
        # A submit may shorten the handler's timeout.
        quick = await rt.submit(company, "slow", timeout=1)
        assert (await rt.wait(quick.id)).error_message == "timed out after 1 seconds"


async def test_cancel_a_queued_job(make_board, autojump_clock):
    board = make_board()
    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "noop", delay=60)
        cancelled = await rt.cancel(job.id)
        assert cancelled.status is JobStatus.CANCELLED
        await trio.sleep(120)
        after = await rt.get(job.id)
        assert after.status is JobStatus.CANCELLED and after.attempt == 0
        assert types(await all_events(rt, job.id)) == [EventType.QUEUED, EventType.CANCELLED]
        with pytest.raises(InvalidTransition):
            await rt.cancel(job.id)


async def test_cancel_a_running_job_stops_its_handler(make_board, autojump_clock):
    board = make_board()
    started = trio.Event()
    stopped: list[str] = []

    @board.handler("long")
    async def long(ctx: JobContext) -> None:
        started.set()
        try:
            await trio.sleep(3600)
        finally:
            stopped.append(ctx.job_id)

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "long")
        await started.wait()
        t0 = trio.current_time()
        await rt.cancel(job.id)
        ended = await rt.wait(job.id, timeout=10)
        assert trio.current_time() - t0 < 1  # at once, not at the next renewal
        assert ended.status is JobStatus.CANCELLED
        assert stopped == [job.id]
        assert types(await all_events(rt, job.id))[-1] == EventType.CANCELLED


async def test_a_cancel_recorded_elsewhere_is_picked_up_at_the_next_renewal(
    make_board, autojump_clock
):
    board = make_board(lease_seconds=30)
    started = trio.Event()

    @board.handler("long")
    async def long(ctx: JobContext) -> None:
        started.set()
        await trio.sleep(3600)

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "long")
        await started.wait()
        t0 = trio.current_time()
        # As another node would: through the store, not this node's workers.
        await rt.store.cancel(job.id, rt._ledger.now())
        ended = await rt.wait(job.id, timeout=60)
        assert ended.status is JobStatus.CANCELLED
        assert trio.current_time() - t0 <= 10 + 0.5  # a third of the lease


async def test_retries_with_exponential_backoff(make_board, autojump_clock):
    board = make_board()
    runs: list[float] = []

    @board.handler("flaky", max_attempts=4)
    async def flaky(ctx: JobContext) -> None:
        runs.append(trio.current_time())
        raise ValueError(f"attempt {ctx.attempt} broke")

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "flaky")
        failed = await rt.wait(job.id, timeout=600)
        events = await all_events(rt, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempt == 4
    assert failed.error_message == "attempt 4 broke"
    assert types(events).count(EventType.RETRYING) == 3
    assert types(events)[-1] == EventType.FAILED
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # Backoff base 1 s doubling, with equal jitter: [0.5,1], [1,2], [2,4] (+ dispatch slack).
    for gap, full in zip(gaps, [1, 2, 4], strict=True):
        assert full / 2 <= gap <= full + 0.1


async def test_max_attempts_from_submit_overrides_the_handler(make_board, autojump_clock):
    board = make_board()
    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "demo.fail", {"message": "no"}, max_attempts=2)
        failed = await rt.wait(job.id, timeout=600)
        assert failed.attempt == 2 and failed.status is JobStatus.FAILED


async def test_manual_retry_runs_the_next_attempt(make_board, autojump_clock):
    board = make_board()
    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "demo.fail", {"message": "no"})
        assert (await rt.wait(job.id)).attempt == 1
        requeued = await rt.retry(job.id)
        assert requeued.status is JobStatus.QUEUED
        again = await rt.wait(job.id, timeout=60)
        assert again.status is JobStatus.FAILED and again.attempt == 2
        done = await rt.submit(company, "noop")
        await rt.wait(done.id)
        with pytest.raises(InvalidTransition):
            await rt.retry(done.id)


async def test_priority_order(make_board, autojump_clock):
    board = make_board(workers=1)
    order: list[int] = []
    gate = trio.Event()

    @board.handler("step")
    async def step(ctx: JobContext) -> None:
        if ctx.input.get("gate"):
            await gate.wait()
        order.append(ctx.input["n"])

    async with running_with_company(board) as (rt, company):
        blocker = await rt.submit(company, "step", {"n": 0, "gate": True})
        await trio.sleep(1)  # the only worker is now busy with the blocker
        specs = [
            JobSpec("step", {"n": n}, priority=p) for n, p in [(1, 0), (2, 5), (3, -1), (4, 5)]
        ]
        jobs = await rt.submit_many(company, specs)
        gate.set()
        for job in [blocker, *jobs]:
            await rt.wait(job.id)
    assert order == [0, 2, 4, 1, 3]


async def test_delayed_job_runs_when_due(make_board, autojump_clock):
    board = make_board()
    ran_at: list[float] = []

    @board.handler("later")
    async def later(ctx: JobContext) -> None:
        ran_at.append(trio.current_time())

    async with running_with_company(board) as (rt, company):
        t0 = trio.current_time()
        job = await rt.submit(company, "later", delay=90)
        done = await rt.wait(job.id, timeout=200)
    assert done.status is JobStatus.DONE
    assert 90 <= ran_at[0] - t0 <= 90.1


async def test_per_type_concurrency_limit(make_board, autojump_clock):
    board = make_board(workers=8)
    active = 0
    peak = 0

    @board.handler("render", concurrency=2)
    async def render(ctx: JobContext) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await trio.sleep(1)
        active -= 1

    async with running_with_company(board) as (rt, company):
        t0 = trio.current_time()
        jobs = await rt.submit_many(company, [JobSpec("render") for _ in range(6)])
        others = await rt.submit_many(
            company, [JobSpec("demo.sleep", {"seconds": 1}) for _ in range(4)]
        )
        for job in [*jobs, *others]:
            assert (await rt.wait(job.id)).status is JobStatus.DONE
        elapsed = trio.current_time() - t0
    assert peak == 2
    assert 3 <= elapsed < 3.5  # six one-second jobs, two at a time; the others alongside


async def test_lost_lease_cancels_the_handler_and_writes_nothing_more(make_board, autojump_clock):
    board = make_board(lease_seconds=30)
    started = trio.Event()
    cancelled = trio.Event()

    @board.handler("long", max_attempts=1)
    async def long(ctx: JobContext) -> None:
        started.set()
        try:
            await trio.sleep(3600)
        except trio.Cancelled:
            cancelled.set()
            raise

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "long")
        await started.wait()
        now = rt._ledger.now()
        # Another node's reaper decides this lease is gone (as if the clocks disagreed).
        await rt.store.reap_expired(now=now, expired_before=now.replace(year=9999), retry_at=now)
        with trio.fail_after(11):
            await cancelled.wait()
        await trio.sleep(5)
        final = await rt.get(job.id)
        events = await all_events(rt, job.id)
    assert final.status is JobStatus.FAILED and final.error_message == "worker lost"
    assert types(events) == [EventType.QUEUED, EventType.RUNNING, EventType.FAILED]


async def test_progress_is_coalesced(make_board, autojump_clock):
    board = make_board(progress_interval=0.25)

    @board.handler("chatty")
    async def chatty(ctx: JobContext) -> None:
        for i in range(1000):
            await ctx.progress(i / 10, f"step {i}")
            await trio.sleep(0.001)  # one virtual second in all

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "chatty")
        done = await rt.wait(job.id)
        events = await all_events(rt, job.id)
    progress = [e for e in events if e.type == EventType.PROGRESS]
    assert 3 <= len(progress) <= 6  # about four a second, never a thousand
    assert done.progress.message == "step 999"


async def test_bad_submissions_raise_typed_errors_and_write_nothing(make_board, autojump_clock):
    board = make_board()
    async with running_with_company(board) as (rt, company):
        with pytest.raises(UnknownJobType, match=r"known job types: .*noop"):
            await rt.submit(company, "no.such.type")
        with pytest.raises(InvalidRequest, match="input must be a JSON object"):
            await rt.submit(company, "noop", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(CompanyNotFound):
            await rt.submit("00000000-0000-0000-0000-000000000000", "noop")
        with pytest.raises(
            InvalidRequest, match=r"jobs\[1\]: delay must be a number of seconds from 0 to"
        ):
            await rt.submit_many(company, [JobSpec("noop"), JobSpec("noop", delay=-1)])
        with pytest.raises(UnknownJobType, match=r"^jobs\[1\]: unknown job type 'nope'"):
            await rt.submit_many(company, [JobSpec("noop"), JobSpec("nope")])
        with pytest.raises(JobNotFound):
            await rt.get("00000000-0000-0000-0000-000000000000")
        assert (await rt.list(company)).items == []
        assert await rt.store.last_event_id() == 0


async def test_idempotency_key_returns_the_same_job(make_board, autojump_clock):
    board = make_board()
    async with running_with_company(board) as (rt, company):
        first = await rt.submit(company, "noop", idempotency_key="k1")
        second = await rt.submit(company, "noop", idempotency_key="k1")
        assert second.id == first.id
        assert len((await rt.list(company)).items) == 1


async def test_a_node_without_workers_stores_but_runs_nothing(make_board, autojump_clock):
    board = make_board(workers=0)
    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "noop")
        await trio.sleep(60)
        assert (await rt.get(job.id)).status is JobStatus.QUEUED
        with pytest.raises(TimeoutError):
            await rt.wait(job.id, timeout=5)


async def test_list_pages_newest_first(make_board, autojump_clock):
    board = make_board(workers=0)
    async with running_with_company(board) as (rt, company):
        jobs = []
        for _ in range(5):
            jobs.append(await rt.submit(company, "noop"))
            await trio.sleep(1)
        page = await rt.list(company, limit=2)
        seen = [j.id for j in page.items]
        while page.next_cursor:
            page = await rt.list(company, limit=2, cursor=page.next_cursor)
            seen += [j.id for j in page.items]
        assert seen == [j.id for j in reversed(jobs)]
        with pytest.raises(InvalidRequest):
            await rt.list(company, limit=0)
        with pytest.raises(InvalidRequest, match="unknown status"):
            await rt.list(company, status="lost")


async def test_shutdown_drains_running_jobs_within_the_grace(make_board, autojump_clock):
    board = make_board(shutdown_grace=10)
    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "demo.sleep", {"seconds": 3})
        await trio.sleep(0.5)
        store = rt.store
    # Leaving the block waited for the job instead of abandoning it.
    await store.open()
    try:
        assert (await store.get_job(job.id)).status is JobStatus.DONE
    finally:
        await store.aclose()
