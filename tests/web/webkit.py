"""Helpers for the web tier: a real node + Hypercorn on a loopback port, in-process,
a raw SSE frame reader (it tells an absent `id:` from a repeated one, which
httpx-sse cannot), and bounded polling."""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import trio

from callboard import Board, JobContext, RunningBoard
from callboard.config import load_settings
from callboard.runtime import ChildSpec, Restart
from callboard.web import WebServer

# Gates for the `test.gate` handler: a job waits until its gate (input "gate") opens.
_GATES: dict[str, trio.Event] = {}


def gate(name: str) -> trio.Event:
    return _GATES.setdefault(name, trio.Event())


@functools.cache
def _tls() -> ssl.SSLContext:
    # httpx builds a new default context per client (~0.2 s); the servers are plain
    # http, so one shared context keeps a client's creation cheap.
    return ssl.create_default_context()


@dataclass
class Server:
    url: str
    token: str
    rt: RunningBoard
    settings: Any
    app: Any  # the Quart app Hypercorn serves

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
        headers = {}
        token = self.token if token is None else token
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", httpx.Timeout(10, read=None))
        kwargs.setdefault("verify", _tls())
        return httpx.AsyncClient(base_url=self.url, headers=headers, **kwargs)

    async def events_of(self, *, job_id: str | None = None, company_id: str | None = None) -> list:
        """Every stored event (of one job or company) in id order."""
        return await self.rt.store.events_after(
            0, job_id=job_id, company_id=company_id, limit=100_000
        )


