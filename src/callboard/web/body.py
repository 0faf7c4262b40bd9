"""Request bodies with flow control, and a size limit a view may raise.

Quart's own body reads the ASGI messages as fast as they arrive and appends them to
one buffer: a view that streams a body to a slower disk buffers whatever the client
has sent ahead of it, and the size limit (MAX_CONTENT_LENGTH, checked against that
buffer, and against Content-Length when the request is made) is the app's, before the
view can say it takes more. Here instead:

- the ASGI side hands each chunk over a small bounded channel and waits while the view
  is behind, so Hypercorn stops reading the socket and TCP pushes back on the client:
  memory is BUFFERED_CHUNKS chunks per request, whatever the body's size;
- the limit is checked as the view reads, against the bytes read so far (and first
  against Content-Length), so the upload route raises `max_content_length` for its
  own request before reading, while every other route keeps the app's 1 MiB.

`await request.get_data()` works as before (it reads the whole body, within the limit).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import trio
from quart_trio.asgi import TrioASGIHTTPConnection
from quart_trio.wrappers.request import TrioBody, TrioRequest
from werkzeug.exceptions import RequestEntityTooLarge

#: Chunks (one ASGI message each, at most 64 KiB from Hypercorn) held between the
#: socket and a view that reads slower than the client sends.
BUFFERED_CHUNKS = 8


class FlowControlledBody(TrioBody):
    def __init__(self, expected_content_length: int | None, max_content_length: int | None) -> None:
        self.expected_content_length = expected_content_length
        #: The limit on the body's size; a view may change it before reading.
        self.max_content_length = max_content_length
        # Made when a chunk or a reader first needs it: most requests (every GET) have
        # no body, and a channel per request measured in the front door's profile.
        self._send: trio.MemorySendChannel[bytes] | None = None
        self._receive: trio.MemoryReceiveChannel[bytes] | None = None
        self._finished = False
        self._received = 0
        self._whole: bytes | None = None

    def _channel(self) -> trio.MemoryReceiveChannel[bytes]:
        if self._receive is None:
            self._send, self._receive = trio.open_memory_channel[bytes](BUFFERED_CHUNKS)
            if self._finished:
                self._send.close()
        return self._receive

    async def _next_chunk(self) -> bytes | None:
        """The next chunk, or None at the end of the body."""
        if self._receive is None and self._finished:
            await trio.lowlevel.checkpoint()
            return None
        try:
            return await self._channel().receive()
        except trio.EndOfChannel:
            return None

    # --- the ASGI side -----------------------------------------------------------------

    async def feed(self, data: bytes) -> None:
        """Hand one chunk to the view, waiting while it is behind."""
        if data:
            self._channel()
            assert self._send is not None
            try:
                await self._send.send(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the view is done with the body: drop the rest

    def finish(self) -> None:
        self._finished = True
        if self._send is not None:
            self._send.close()

    # --- the view's side ---------------------------------------------------------------

    def _too_large(self, size: int | None) -> bool:
        limit = self.max_content_length
        return limit is not None and size is not None and size > limit

    @property
    def announced_too_large(self) -> bool:
        """Content-Length says the body is over the limit (nothing need be read)."""
        return self._too_large(self.expected_content_length)

    def __aiter__(self) -> FlowControlledBody:
        return self

    async def __anext__(self) -> bytes:
        if self._too_large(self.expected_content_length):
            raise RequestEntityTooLarge()
        data = await self._next_chunk()
        if data is None:
            raise StopAsyncIteration
        self._received += len(data)
        if self._too_large(self._received):
            raise RequestEntityTooLarge()
        return data

    async def discard(self, limit: int) -> bool:
        """Read and drop the rest of the body, up to `limit` more bytes; True if it
        ended. Lets a refused upload's answer reach a client still sending (closing
        on unread data makes the kernel reset the connection, losing the answer)."""
        dropped = 0
        while dropped <= limit:
            data = await self._next_chunk()
            if data is None:
                return True
            dropped += len(data)
        return False

    def __await__(self) -> Generator[Any, None, bytes]:
        return self._read_all().__await__()

    async def _read_all(self) -> bytes:
        if self._whole is None:
            parts = [chunk async for chunk in self]
            self._whole = b"".join(parts)
        return self._whole

    def clear(self) -> None:
        self._whole = b""


class FlowControlledRequest(TrioRequest):
    body_class = FlowControlledBody  # type: ignore[assignment]
    body: FlowControlledBody


class FlowControlledConnection(TrioASGIHTTPConnection):
    """Feeds the request body with backpressure (see the module docstring)."""

    async def handle_messages(  # type: ignore[override]
        self, nursery: trio.Nursery, request: FlowControlledRequest, receive: Any
    ) -> None:
        body = request.body
        while True:
            message = await receive()
            if message["type"] == "http.request":
                await body.feed(message.get("body", b""))
                if not message.get("more_body", False):
                    body.finish()
            elif message["type"] == "http.disconnect":
                break
        nursery.cancel_scope.cancel()
