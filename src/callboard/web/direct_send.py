"""SSE body chunks written straight to the connection's socket.

Each ASGI body message costs about 65 µs in Hypercorn on its way to the socket (the
HTTP stream's state machine, h11's, a trio lock, a shielded cancel scope, trio's
socket wrapper with two checkpoints), against 10 µs for the write itself: with a
thousand streams on one feed that is most of the fan-out's CPU. `DirectStreams` wraps
the app for the SSE routes only (GET `.../events` on plain HTTP/1.1) and, while the
connection is idle, frames a body chunk as h11 would (chunked transfer coding, which
h11 does not track) and writes it with one non-blocking `os.write`. Whatever does
not fit goes out through Hypercorn's own raw send (its lock, its error handling); so
does every chunk it cannot vouch for: another send in progress, the response not
streaming, a HEAD request, TLS, HTTP/1.0, another Hypercorn protocol. Those take
the ordinary path, unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import h11
import trio
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.http_stream import ASGIHTTPState, HTTPStream
from hypercorn.trio.tcp_server import TCPServer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Any, Send], Awaitable[None]]

_write = os.write  # one name for the direct path's writes (its tests count them)


class _Connection:
    """Hypercorn's objects behind one ASGI `send`: the HTTP stream, its h11 protocol
    and the TCP server that owns the socket."""

    __slots__ = ("chunked", "protocol", "server", "stream")

    def __init__(self, stream: HTTPStream, protocol: H11Protocol, server: TCPServer) -> None:
        self.stream = stream
        self.protocol = protocol
        self.server = server
        self.chunked = False

    @classmethod
    def behind(cls, send: Send) -> _Connection | None:
        stream = getattr(send, "__self__", None)
        if not isinstance(stream, HTTPStream):
            return None
        protocol = getattr(stream.send, "__self__", None)
        if not isinstance(protocol, H11Protocol):
            return None
        server = getattr(protocol.send, "__self__", None)
        if not isinstance(server, TCPServer) or not isinstance(server.stream, trio.SocketStream):
            return None
        return cls(stream, protocol, server)

    def started(self, message: Message) -> None:
        """h11 frames a response without Content-Length to an HTTP/1.1 client in chunks."""
        self.chunked = not any(
            name.lower() == b"content-length" for name, _ in message.get("headers", ())
        )

    async def write(self, data: bytes) -> bool:
        """Write one body chunk; False (nothing written) when the ordinary path must."""
        if (
            not self.chunked
            or not data
            or self.stream.state is not ASGIHTTPState.RESPONSE
            or self.protocol.connection.our_state is not h11.SEND_BODY
            or self.server.send_lock.locked()
        ):
            return False
        # Fetched on every write: a closed socket answers -1, never a reused number.
        fd = self.server.stream.socket.fileno()
        if fd < 0:
            return False
        framed = b"%x\r\n%b\r\n" % (len(data), data)
        try:
            sent = _write(fd, framed)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False  # the ordinary path meets the same error and closes properly
        if sent < len(framed):
            await self.server.protocol_send(RawData(data=framed[sent:]))
        return True


class DirectStreams:
    """ASGI middleware: the direct path for SSE responses, the app unchanged otherwise."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Send) -> None:
        connection = None
        if (
            scope["type"] == "http"
            and scope.get("http_version") == "1.1"
            and scope.get("method") == "GET"
            and scope.get("path", "").endswith("/events")
        ):
            connection = _Connection.behind(send)
        if connection is None:
            await self.app(scope, receive, send)
            return

        async def direct_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.body" and message.get("more_body", False):
                if await connection.write(message.get("body", b"")):
                    return
            elif kind == "http.response.start":
                connection.started(message)
            await send(message)

        await self.app(scope, receive, direct_send)
