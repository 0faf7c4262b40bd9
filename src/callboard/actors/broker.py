"""The event broker: fan-out of published events to bounded subscriber buffers.

`publish()` is synchronous and never blocks: it offers the event to every matching
subscriber with `send_nowait`. A subscriber whose buffer is full has fallen behind;
it is dropped on the spot (its channel closed, marked lagged) and the others are not
affected. The dropped subscriber first drains what it had buffered, then gets
`Lagged`, and re-subscribes from the last event id it saw; the store's replay fills
the hole, so nothing is lost and memory stays bounded.

The broker knows nothing of jobs: events are any objects, filters any predicate.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ..errors import BrokerClosed, Lagged

log = logging.getLogger("callboard.broker")

Filter = Callable[[Any], bool]


@dataclass(frozen=True, slots=True)
class BrokerStatistics:
    subscribers: int
    published: int
    delivered: int
    dropped: int


class Subscription:
    """A receive side of one subscriber: `receive()` or `async for`.

    Ends with `Lagged` if the broker dropped it for falling behind, with
    `BrokerClosed` if the broker stopped, and with `trio.ClosedResourceError` only if
    you use it after leaving its `subscribe()` block.
    """

    def __init__(self, receive: trio.MemoryReceiveChannel[Any], buffer: int) -> None:
        self._receive = receive
        self.buffer = buffer
        self.lagged = False
        self.broker_closed = False
        self._dropped_at = 0

    async def receive(self) -> Any:
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            if self.lagged:
                raise Lagged(self._dropped_at, self.buffer) from None
            raise BrokerClosed("the event broker stopped") from None

    def receive_nowait(self) -> Any:
        try:
            return self._receive.receive_nowait()
        except trio.EndOfChannel:
            if self.lagged:
                raise Lagged(self._dropped_at, self.buffer) from None
            raise BrokerClosed("the event broker stopped") from None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except BrokerClosed:
            raise StopAsyncIteration from None


class _Subscriber:
    __slots__ = ("filter", "send", "subscription")

    def __init__(
        self, send: trio.MemorySendChannel[Any], subscription: Subscription, filter: Filter | None
    ) -> None:
        self.send = send
        self.subscription = subscription
        self.filter = filter


class Broker:
    """Publish/subscribe within one process. Run it as an actor (`run`) so its
    subscribers are closed when the runtime stops."""

    name = "broker"

    def __init__(self, default_buffer: int = 1000) -> None:
        if not (0 < default_buffer < math.inf):
            raise ValueError("subscriber buffers must be bounded and positive")
        self.default_buffer = default_buffer
        self._subscribers: set[_Subscriber] = set()
        self._observers: list[Callable[[Any], None]] = []
        self._published = 0
        self._delivered = 0
        self._dropped = 0
        self._closed = False

    def statistics(self) -> BrokerStatistics:
        return BrokerStatistics(
            subscribers=len(self._subscribers),
            published=self._published,
            delivered=self._delivered,
            dropped=self._dropped,
        )

    @property
    def heeded(self) -> bool:
        """Whether an event published now would reach anyone (a subscriber or an
        observer)."""
        return bool(self._subscribers or self._observers)

    def publish(self, event: Any) -> None:
        """Offer `event` to every matching subscriber; never blocks, never raises for a
        slow subscriber (it is dropped instead)."""
        self._published += 1
        for observe in self._observers:
            try:
                observe(event)
            except Exception:
                log.exception("an event observer failed; the event was still published")
        lagging: list[_Subscriber] = []
        gone: list[_Subscriber] = []
        for sub in self._subscribers:
            if sub.filter is not None and not sub.filter(event):
                continue
            try:
                sub.send.send_nowait(event)
                self._delivered += 1
            except trio.WouldBlock:
                lagging.append(sub)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The subscriber left between its last receive and its cleanup.
                gone.append(sub)
        for sub in lagging:
            self._dropped += 1
            sub.subscription.lagged = True
            sub.subscription._dropped_at = self._published
            log.info("dropped a subscriber that fell behind (buffer %d)", sub.subscription.buffer)
            self._remove(sub)
        for sub in gone:
            self._remove(sub)

    def observe(self, fn: Callable[[Any], None]) -> None:
        """Call `fn(event)` synchronously for every event published from now on (for
        counters and histograms; it must be quick and must not block)."""
        self._observers.append(fn)

    def publish_many(self, events: list[Any]) -> None:
        for event in events:
            self.publish(event)

    @asynccontextmanager
    async def subscribe(
        self, filter: Filter | None = None, buffer: int | None = None
    ) -> AsyncIterator[Subscription]:
        """Receive every event published from now on that `filter` accepts, through a
        buffer of `buffer` events (bounded); released when the block exits."""
        if self._closed:
            raise BrokerClosed("the event broker stopped")
        size = self.default_buffer if buffer is None else buffer
        if not (0 < size < math.inf):
            raise ValueError("subscriber buffers must be bounded and positive")
        send, receive = trio.open_memory_channel[Any](size)
        subscription = Subscription(receive, size)
        sub = _Subscriber(send, subscription, filter)
        self._subscribers.add(sub)
        try:
            yield subscription
        finally:
            self._remove(sub)
            receive.close()

    def _remove(self, sub: _Subscriber) -> None:
        self._subscribers.discard(sub)
        sub.send.close()

    def close(self) -> None:
        """End every subscription with BrokerClosed and refuse new ones."""
        self._closed = True
        for sub in list(self._subscribers):
            self._remove(sub)

    async def run(self, *, task_status: trio.TaskStatus[Broker] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the subscribers' lifetime: when the runtime stops, they all end."""
        self._closed = False
        task_status.started(self)
        try:
            await trio.sleep_forever()
        finally:
            self.close()
