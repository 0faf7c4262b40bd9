"""Server-Sent Events: framing (WHATWG event-stream) and the streaming loop.

The loop interleaves three things without losing any: events from a cancel-safe
`EventStream`, a `: ping` comment every 15 s so proxies and clients keep the
connection, and the node's shutdown (the stream ends cleanly, the client
reconnects elsewhere or later with Last-Event-ID). While the store is unreachable it
keeps the stream open with pings and retries: a browser gives up for good on any
answer but 200 text/event-stream, so an SSE route never answers 503.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import trio

from ..errors import BrokerClosed, Lagged, StoreUnavailable
from ..jobs import JobEvent, NodeEvent

if TYPE_CHECKING:
    from ..running_board import EventStream

log = logging.getLogger("callboard.sse")

PING_SECONDS = 15.0
RETRY_MS = 3000
# Events joined into one chunk at most: bounds the chunk (and the time one stream holds
# the loop) when a stream resumes far behind.
MAX_BATCH = 256
HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    # Ending the response also ends the connection, so a graceful shutdown does not
    # wait on idle keep-alive connections (docs/architecture.md, "Stack notes").
    "Connection": "close",
}


def frame(
    data: Any, *, event: str | None = None, id: int | None = None, retry: int | None = None
) -> bytes:
    lines = []
    if retry is not None:
        lines.append(f"retry: {retry}")
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    text = json.dumps(data, separators=(",", ":"))
    lines.extend(f"data: {line}" for line in text.split("\n"))
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str) -> bytes:
    return f": {text}\n\n".encode()


def encode_event(event: JobEvent | NodeEvent) -> bytes:
    if isinstance(event, JobEvent):
        return frame(event.to_dict(), event=str(event.type), id=event.id)
    return frame(dict(event.data), event=event.type)


class EventEncoder:
    """Encodes each job event once for all the streams that send it: with a thousand
    subscribers, serialising the job per stream was a fifth of the fan-out's CPU.
    Event ids never change meaning within one store, so the id is the key; the cache
    keeps the most recent `size` events."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._frames: OrderedDict[int, bytes] = OrderedDict()

    def __call__(self, event: JobEvent | NodeEvent) -> bytes:
        if not isinstance(event, JobEvent):
            return encode_event(event)
        encoded = self._frames.get(event.id)
        if encoded is None:
            encoded = self._frames[event.id] = encode_event(event)
            if len(self._frames) > self._size:
                self._frames.popitem(last=False)
        return encoded


async def stream_events(
    open_stream: Callable[[], Any],
    *,
    stopping: trio.Event,
    first: list[bytes],
    end_after: Callable[[JobEvent], bool] | None = None,
    ping_seconds: float = PING_SECONDS,
    encode: Callable[[Any], bytes] = encode_event,
) -> AsyncIterator[bytes]:
    """Yield the frames of one SSE response.

    `first` frames (retry:, a gap notice, a re-sent latest event) go out as soon as
    the live subscription is open.
    `open_stream()` is an async context manager giving an `EventStream`; on `Lagged`
    the response ends (the client reconnects with Last-Event-ID and the replay fills
    the hole). `end_after(event)` ends the stream after that event (a job's terminal
    event). `stopping` is set when the node drains; the broker closing then ends a
    live stream, and the retry loop checks it between attempts."""
    pending = list(first)
    delay = 0.5
    while not stopping.is_set():
        try:
            async with open_stream() as events:
                # `first` goes out once the live subscription is open: a client that
                # acts on the first message (submits a job) cannot miss its events.
                while pending:
                    yield pending.pop(0)
                async with aclosing(_pump(events, end_after, ping_seconds, encode)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
        except StoreUnavailable:
            log.debug("store unavailable under an SSE stream; retrying", exc_info=True)
            yield comment("store unavailable, retrying")
            with trio.move_on_after(delay):
                await stopping.wait()
            delay = min(delay * 2, ping_seconds)
        except (Lagged, BrokerClosed):
            break
    for chunk in pending:  # the node stopped before a subscription opened
        yield chunk


async def _pump(
    events: EventStream,
    end_after: Callable[[JobEvent], bool] | None,
    ping_seconds: float,
    encode: Callable[[Any], bytes],
) -> AsyncIterator[bytes]:
    """Events and pings until `end_after` says so; the runtime's shutdown closes the
    broker, which ends this with BrokerClosed.

    Each wake-up sends everything already waiting as ONE chunk: a send costs far more
    in the web stack (Quart, Hypercorn, trio's socket) than its bytes do, so under load
    a stream catches up by sending bigger chunks instead of falling further behind."""
    while True:
        with trio.move_on_after(ping_seconds) as idle:
            event = await events.receive()
        if idle.cancelled_caught:
            yield comment("ping")
            continue
        chunks = [encode(event)]
        done = end_after is not None and isinstance(event, JobEvent) and end_after(event)
        ending: Exception | None = None
        while not done and len(chunks) < MAX_BATCH:
            try:
                event = events.receive_nowait()
            except trio.WouldBlock:
                break
            except (Lagged, BrokerClosed) as exc:
                ending = exc  # after what was already taken is out
                break
            chunks.append(encode(event))
            done = end_after is not None and isinstance(event, JobEvent) and end_after(event)
        yield chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if ending is not None:
            raise ending
        if done:
            return
