"""The broker's fan-out, and replay-then-follow subscriptions."""

from __future__ import annotations

import pytest
import trio
from boardkit import running_with_company

from callboard import JobSpec, Lagged
from callboard.actors.broker import Broker
from callboard.errors import BrokerClosed

pytestmark = pytest.mark.trio


async def test_publish_reaches_every_matching_subscriber():
    broker = Broker()
    async with broker.subscribe() as everything, broker.subscribe(lambda e: e % 2 == 0) as even:
        for i in range(5):
            broker.publish(i)
        assert [everything.receive_nowait() for _ in range(5)] == [0, 1, 2, 3, 4]
        assert [even.receive_nowait() for _ in range(3)] == [0, 2, 4]
        with pytest.raises(trio.WouldBlock):
            even.receive_nowait()
    stats = broker.statistics()
    assert (stats.subscribers, stats.published, stats.delivered, stats.dropped) == (0, 5, 8, 0)


async def test_a_slow_subscriber_is_dropped_and_the_others_are_not():
    broker = Broker()
    async with broker.subscribe(buffer=3) as slow, broker.subscribe(buffer=100) as fast:
        for i in range(10):
            broker.publish(i)  # never blocks, even with `slow` full
        # The slow one keeps what it had buffered, then learns it lagged.
        assert [await slow.receive() for _ in range(3)] == [0, 1, 2]
        with pytest.raises(Lagged):
            await slow.receive()
        assert [fast.receive_nowait() for _ in range(10)] == list(range(10))
        assert broker.statistics().subscribers == 1
        assert broker.statistics().dropped == 1
        broker.publish(10)
        assert fast.receive_nowait() == 10


async def test_closing_the_broker_ends_iteration_cleanly():
    broker = Broker()
    seen = []
    async with trio.open_nursery() as nursery:

        async def consume():
            async with broker.subscribe() as events:
                async for event in events:
                    seen.append(event)

        nursery.start_soon(consume)
        await trio.testing.wait_all_tasks_blocked()
        broker.publish("a")
        broker.close()
    assert seen == ["a"]
    with pytest.raises(BrokerClosed):
        async with broker.subscribe():
            pass


async def test_buffers_must_be_bounded():
    with pytest.raises(ValueError, match="bounded"):
        Broker(default_buffer=float("inf"))  # type: ignore[arg-type]
    broker = Broker()
    with pytest.raises(ValueError, match="bounded"):
        async with broker.subscribe(buffer=0):
            pass


async def test_replay_after_an_event_id_gives_exactly_the_missed_events(make_board, autojump_clock):
    board = make_board(workers=1)
    async with running_with_company(board) as (rt, company):
        other = await rt.create_company("globex")
        first = await rt.submit(company, "noop")
        await rt.wait(first.id)
        seen = await rt.store.events_after(0, company_id=company)
        last_seen = seen[-1].id
        # While "disconnected": more events, some for another company.
        missed_jobs = await rt.submit_many(company, [JobSpec("noop") for _ in range(3)])
        await rt.submit(other.id, "noop")
        for job in missed_jobs:
            await rt.wait(job.id)
        expected = [e.id for e in await rt.store.events_after(last_seen, company_id=company)]
        assert len(expected) == 9  # queued, running, done for each of three

        got = []
        async with rt.subscribe(company_id=company, after_event_id=last_seen) as events:
            async for event in events:
                got.append(event)
                if len(got) == len(expected):
                    live = await rt.submit(company, "noop")
                if len(got) == len(expected) + 3:
                    break
        assert [e.id for e in got[: len(expected)]] == expected
        assert all(e.company_id == company for e in got)
        assert [e.job_id for e in got[len(expected) :]] == [live.id] * 3
        ids = [e.id for e in got]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_subscriber_that_falls_behind_gets_lagged_and_resumes_without_loss(
    make_board, autojump_clock
):
    board = make_board(workers=0)
    async with running_with_company(board) as (rt, company):
        last = 0
        got: list[int] = []
        async with rt.subscribe(company_id=company, after_event_id=0, buffer=2) as events:
            await rt.submit_many(company, [JobSpec("noop") for _ in range(5)])
            with pytest.raises(Lagged):
                async for event in events:
                    got.append(event.id)
                    last = event.id
        async with rt.subscribe(company_id=company, after_event_id=last) as events:
            with trio.move_on_after(1):
                async for event in events:
                    got.append(event.id)
        stored = [e.id for e in await rt.store.events_after(0)]
        assert got == stored and len(stored) == 5
