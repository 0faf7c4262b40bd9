"""Fair share through the real dispatcher and workers on the memory store, in virtual
time: a company's backlog does not hold another company's jobs behind it, and a
company's cap bounds how many of its jobs run at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio
from boardkit import running_with_company

from callboard import JobContext, JobSpec, JobStatus

pytestmark = pytest.mark.trio


async def test_a_backlog_does_not_queue_another_company_behind_it(make_board, autojump_clock):
    board = make_board(workers=8)

    @board.handler("work")
    async def work(ctx: JobContext) -> None:
        await trio.sleep(0.05)

    async with running_with_company(board) as (rt, a):
        b = (await rt.create_company("globex")).id
        backlog = await rt.submit_many(a, [JobSpec("work") for _ in range(400)])
        await trio.sleep(0.2)  # A's backlog is running
        b_jobs = []
        for _ in range(10):
            b_jobs.append(await rt.submit(b, "work"))
            await trio.sleep(0.01)
        waits = []
        for job in b_jobs:
            done = await rt.wait(job.id, timeout=60)
            assert done.status is JobStatus.DONE
            waits.append(done.started_at - done.created_at)
        # A worker frees every ~6 ms; B is served at the next one, never after A's
        # 400 jobs (2.5 s of them on 8 workers).
        assert max(waits) <= timedelta(seconds=0.06), waits
        last_a = await rt.wait(backlog[-1].id, timeout=60)
        assert last_a.status is JobStatus.DONE
        assert last_a.started_at > max(j.started_at for j in [await rt.get(x.id) for x in b_jobs])


async def test_a_capped_company_never_runs_more_than_its_cap(make_board, autojump_clock):
    board = make_board(workers=8)
    now_running = {"n": 0, "peak": 0}

    @board.handler("work")
    async def work(ctx: JobContext) -> None:
        now_running["n"] += 1
        now_running["peak"] = max(now_running["peak"], now_running["n"])
        try:
            await trio.sleep(0.05)
        finally:
            now_running["n"] -= 1

    async with running_with_company(board) as (rt, a):
        company = await rt.set_company_max_running(a, 3)
        assert company.max_running == 3 and (await rt.get_company(a)).max_running == 3
        # Lone submits on an idle node too: a capped company never starts on submit.
        jobs = [await rt.submit(a, "work") for _ in range(5)]
        jobs += await rt.submit_many(a, [JobSpec("work") for _ in range(20)])
        for job in jobs:
            assert (await rt.wait(job.id, timeout=60)).status is JobStatus.DONE
    assert now_running["peak"] == 3
