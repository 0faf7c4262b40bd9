"""Faults the runtime must ride out: handler errors during cancellation, hung or
failing lease renewals, store outages, cancels that race the claim."""

from __future__ import annotations

import pytest
import trio
from boardkit import all_events, running_with_company

from callboard import JobContext, JobStatus
from callboard.store.base import Renewal
from callboard.store.memory import MemoryStore

pytestmark = pytest.mark.trio


async def test_a_handler_failing_while_timed_out_is_a_timeout_not_a_crash(
    make_board, autojump_clock
):
    board = make_board(workers=1)

    @board.handler("messy", timeout=5)
    async def messy(ctx: JobContext) -> None:
        async with trio.open_nursery() as nursery:

            async def child() -> None:
                try:
                    await trio.sleep_forever()
                finally:
                    raise ValueError("cleanup broke")

            nursery.start_soon(child)
            await trio.sleep_forever()

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "messy")
        t0 = trio.current_time()
        failed = await rt.wait(job.id, timeout=60)
        assert trio.current_time() - t0 < 6
        assert failed.status is JobStatus.FAILED
        assert failed.error_message == "timed out after 5 seconds"
        # The worker survived: the next job runs on it.
        after = await rt.submit(company, "noop")
        assert (await rt.wait(after.id, timeout=5)).status is JobStatus.DONE
        assert rt.statistics().supervisor.restarts == 0


class HangingRenewals(MemoryStore):
    """A store whose lease renewals hang for a minute, then fail."""

    async def renew_leases(self, job_ids, lease_owner, lease_expires_at) -> Renewal:
        await trio.sleep(60)
        raise __import__("callboard").StoreUnavailable("renewal timed out")


async def test_a_hung_renewal_stops_the_handler_before_the_lease_runs_out(
    make_board, autojump_clock
):
    store = HangingRenewals()
    board = make_board(store=store, workers=2, lease_seconds=30)
    runs: list[tuple[int, float, float | None]] = []

    @board.handler("long", max_attempts=2)
    async def long(ctx: JobContext) -> None:
        start = trio.current_time()
        try:
            await trio.sleep(3600)
        finally:
            runs.append((ctx.attempt, start, trio.current_time()))

    async with running_with_company(board) as (rt, company):
        job = await rt.submit(company, "long")
        await trio.sleep(40)  # past the lease: the reaper has taken the job
        first = runs[0]
        assert first[0] == 1
        assert first[2] - first[1] <= 30 - 5 + 0.01  # stopped `margin` before expiry
        # The second attempt started only after the first one had stopped.
        second = await rt.get(job.id)
        assert second.attempt == 2
        events = [str(e.type) for e in await all_events(rt, job.id)]
        assert events[:4] == [
            "content_job.queued",
            "content_job.running",
            "content_job.retrying",
            "content_job.running",
        ]


async def test_the_node_rides_out_a_store_outage(make_board, autojump_clock):
    store = MemoryStore()
    board = make_board(store=store, workers=2)
    async with running_with_company(board) as (rt, company):
        store.set_available(False)
        await trio.sleep(20)  # longer than the root's restart budget would allow
        store.set_available(True)
        job = await rt.submit(company, "noop")
        assert (await rt.wait(job.id, timeout=30)).status is JobStatus.DONE
        assert rt.statistics().supervisor.restarts == 0


class SlowClaimAnswers(MemoryStore):
    """Claims commit, then the answer takes a moment to come back (as it does when
    the writer thread hands results back to trio)."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed = trio.Event()

    async def claim(self, **kwargs):
        taken = await super().claim(**kwargs)
        if taken:
            self.claimed.set()
            with trio.CancelScope(shield=True):
                await trio.sleep(0.001)
        return taken

    async def insert_running(self, job, now, **kwargs):
        started = await super().insert_running(job, now, **kwargs)
        if started is not None:
            self.claimed.set()
            with trio.CancelScope(shield=True):
                await trio.sleep(0.001)
        return started


class SlowClaimAnswersOnly(SlowClaimAnswers):
    """The same, with every job going through the dispatcher's claim."""

    async def insert_running(self, job, now, **kwargs):
        await trio.lowlevel.checkpoint()
        return None


@pytest.mark.parametrize("store_type", [SlowClaimAnswersOnly, SlowClaimAnswers])
async def test_a_cancel_between_claim_and_start_stops_the_job_at_once(
    make_board, autojump_clock, store_type
):
    """Through the dispatcher's claim, and started on submit (the job is running in
    the store before the submit returns)."""
    store = store_type()
    board = make_board(store=store, workers=1, lease_seconds=30)

    @board.handler("long")
    async def long(ctx: JobContext) -> None:
        await trio.sleep(5)

    async with running_with_company(board) as (rt, company):
        submitted: list[str] = []
        async with trio.open_nursery() as nursery:

            async def submit() -> None:
                submitted.append((await rt.submit(company, "long")).id)

            nursery.start_soon(submit)
            await store.claimed.wait()
            [job] = (await rt.list(company)).items
            t0 = trio.current_time()
            assert (await rt.cancel(job.id)).status is JobStatus.RUNNING
        assert submitted == [job.id]
        ended = await rt.wait(job.id, timeout=30)
        assert ended.status is JobStatus.CANCELLED
        assert trio.current_time() - t0 < 1
        started_on_submit = rt.statistics().dispatcher.started_on_submit
        assert started_on_submit == (0 if store_type is SlowClaimAnswersOnly else 1)
