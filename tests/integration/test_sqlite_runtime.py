"""The whole runtime on the real embedded SQLite store, in real time."""

from __future__ import annotations

from collections import defaultdict

import pytest
import trio

import callboard
from callboard import JobSpec, JobStatus, StoreInUse

pytestmark = pytest.mark.trio


async def test_a_thousand_noop_jobs_all_reach_done_with_the_right_events(tmp_path):
    board = callboard.Board(database_url=f"sqlite:///{tmp_path / 'cb.db'}", workers=8)
    async with board.running() as rt:
        company = await rt.create_company("acme")
        async with rt.subscribe(company_id=company.id, buffer=5000) as events:
            jobs = []
            for _ in range(10):
                jobs += await rt.submit_many(company.id, [JobSpec("noop")] * 100)
            done = set()
            with trio.fail_after(120):
                async for event in events:
                    if event.terminal:
                        assert event.job.status is JobStatus.DONE
                        done.add(event.job_id)
                        if len(done) == len(jobs):
                            break
        assert done == {job.id for job in jobs}
        by_job: dict[str, list[str]] = defaultdict(list)
        after = 0
        while page := await rt.store.events_after(after, limit=1000):
            for event in page:
                by_job[event.job_id].append(str(event.type))
            after = page[-1].id
        assert len(by_job) == 1000
        assert all(
            types == ["content_job.queued", "content_job.running", "content_job.done"]
            for types in by_job.values()
        )
        counts = await rt.counts(company.id)
        assert counts[JobStatus.DONE] == 1000 and counts[JobStatus.QUEUED] == 0


async def test_a_second_node_on_the_same_embedded_store_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'cb.db'}"
    async with callboard.Board(database_url=url, workers=0).running():
        with pytest.raises(StoreInUse, match=r"cb\.db"):
            async with callboard.Board(database_url=url, workers=0).running():
                pass


async def test_jobs_and_events_survive_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'cb.db'}"
    async with callboard.Board(database_url=url, workers=0, demo_types=True).running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "demo.sleep", {"seconds": 0.05})
    async with callboard.Board(database_url=url, workers=2, demo_types=True).running() as rt:
        done = await rt.wait(job.id, timeout=30)
        assert done.status is JobStatus.DONE
        assert (await rt.get_company_by_name("acme")).id == company.id


async def test_live_events_come_in_id_order_and_resuming_loses_nothing(tmp_path):
    """Many concurrent writers on the batching SQLite writer, and a subscriber with a
    tiny buffer that keeps lagging and resuming from the last id it saw: it gets every
    stored event exactly once, in order."""
    board = callboard.Board(database_url=f"sqlite:///{tmp_path / 'cb.db'}", workers=8)
    async with board.running() as rt:
        company = await rt.create_company("acme")
        received: list[int] = []
        lags = 0
        done = trio.Event()
        caught_up = trio.Event()

        async def follow() -> None:
            nonlocal lags
            last = 0
            while True:  # until caught up: a resubscription may straddle done.set()
                try:
                    async with rt.subscribe(company.id, after_event_id=last, buffer=4) as events:
                        async for event in events:
                            received.append(event.id)
                            last = event.id
                            if done.is_set() and event.id == final_id:
                                caught_up.set()
                                return
                except callboard.Lagged:
                    lags += 1

        async def submitter() -> None:
            for _ in range(40):
                await rt.submit(company.id, "noop")

        final_id = -1
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            async with trio.open_nursery() as writers:
                for _ in range(8):
                    writers.start_soon(submitter)
            counts = await rt.counts(company.id)
            while counts[JobStatus.DONE] < 320:
                await trio.sleep(0.05)
                counts = await rt.counts(company.id)
            final_id = await rt.store.last_event_id()
            done.set()
            if received and received[-1] == final_id:
                caught_up.set()
            with trio.fail_after(30):
                await caught_up.wait()
            nursery.cancel_scope.cancel()
        stored = [e.id for e in await rt.store.events_after(0, limit=5000)]
    assert lags > 0  # the buffer of 4 really was outrun
    assert received == stored
