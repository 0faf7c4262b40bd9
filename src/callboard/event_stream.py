"""Replay-then-follow: the stored events after an id, then the live tail, with no gap
and no duplicate (DESIGN.md section 1).

The live subscription opens first (on entering the context), then the store is
replayed from the id; live events that the replay already gave are skipped by id.
A replay long enough to overflow the live buffer ends in `Lagged` once it is
delivered, and the consumer resumes from the last id it saw: each round makes
progress, and memory stays bounded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager

from .actors.broker import Broker, Subscription
from .jobs import JobEvent
from .store.base import JobStore

REPLAY_PAGE = 500


@asynccontextmanager
async def open_event_stream(
    store: JobStore,
    broker: Broker,
    *,
    company_id: str | None = None,
    job_id: str | None = None,
    after_event_id: int | None = None,
    buffer: int | None = None,
) -> AsyncIterator[AsyncIterator[JobEvent]]:
    """Events of one company or job (or all) after `after_event_id`, then live ones.
    With `after_event_id` None only live events come (from entering the context on).
    The iterator raises `Lagged` if the consumer falls behind the live tail."""

    def wanted(event: object) -> bool:
        return (
            isinstance(event, JobEvent)
            and (company_id is None or event.company_id == company_id)
            and (job_id is None or event.job_id == job_id)
        )

    async with broker.subscribe(wanted, buffer=buffer) as live:
        stream = _stream(store, live, company_id, job_id, after_event_id)
        async with aclosing(stream):
            yield stream


async def _stream(
    store: JobStore,
    live: Subscription,
    company_id: str | None,
    job_id: str | None,
    after: int | None,
) -> AsyncIterator[JobEvent]:
    replayed: set[int] = set()
    if after is not None:
        async with aclosing(_replay(store, after, company_id, job_id)) as stored:
            async for event in stored:
                replayed.add(event.id)
                yield event
    async for event in live:
        if event.id not in replayed:
            yield event


async def _replay(
    store: JobStore, after: int, company_id: str | None, job_id: str | None
) -> AsyncIterator[JobEvent]:
    while True:
        page = await store.events_after(
            after, company_id=company_id, job_id=job_id, limit=REPLAY_PAGE
        )
        for event in page:
            yield event
            after = event.id
        if len(page) < REPLAY_PAGE:
            return
