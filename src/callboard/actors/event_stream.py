"""Replay-then-follow: the stored events after an id, then the live tail, with no gap
and no duplicate (docs/architecture.md, "Data flow").

The live subscription opens first (on entering the context), then the store is
replayed from the id, page by page; live events at or below the last id delivered
are skipped. Live events arrive in id order (the store publishes each commit's
events in order, before its callers resume), so one high-water mark is exact.

A replay long enough to overflow the live buffer ends in `Lagged` once it is
delivered, and the consumer resumes from the last id it saw: each round makes
progress, and memory stays bounded.

`EventStream.receive()` is safe to cancel at any point (nothing is consumed until it
returns), so callers can wrap it in a timeout to interleave keep-alive pings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from ..errors import BrokerClosed
from ..jobs import JobEvent
from ..store.base import JobStore
from .broker import Broker, Subscription

REPLAY_PAGE = 500


class EventStream:
    def __init__(
        self,
        store: JobStore,
        live: Subscription,
        *,
        company_id: str | None,
        job_id: str | None,
        after: int | None,
    ) -> None:
        self._store = store
        self._live = live
        self._company_id = company_id
        self._job_id = job_id
        self._after = after
        self._replaying = after is not None
        self._pending: deque[JobEvent] = deque()
        self._high_water = after or 0

    @property
    def replaying(self) -> bool:
        return self._replaying or bool(self._pending)

    async def receive(self) -> JobEvent:
        """The next event; raises `Lagged` if the live tail overflowed, `BrokerClosed`
        when the runtime stops, StoreUnavailable if a replay page cannot be read (call
        again to retry: the position is kept)."""
        while True:
            if self._pending:
                return self._next_pending()
            if self._replaying:
                assert self._after is not None
                page = await self._store.events_after(
                    self._after, company_id=self._company_id, job_id=self._job_id, limit=REPLAY_PAGE
                )
                self._pending.extend(page)
                if page:
                    self._after = page[-1].id
                if len(page) < REPLAY_PAGE:
                    self._replaying = False
                continue
            event = await self._live.receive()
            if self._fresh(event):
                return event

    def receive_nowait(self) -> JobEvent:
        """The next event if one is already here, else `trio.WouldBlock` (also while a
        replay page is still to be read: only `receive()` reads the store). Raises
        `Lagged` and `BrokerClosed` like `receive()`, once what was buffered is out."""
        while True:
            if self._pending:
                return self._next_pending()
            if self._replaying:
                raise trio.WouldBlock
            event = self._live.receive_nowait()
            if self._fresh(event):
                return event

    def _next_pending(self) -> JobEvent:
        event = self._pending.popleft()
        self._high_water = max(self._high_water, event.id)
        return event

    def _fresh(self, event: object) -> bool:
        """False for a live event the replay has delivered already."""
        if isinstance(event, JobEvent):
            if event.id <= self._high_water:
                return False
            self._high_water = event.id
        return True

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> JobEvent:
        try:
            return await self.receive()
        except BrokerClosed:
            raise StopAsyncIteration from None


def job_event_filter(company_id: str | None, job_id: str | None) -> Callable[[object], bool]:
    def wanted(event: object) -> bool:
        return (
            isinstance(event, JobEvent)
            and (company_id is None or event.company_id == company_id)
            and (job_id is None or event.job_id == job_id)
        )

    return wanted


@asynccontextmanager
async def open_event_stream(
    store: JobStore,
    broker: Broker,
    *,
    company_id: str | None = None,
    job_id: str | None = None,
    after_event_id: int | None = None,
    buffer: int | None = None,
    include_runtime_events: bool = False,
) -> AsyncIterator[EventStream]:
    """Events of one company or job (or all) after `after_event_id`, then live ones.
    With `after_event_id` None only live events come (from entering the context on).
    `include_runtime_events` adds the operator-only events (worker.*, runtime.stats)."""
    job_events = job_event_filter(company_id, job_id)
    wanted = job_events
    if include_runtime_events:

        def wanted(event: object) -> bool:
            return job_events(event) or not isinstance(event, JobEvent)

    async with broker.subscribe(wanted, buffer=buffer) as live:
        yield EventStream(store, live, company_id=company_id, job_id=job_id, after=after_event_id)
