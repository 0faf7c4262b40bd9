"""No client hangs when the server answers before the body has arrived: a body sent a
moment after the headers, on every route and method that can answer early (401, 404,
405, 413, 400), and then the next request on the same keep-alive connection."""

from __future__ import annotations

import re
import uuid

import h11
import httpx
import pytest
import trio
from webkit import Server, create_company

from callboard.web.early_answers import EarlyAnswerGuard

pytestmark = pytest.mark.trio

LATE = 0.05
BODY = b'{"jobType": "noop", "input": {}}'


def concrete(rule: str) -> str:
    return re.sub(r"<[^>]+>", lambda _: str(uuid.uuid4()), rule)


def routes(server: Server) -> list[tuple[str, str]]:
    """Every (path, method) with a body, and one method each path does not have."""
    out = []
    for rule in server.app.url_map.iter_rules():
        if not rule.rule.startswith(("/api", "/healthz", "/readyz", "/metrics")):
            continue
        path = concrete(rule.rule)
        methods = set(rule.methods or ()) - {"HEAD", "OPTIONS"}
        out.extend((path, m) for m in sorted(methods & {"POST", "PUT", "PATCH", "DELETE"}))
        out.append((path, "PATCH" if "PATCH" not in methods else "PUT"))
    return sorted(set(out))


async def read_response(stream: trio.SocketStream, conn: h11.Connection) -> h11.Response:
    response = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            return response


async def late_body_then_reuse(server: Server, method: str, path: str, token: str | None):
    """Headers, a pause, the body; then GET /healthz on the same connection. Returns
    both statuses, or the first status and None when the server closed the connection
    (it said so with Connection: close)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    conn = h11.Connection(h11.CLIENT)
    headers = [
        ("Host", f"{host}:{port}"),
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(BODY))),
    ]
    if token is not None:
        headers.append(("Authorization", f"Bearer {token}"))
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        await stream.send_all(conn.send(h11.Request(method=method, target=path, headers=headers)))
        await trio.sleep(LATE)
        await stream.send_all(conn.send(h11.Data(data=BODY)) + conn.send(h11.EndOfMessage()))
        first = await read_response(stream, conn)
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return first.status_code, None
        conn.start_next_cycle()
        await stream.send_all(
            conn.send(h11.Request(method="GET", target="/healthz", headers=[("Host", host)]))
            + conn.send(h11.EndOfMessage())
        )
        second = await read_response(stream, conn)
        return first.status_code, second.status_code


@pytest.mark.parametrize("with_token", [False, True], ids=["no token", "operator"])
async def test_a_late_body_never_hangs_the_connection(server: Server, with_token):
    token = server.token if with_token else None
    seen = []
    for path, method in routes(server):
        with trio.fail_after(5):
            first, second = await late_body_then_reuse(server, method, path, token)
        seen.append((method, path, first, second))
        assert second == 200, (method, path, first)
    statuses = {first for _, _, first, _ in seen}
    # A method a path lacks is 405 before any token is looked at.
    assert statuses == ({401, 405} if not with_token else statuses | {404, 405})


async def test_an_oversized_body_gets_its_413_every_time_on_a_kept_alive_client(
    server: Server, company
):
    """As a plain synchronous httpx.Client sends it (httpx under trio would leave its
    request stream unfinished when the server answers early, a client-side warning)."""
    url = f"{server.url}/api/companies/{company['id']}/content-jobs"
    too_big = b'{"jobType": "noop", "input": {"x": "' + b"a" * (1024 * 1024) + b'"}}'
    auth = {"Authorization": f"Bearer {server.token}", "Content-Type": "application/json"}

    def rounds() -> list[int]:
        statuses = []
        with httpx.Client(headers=auth, timeout=httpx.Timeout(5)) as client:
            for _ in range(5):
                for bad in (b"{", b'{"jobType": 1}', b"[]"):
                    statuses.append(client.post(url, content=bad).status_code)
                statuses.append(client.post(url, content=too_big).status_code)
                statuses.append(client.post(url, json={"jobType": "noop"}).status_code)
        return statuses

    assert await trio.to_thread.run_sync(rounds) == [400, 400, 400, 413, 202] * 5


async def test_a_company_route_reused_after_an_early_answer_still_works(server: Server):
    company = await create_company(server, "late")
    path = f"/api/companies/{company['id']}/content-jobs"
    with trio.fail_after(5):
        first, second = await late_body_then_reuse(server, "POST", path, server.token)
    assert (first, second) == (202, 200)


async def test_a_405_says_which_methods_the_path_has(server: Server):
    async with server.client() as client:
        answer = await client.request("TRACE", "/api/companies")
        assert answer.status_code == 405
        assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
        answer = await client.delete("/healthz")
        assert answer.status_code == 405
        assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


async def test_http2_is_refused_on_the_plain_listener(server: Server):
    """Hypercorn's HTTP/2 crashes on an early answer; the node speaks HTTP/1.1 only."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    async with await trio.open_tcp_stream(host, int(port)) as stream:
        # The prior-knowledge preface, then an empty SETTINGS frame.
        await stream.send_all(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
        )
        answer = b""
        with trio.move_on_after(5):
            while chunk := await stream.receive_some(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 "), answer[:40]  # not an HTTP/2 SETTINGS frame
    async with server.client() as client:
        assert (await client.get("/healthz")).status_code == 200
        upgraded = await client.get(
            "/healthz", headers={"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c"}
        )
        assert upgraded.status_code == 200 and upgraded.http_version == "HTTP/1.1"
    restarts = [c.restarts for c in server.rt.statistics().supervisor.children if c.name == "web"]
    assert restarts == [0]


async def test_a_connection_closing_under_an_early_answer_ends_it_quietly():
    """Hypercorn's close sends its EOF outside the lock its sends take, so the last
    write of an answer that closes the connection may meet it: that answer just ends.
    A collision on an answer that keeps the connection is a bug, and is raised."""

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 413, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive():
        await trio.sleep_forever()

    async def colliding_send(message):
        await trio.lowlevel.checkpoint()
        if message["type"] == "http.response.body":
            raise trio.BusyResourceError("another task is currently sending data")

    chunked = {"type": "http", "headers": [(b"transfer-encoding", b"chunked")]}
    # A chunked body is never drained: the answer closes the connection, quietly.
    await EarlyAnswerGuard(app)(chunked, receive, colliding_send)
    # A request without a body keeps its connection: the collision is raised.
    with pytest.raises(trio.BusyResourceError):
        await EarlyAnswerGuard(app)({"type": "http", "headers": []}, receive, colliding_send)
