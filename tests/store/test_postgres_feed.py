"""The PostgreSQL event feed's view of other nodes' events, without a database: what
it publishes, and when it wakes this node's dispatcher."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import trio

from callboard.jobs import EventType, JobEvent, JobStatus, NewJob, new_id
from callboard.store.postgres.feed import EventFeed

pytestmark = pytest.mark.trio

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def event(event_id: int, type_: EventType, job_id: str) -> JobEvent:
    job = NewJob(job_id, "acme", "noop", {}, 0, 1, None, NOW, None, None).queued(NOW)
    if type_ is EventType.RUNNING:
        job = replace(job, status=JobStatus.RUNNING, attempt=1, started_at=NOW)
    return JobEvent(event_id, type_, job_id, "acme", NOW, job)


async def test_other_nodes_queued_jobs_wake_the_dispatcher_unless_already_started(
    autojump_clock,
):
    stored: list[JobEvent] = []

    async def read_after(after: int, through: int, limit: int) -> list[JobEvent]:
        await trio.lowlevel.checkpoint()
        return [e for e in stored if after < e.id <= through][:limit]

    async def read_head() -> int:
        await trio.lowlevel.checkpoint()
        return stored[-1].id if stored else 0

    published: list[JobEvent] = []
    wakes: list[int] = []
    feed = EventFeed(read_after, read_head)
    feed.publish = published.extend
    feed.on_jobs_queued = lambda: wakes.append(len(published))
    feed.start_at(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        # Another node started a job on submit: queued and running in one commit.
        started = new_id()
        stored += [event(1, EventType.QUEUED, started), event(2, EventType.RUNNING, started)]
        feed.notified(2)
        await trio.sleep(0.5)
        assert [e.id for e in published] == [1, 2]
        assert wakes == []  # nothing left to claim
        # Another node queued a job: this node may claim it.
        stored.append(event(3, EventType.QUEUED, new_id()))
        feed.notified(3)
        await trio.sleep(0.5)
        assert [e.id for e in published] == [1, 2, 3]
        assert wakes == [3]
        nursery.cancel_scope.cancel()


async def test_a_feed_nobody_wants_reads_nothing_and_resumes_where_a_listener_begins(
    autojump_clock,
):
    stored: list[JobEvent] = []
    reads: list[tuple[int, int]] = []

    async def read_after(after: int, through: int, limit: int) -> list[JobEvent]:
        await trio.lowlevel.checkpoint()
        reads.append((after, through))
        return [e for e in stored if after < e.id <= through][:limit]

    async def read_head() -> int:
        await trio.lowlevel.checkpoint()
        return stored[-1].id if stored else 0

    published: list[JobEvent] = []
    listening = False
    feed = EventFeed(read_after, read_head)
    feed.publish = published.extend
    feed.wanted = lambda: listening
    feed.start_at(0)
    async with trio.open_nursery() as nursery:
        await nursery.start(feed.run)
        # Other nodes commit, announced or found by the poll of the head: nothing here
        # wants their events, so none is read.
        stored += [event(i, EventType.QUEUED, new_id()) for i in (1, 2, 3)]
        feed.notified(2)
        await trio.sleep(3)  # a few polls of the head
        assert reads == [] and published == []
        assert (feed.published, feed.skipped) == (3, 3)
        # This node's own commit goes out at once, past another node's id it never read.
        stored += [event(4, EventType.QUEUED, new_id()), event(5, EventType.QUEUED, new_id())]
        feed.committed([stored[-1]])
        assert [e.id for e in published] == [5]
        assert (feed.published, feed.skipped) == (5, 4)
        # A listener arrives: everything committed from then on is read and published.
        listening = True
        stored += [event(6, EventType.QUEUED, new_id()), event(7, EventType.RUNNING, new_id())]
        feed.notified(7)
        await trio.sleep(0.5)
        assert [e.id for e in published] == [5, 6, 7]
        assert reads == [(5, 7)]
        nursery.cancel_scope.cancel()
