"""A worker that is only recording an outcome counts as free for the next claim: the
claim runs while the outcome commits, and its job waits for that worker. A job kept
waiting until its lease is nearly out is not started (the reaper runs it again)."""

from __future__ import annotations

from datetime import datetime

import pytest
import trio
from boardkit import all_events, running_with_company

from callboard import JobContext, JobSpec, JobStatus
from callboard.jobs import JobEvent
from callboard.testing import MemoryStore

pytestmark = pytest.mark.trio


class SlowCompletions(MemoryStore):
    """Each `complete` takes `delays[job id]` seconds (default `delay`) to commit."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.delays: dict[str, float] = {}

    async def complete(self, job_id: str, lease_owner: str, now: datetime, *args, **kwargs):
        await trio.sleep(self.delays.get(job_id, self.delay))
        return await super().complete(job_id, lease_owner, now, *args, **kwargs)


def _order(events: list[JobEvent], first: str, second: str) -> list[tuple[str, str]]:
    names = {first: "1", second: "2"}
    return [(str(e.type).rpartition(".")[2], names[e.job_id]) for e in events]


async def test_the_next_claim_runs_while_an_outcome_commits(make_board, autojump_clock):
    store = SlowCompletions(delay=1.0)
    board = make_board(store=store, workers=1)
    calls: list[str] = []

    @board.handler("step")
    async def step(ctx: JobContext) -> None:
        calls.append(f"start {ctx.job.id}")
        await trio.sleep(0.1)
        calls.append(f"end {ctx.job.id}")

    async with running_with_company(board) as (rt, company):
        first, second = await rt.submit_many(company, [JobSpec("step"), JobSpec("step")])
        for job in (first, second):
            assert (await rt.wait(job.id, timeout=30)).status is JobStatus.DONE
        events = await all_events(rt)
    # The second job was claimed while the first one's outcome was being recorded...
    assert _order(events, first.id, second.id) == [
        ("queued", "1"),
        ("queued", "2"),
        ("running", "1"),
        ("running", "2"),
        ("done", "1"),
        ("done", "2"),
    ]
    # ...and ran on the one worker only after that outcome had committed.
    assert calls == [
        f"start {first.id}",
        f"end {first.id}",
        f"start {second.id}",
        f"end {second.id}",
    ]


async def test_a_claimed_job_that_waited_out_its_lease_is_left_to_the_reaper(
    make_board, autojump_clock
):
    store = SlowCompletions(delay=0.0)
    board = make_board(store=store, workers=1, lease_seconds=6.0)
    started: list[tuple[str, int]] = []

    @board.handler("step", max_attempts=3)
    async def step(ctx: JobContext) -> None:
        started.append((ctx.job.id, ctx.job.attempt))

    async with running_with_company(board) as (rt, company):
        first, second = await rt.submit_many(company, [JobSpec("step"), JobSpec("step")])
        # The first outcome takes longer to commit than the second job's lease lasts.
        store.delays[first.id] = 10.0
        for job in (first, second):
            assert (await rt.wait(job.id, timeout=60)).status is JobStatus.DONE
        events = await all_events(rt, second.id)
    # Never started on its first attempt: that lease ran out while it waited.
    assert started == [(first.id, 1), (second.id, 2)]
    assert [str(e.type).rpartition(".")[2] for e in events] == [
        "queued",
        "running",
        "retrying",
        "running",
        "done",
    ]
    assert events[2].job.error_message == "worker lost"
