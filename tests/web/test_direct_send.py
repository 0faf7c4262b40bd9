"""SSE body chunks written straight to the socket: on a real Hypercorn, the bytes a
client reads are exactly those the app sent, in order, also when a chunk does not fit
the socket's buffer (the rest goes through Hypercorn's own send); anything the direct
path cannot vouch for (HTTP/1.0, other paths) takes the ordinary path."""

from __future__ import annotations

import os
from typing import Any

import h11
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from callboard.web import direct_send
from callboard.web.direct_send import DirectStreams

pytestmark = pytest.mark.trio

# Small chunks, then one far bigger than a socket buffer, then small ones again.
CHUNKS = [b"id: %d\ndata: {}\n\n" % n for n in range(50)]
CHUNKS += [b"data: " + b"x" * (8 << 20) + b"\n\n"]
CHUNKS += [b"id: %d\ndata: {}\n\n" % n for n in range(50, 100)]


async def streaming_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            kind = (await receive())["type"]
            await send({"type": kind + ".complete"})
            if kind == "lifespan.shutdown":
                return
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for chunk in CHUNKS:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


class Writes:
    """Counts the direct path's writes, and those the socket took only in part."""

    def __init__(self) -> None:
        self.calls = 0
        self.partial = 0

    def __call__(self, fd: int, data: bytes) -> int:
        self.calls += 1
        try:
            sent = os.write(fd, data)
        except BlockingIOError:
            self.partial += 1
            raise
        if sent < len(data):
            self.partial += 1
        return sent


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> Writes:
    counter = Writes()
    monkeypatch.setattr(direct_send, "_write", counter)
    return counter


async def fetch(url: str, path: str, version: str = "1.1") -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = trio.socket.socket()
    # A small receive buffer: the big chunk cannot fit in one write.
    sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
    await sock.connect((host, int(port)))
    stream = trio.SocketStream(sock)
    if version == "1.0":  # h11 speaks 1.1 only: the answer is the bytes up to the close
        await stream.send_all(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        raw = bytearray()
        async with stream:
            while data := await stream.receive_some(65536):
                raw += data
        head, _, rest = bytes(raw).partition(b"\r\n\r\n")
        return int(head.split()[1]), rest
    client = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=path, headers=[("Host", host)])
    await stream.send_all(client.send(request) + client.send(h11.EndOfMessage()))
    status, body = 0, bytearray()
    async with stream:
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return status, bytes(body)


async def run_with_server(fn: Any) -> Any:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = None
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, DirectStreams(streaming_app), config)
        try:
            return await fn(binds[0])
        finally:
            nursery.cancel_scope.cancel()


async def test_every_byte_in_order_through_the_direct_path(writes: Writes) -> None:
    status, body = await run_with_server(lambda url: fetch(url, "/api/events"))
    assert status == 200
    assert body == b"".join(CHUNKS)
    assert writes.calls >= 100  # the small chunks went the direct way
    assert writes.partial >= 1  # and the big one did not fit: Hypercorn sent the rest


@pytest.mark.parametrize(("path", "version"), [("/api/other", "1.1"), ("/api/events", "1.0")])
async def test_what_it_cannot_vouch_for_takes_the_ordinary_path(
    writes: Writes, path: str, version: str
) -> None:
    status, body = await run_with_server(lambda url: fetch(url, path, version))
    assert status == 200
    assert body == b"".join(CHUNKS)
    assert writes.calls == 0
