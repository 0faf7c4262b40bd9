"""No client hangs when the server answers before the request's body has arrived.

A view may answer without reading the body (401, 404, 405, 413, a validation error).
When the client sends its body after the headers (any client that streams a body),
the rest of it is still on its way when the answer goes out, and the HTTP/1.1 stack
beneath us (Hypercorn with h11) then never answers the next request on that
keep-alive connection: the client hangs until its timeout.

`EarlyAnswerGuard` wraps the ASGI app. When a response starts while the request's
body is unfinished, it first reads the rest of the body, up to `DRAIN_BYTES` and for
at most `DRAIN_SECONDS`, and throws it away, so the connection can serve the next
request. A body too big or too slow to drain gets `Connection: close` on the answer
instead, and the connection is closed after it: a client that reads while it sends
gets the answer, then opens a new connection; one that is still pushing megabytes
when the close comes may see a reset instead of the answer (routes that expect big
bodies, uploads, read and drop what they refuse themselves, within their own bound).
Either way nothing waits on a body nobody reads. When the connection closes while
such an answer is still being written (the client read it and left, or Hypercorn's
own close ran into the answer's last write), the answer ends there, quietly: there is
nobody left to send it to, and no traceback is logged for each such client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import trio

log = logging.getLogger("callboard.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Bodies at most this big are read and dropped to keep the connection.
DRAIN_BYTES = 64 * 1024
#: How long an early answer waits for the rest of a small body.
DRAIN_SECONDS = 1.0


def _declared_length(scope: Scope) -> int | None:
    """The body's Content-Length; None for a chunked body (its length is unknown)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return True
    return (_declared_length(scope) or 0) > 0


class EarlyAnswerGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        body = _Body(_declared_length(scope))

        async def tracked_receive() -> Message:
            message = await receive()
            body.note(message)
            return message

        closing = False

        async def guarded_send(message: Message) -> None:
            nonlocal closing
            if message["type"] == "http.response.start" and not body.done.is_set():
                if not await body.drain(receive):
                    closing = True
                    headers = [
                        (name, value)
                        for name, value in message.get("headers", ())
                        if name.lower() != b"connection"
                    ]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            try:
                await send(message)
            except trio.BusyResourceError:
                if not closing:
                    raise
                # The connection is closing under the answer: Hypercorn's close sends
                # its EOF outside the lock its sends take, so the answer's last write
                # can collide with it. Nothing more can go out; the answer is over.
                log.debug("the connection closed while its early answer was sent")

        await self.app(scope, tracked_receive, guarded_send)


class _Body:
    """What has arrived of one request's body. `done` is set once it is complete (or
    the client went away)."""

    def __init__(self, declared: int | None) -> None:
        self.declared = declared
        self.received = 0
        self.complete = False
        self.done = trio.Event()

    def note(self, message: Message) -> None:
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
                self.done.set()
        elif message["type"] == "http.disconnect":
            self.done.set()

    async def drain(self, receive: Receive) -> bool:
        """Wait for the rest of a small body, dropping it; True when it all arrived, so
        the connection can serve the next request. The app's own reader (Quart reads
        the body in a task of its own) may be the one that gets it, so this waits for
        `done` while it also reads."""
        if self.declared is None or self.declared > DRAIN_BYTES:
            return False

        async def pull() -> None:
            while not self.done.is_set() and self.received <= DRAIN_BYTES:
                self.note(await receive())

        with trio.move_on_after(DRAIN_SECONDS):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pull)
                await self.done.wait()
                nursery.cancel_scope.cancel()
        return self.complete