def test_board(settings: Any, **kwargs: Any) -> Board:
    board = Board(
        settings=settings,
        workers=kwargs.pop("workers", 4),
        lease_seconds=kwargs.pop("lease_seconds", 30),
        shutdown_grace=kwargs.pop("shutdown_grace", 5),
        # In-process nodes share the test runner: a stall (a slow machine) must not end
        # it. tests/faults/test_blocked_loop.py tests the exit with real processes.
        loop_stall_exit=kwargs.pop("loop_stall_exit", False),
        # The demo types serve as ready-made handlers here (off by default in a node).
        demo_types=kwargs.pop("demo_types", True),
        **kwargs,
    )

    @board.handler("test.steps")
    async def steps(ctx: JobContext) -> None:
        n = int(ctx.input.get("steps", 3))
        for i in range(n):
            await ctx.progress((i + 1) * 100 // (n + 1), f"step {i}")
            await trio.sleep(float(ctx.input.get("pause", 0.3)))

    @board.handler("test.gate")
    async def wait_for_gate(ctx: JobContext) -> None:
        await ctx.progress(10, "waiting at the gate")
        await gate(str(ctx.input["gate"])).wait()

    @board.handler("test.result")
    async def result(ctx: JobContext) -> object:
        """Returns input "value" (once its gate opens, if it names one); with "notJson",
        a set, which no result may be."""
        if "gate" in ctx.input:
            await gate(str(ctx.input["gate"])).wait()
        if ctx.input.get("notJson"):
            return {"tags": {"a", "b"}}
        return ctx.input.get("value")

    return board


test_board.__test__ = False  # type: ignore[attr-defined]  # not a test, despite its name


async def start_server(tmp_path: Path, env: dict[str, str] | None = None, **board_kwargs: Any):
    settings = load_settings(
        {"data_dir": str(tmp_path / "data"), "bind": "127.0.0.1:0"}, environ=env or {}
    )
    board = test_board(settings, **board_kwargs)
    servers: list[WebServer] = []

    def web(rt: RunningBoard) -> list[ChildSpec]:
        servers.append(WebServer(rt))
        return [ChildSpec("web", servers[-1].run, Restart.TRANSIENT)]

    return board, settings, web, servers


@asynccontextmanager
async def serving(tmp_path: Path, env: dict[str, str] | None = None, **board_kwargs: Any):
    """A node with its web server; leaving the block drains and stops it (the data
    directory stays, so a second `serving(tmp_path)` restarts on the same store)."""
    board, settings, web, servers = await start_server(tmp_path, env, **board_kwargs)
    async with board.running(extra_children=web) as rt:
        token = settings.operator_token_file.read_text().strip()
        yield Server(servers[-1].bound[0], token, rt, settings, servers[-1].app)


async def create_company(server: Server, name: str) -> dict[str, Any]:
    async with server.client() as client:
        response = await client.post("/api/companies", json={"name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def create_token(server: Server, company_id: str, label: str = "test") -> dict[str, Any]:
    async with server.client() as client:
        response = await client.post(f"/api/companies/{company_id}/tokens", json={"label": label})
    assert response.status_code == 201, response.text
    return response.json()


async def submit(
    client: httpx.AsyncClient, company_id: str, job_type: str = "noop", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/companies/{company_id}/content-jobs", json={"jobType": job_type, **fields}
    )
    assert response.status_code == 202, response.text
    return response.json()


async def wait_for(
    predicate: Callable[[], Any | Awaitable[Any]], within: float = 10, interval: float = 0.01
) -> Any:
    """Poll `predicate` (sync or async) until it is truthy; fail after `within` seconds."""
    with trio.fail_after(within):
        while True:
            value = predicate()
            if isinstance(value, Awaitable):
                value = await value
            if value:
                return value
            await trio.sleep(interval)


async def wait_for_status(server: Server, job_id: str, *statuses: str, within: float = 10) -> Any:
    async def reached() -> Any:
        job = await server.rt.store.get_job(job_id)
        return job if str(job.status) in statuses else None

    return await wait_for(reached, within)


def subscribers(server: Server) -> int:
    return server.rt.broker.statistics().subscribers


@dataclass
class Frame:
    """One SSE message as it was on the wire (None: the field was absent)."""

    id: str | None = None
    event: str | None = None
    retry: int | None = None
    data_lines: list[str] = field(default_factory=list)

    @property
    def data(self) -> str:
        return "\n".join(self.data_lines)

    def json(self) -> Any:
        return json.loads(self.data)


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    """The messages of an event-stream response, comments skipped, until it ends."""
    current = Frame()
    touched = False
    async with aclosing(response.aiter_lines()) as lines:
        async for line in lines:
            if line == "":
                if touched:
                    yield current
                current, touched = Frame(), False
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            touched = True
            if name == "id":
                current.id = value
            elif name == "event":
                current.event = value
            elif name == "retry":
                current.retry = int(value)
            elif name == "data":
                current.data_lines.append(value)


class Stream:
    """An open SSE response, read frame by frame.

    A reader task parses the response into a bounded channel. It only ever waits
    inside the network read, so cancelling it unwinds (and so finalizes) every async
    generator httpx nests under `aiter_lines()`; breaking out of one would leave the
    inner ones to the garbage collector, and a ResourceWarning (docs/architecture.md,
    "Stack notes")."""

    def __init__(self, response: httpx.Response, frames: trio.MemoryReceiveChannel[Frame]):
        self.response = response
        self._frames = frames
        self.ended = False

    async def next_raw(self) -> Frame:
        """The next message, `retry:`-only ones included."""
        try:
            return await self._frames.receive()
        except trio.EndOfChannel:
            self.ended = True
            raise StopAsyncIteration from None

    async def next(self) -> Frame:
        """The next message that carries an event (a lone `retry:` one is skipped)."""
        while True:
            frame = await self.next_raw()
            if frame.event is not None or frame.data_lines:
                return frame

    async def rest(self) -> list[Frame]:
        """Every remaining frame until the server ends the response."""
        out = []
        while True:
            try:
                out.append(await self.next())
            except StopAsyncIteration:
                return out

    async def until(self, stop: Callable[[Frame], bool]) -> list[Frame]:
        """Frames up to and including the first one `stop` accepts."""
        out = []
        while True:
            frame = await self.next()
            out.append(frame)
            if stop(frame):
                return out


async def _read(response: httpx.Response, send: trio.MemorySendChannel[Frame]) -> None:
    async with send:
        async for frame in frames(response):
            send.send_nowait(frame)  # never blocks: see Stream


@asynccontextmanager
async def sse(
    client: httpx.AsyncClient,
    url: str,
    *,
    last_event_id: int | str | None = None,
    expect: int = 200,
    buffer: int = 100_000,
    **kwargs: Any,
) -> AsyncIterator[Stream]:
    """GET an SSE route; leaving the block closes the connection (the client vanishes)."""
    headers = dict(kwargs.pop("headers", {}))
    headers.setdefault("Accept", "text/event-stream")
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    async with client.stream("GET", url, headers=headers, **kwargs) as response:
        if response.status_code != expect:
            await response.aread()
            raise AssertionError(f"{url}: {response.status_code} {response.text}")
        send, receive = trio.open_memory_channel[Frame](buffer)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read, response, send)
            try:
                yield Stream(response, receive)
            finally:
                nursery.cancel_scope.cancel()


def job_url(company_id: str, job_id: str) -> str:
    return f"/api/companies/{company_id}/content-jobs/{job_id}"


async def raw_exchange(
    server: Server, method: str, path: str, headers: dict[str, str], body: list[bytes]
) -> tuple[int, bytes]:
    """One request over a bare socket, for what httpx cannot do cleanly: announce a
    body and stop (the server may answer before it has read it, as for a 413)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = h11.Connection(h11.CLIENT)
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        all_headers = [("Host", f"{host}:{port}"), ("Authorization", f"Bearer {server.token}")]
        await stream.send_all(
            conn.send(
                h11.Request(method=method, target=path, headers=[*all_headers, *headers.items()])
            )
        )
        for part in body:
            await stream.send_all(conn.send(h11.Data(data=part)))
        status, content = 0, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                content += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return status, content
