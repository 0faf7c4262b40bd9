"""The submit routes in plain ASGI (`web/submits.py`) answer exactly as the Quart views
do: every request below is sent twice to one real server, once through the plain
route (with the Quart views made to record any call) and once with the plain route
taken out, and the two answers must be the same in status, headers and body."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio
from webkit import Server, create_company, create_token, raw_exchange, serving

ORIGIN = "https://app.example"
_ID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CREATED = re.compile(rb'"createdAt":"[^"]*"')
VIEWS = ("jobs.submit_one", "jobs.submit_batch")

pytestmark = pytest.mark.trio


@pytest.fixture
async def server(tmp_path) -> AsyncIterator[Server]:
    async with serving(tmp_path, {"CALLBOARD_CORS_ORIGINS": ORIGIN}) as s:
        yield s


@contextmanager
def quart_views_recorded(server: Server) -> Iterator[list[str]]:
    """The submit views, each recording that it was called before it runs."""
    calls: list[str] = []
    views = server.app.view_functions
    saved = {name: views[name] for name in VIEWS}

    def recording(name: str) -> Any:
        async def view(**kwargs: Any) -> Any:
            calls.append(name)
            return await saved[name](**kwargs)

        return view

    for name in VIEWS:
        views[name] = recording(name)
    try:
        yield calls
    finally:
        views.update(saved)


@contextmanager
def without_plain_route(server: Server) -> Iterator[None]:
    plain = server.app.asgi_app
    server.app.asgi_app = plain.app
    try:
        yield
    finally:
        server.app.asgi_app = plain


def _comparable(response: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = [(k, v) for k, v in response.headers.multi_items() if k != "date"]
    body = _CREATED.sub(b'"createdAt":"T"', _ID.sub(b"ID", response.content))
    return response.status_code, headers, body


async def test_the_plain_route_answers_as_the_quart_views_do(server: Server) -> None:
    acme = (await create_company(server, "acme"))["id"]
    other = (await create_company(server, "other"))["id"]
    other_token = (await create_token(server, other))["token"]
    jobs = f"/api/companies/{acme}/content-jobs"
    other_auth = f"Bearer {other_token}"

    cases: list[tuple[str, dict[str, Any]]] = [
        (jobs, {"json": {"jobType": "noop"}, "headers": {"Origin": ORIGIN}}),
        (jobs, {"json": {"jobType": "noop"}, "headers": {"Origin": "https://evil.example"}}),
        (jobs, {"json": {"jobType": "noop", "input": {"a": 1}, "priority": 3}}),
        (jobs, {"json": {"jobType": "noop"}, "headers": {"Authorization": ""}}),
        (jobs, {"json": {"jobType": "noop"}, "headers": {"Authorization": "Bearer nope"}}),
        (jobs, {"json": {"jobType": "noop"}, "headers": {"Authorization": "Basic abc"}}),
        (
            jobs,
            {"json": {"jobType": "noop"}, "headers": {"Authorization": "Bearer cb_0123456789ab_x"}},
        ),
        (
            jobs,
            {"json": {"jobType": "noop"}, "headers": {"Authorization": other_auth}},
        ),
        (jobs, {"content": b'{"jobType":'}),
        (jobs, {"content": b"[1]"}),
        (jobs, {"content": b""}),
        (jobs, {"json": {"jobType": "nope"}}),
        (jobs, {"json": {"jobType": "noop", "bogus": 1}}),
        (jobs, {"json": {"jobType": "noop", "maxAttempts": "x"}}),
        (f"{jobs}/batch", {"json": {"jobs": [{"jobType": "noop"}, {"jobType": "noop"}]}}),
        (f"{jobs}/batch", {"json": {"jobs": []}, "headers": {"Origin": ORIGIN}}),
        (f"{jobs}/batch", {"json": {"jobType": "noop"}}),
        (f"{jobs}/", {"json": {"jobType": "noop"}}),
        ("/api/companies/not-a-uuid/content-jobs", {"json": {"jobType": "noop"}}),
        (f"/api/companies/{'0' * 8}-0000-0000-0000-{'0' * 12}/content-jobs", {"json": {}}),
    ]
    answers: dict[str, list[tuple[int, list[tuple[str, str]], bytes]]] = {}
    view_calls: dict[str, list[str]] = {}
    for way in ("plain", "quart"):
        with quart_views_recorded(server) as calls:
            async with server.client() as client:
                for path, kwargs in cases:
                    if way == "plain":
                        response = await client.post(path, **kwargs)
                    else:
                        with without_plain_route(server):
                            response = await client.post(path, **kwargs)
                    answers.setdefault(way, []).append(_comparable(response))
                # Bodies over the limit: the server answers before it has read them all.
                big = [b" " * 65536] * 17
                for headers, body in (
                    ({"Content-Length": str(17 * 65536)}, []),
                    ({"Transfer-Encoding": "chunked"}, big),
                ):
                    if way == "plain":
                        status, content = await raw_exchange(server, "POST", jobs, headers, body)
                    else:
                        with without_plain_route(server):
                            status, content = await raw_exchange(
                                server, "POST", jobs, headers, body
                            )
                    answers[way].append((status, [], content))
        view_calls[way] = calls
    for plain, quart in zip(answers["plain"], answers["quart"], strict=True):
        assert plain == quart
    statuses = [status for status, _, _ in answers["plain"]]
    assert statuses == [
        *(202, 202, 202, 401, 401, 401, 401, 404, 400, 400, 400),
        *(422, 400, 400, 202, 400, 400, 404, 404, 404, 413, 413),
    ]
    # The plain route served every submit; only the path it does not match reached Quart.
    assert view_calls["plain"] == []
    one, batch = "jobs.submit_one", "jobs.submit_batch"
    assert view_calls["quart"] == [*[one] * 14, *[batch] * 3, *[one] * 4]
    page = await server.rt.list(acme, None, limit=100)
    assert len(page.items) == 2 * (3 + 2)  # three single submits and a batch of 2, twice


async def test_an_unexpected_error_is_a_logged_500(server: Server, monkeypatch, caplog) -> None:
    acme = (await create_company(server, "acme"))["id"]

    async def broken(company_id: str, specs: list) -> list:
        raise RuntimeError("the disk is on fire")

    monkeypatch.setattr(server.rt, "submit_many", broken)
    with caplog.at_level(logging.ERROR, logger="callboard.web"):
        async with server.client() as client:
            response = await client.post(
                f"/api/companies/{acme}/content-jobs", json={"jobType": "noop"}
            )
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal", "message": "internal server error"}}
    assert "the disk is on fire" not in response.text
    (record,) = [r for r in caplog.records if r.getMessage().startswith("unhandled error")]
    assert record.getMessage() == f"unhandled error on POST /api/companies/{acme}/content-jobs"
    assert record.exc_info is not None and "the disk is on fire" in str(record.exc_info[1])


async def test_a_client_gone_before_its_body_arrived_submits_nothing(server: Server) -> None:
    acme = (await create_company(server, "acme"))["id"]
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"jobType": "noop"}'
    stream = await trio.open_tcp_stream(host, int(port))
    await stream.send_all(
        (
            f"POST /api/companies/{acme}/content-jobs HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {server.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[:-3]
    )
    await stream.aclose()
    # The node goes on serving, and what it wrote is the one whole submit after it.
    async with server.client() as client:
        response = await client.post(
            f"/api/companies/{acme}/content-jobs", json={"jobType": "noop"}
        )
    assert response.status_code == 202
    page = await server.rt.list(acme, None, limit=10)
    assert [job.id for job in page.items] == [response.json()["jobId"]]
