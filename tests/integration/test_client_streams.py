"""The client's stream handling against a tiny fake server that misbehaves on cue:
event streams that drop (reconnect with Last-Event-ID, skip `retry:`-only messages
and replayed duplicates, stop on 204), a deadline kept through pings, and downloads
whose bytes do not match their sha256."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from cli_kit import (
    ASSET_ID,
    COMPANY,
    SSE_HEADERS,
    FakeApi,
    Reply,
    Seen,
    asset_routes,
    fake_api,
    fake_job,
    json_reply,
    sse_event,
)

from callboard.client import AsyncClient, ChecksumMismatch, Client, ConnectionFailed, WaitTimeout
from callboard.jobs import JobEvent

JOB = "7c1e2d3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
EVENTS = f"/api/companies/{COMPANY['id']}/content-jobs/{JOB}/events"


def dropping_stream() -> dict:
    """Three connections: events 1-2 then a drop; a replay of 2 (a duplicate) and 3
    (terminal for this test's purposes is a 204 on the third: the job finished)."""
    queued, running = fake_job(JOB, "queued"), fake_job(JOB, "running")
    progress = fake_job(JOB, "running", 50)

    def events(seen: Seen) -> Reply:
        resume = seen.headers.get("Last-Event-ID")
        if resume is None:
            body = [
                b"retry: 50\n\n",  # a retry:-only message: nothing to yield
                sse_event(1, "content_job.queued", queued),
                b": ping\n\n",
                sse_event(2, "content_job.running", running),
            ]
            return Reply(200, SSE_HEADERS, iter(body))
        if resume == "2":
            body = [sse_event(2, "content_job.running", running)]
            body.append(sse_event(3, "content_job.progress", progress))
            return Reply(200, SSE_HEADERS, iter(body))
        return Reply(204)

    return {
        f"/api/content-jobs/{JOB}": json_reply(running),
        EVENTS: events,
    }


def resumes(api: FakeApi) -> list[str | None]:
    return [s.headers.get("Last-Event-ID") for s in api.seen if s.path == EVENTS]


def test_events_reconnect_with_last_event_id_and_stop_on_204():
    with fake_api(dropping_stream()) as api, Client(api.url, "t") as client:
        with client.events(job=JOB) as events:
            got = [(e.id, str(e.type)) for e in events if isinstance(e, JobEvent)]
    assert got == [
        (1, "content_job.queued"),
        (2, "content_job.running"),
        (3, "content_job.progress"),
    ]
    assert resumes(api) == [None, "2", "3"]


async def _async_reconnects() -> None:
    with fake_api(dropping_stream()) as api:
        async with AsyncClient(api.url, "t") as client, client.events(job=JOB) as events:
            got = [e.id async for e in events if isinstance(e, JobEvent)]
    assert got == [1, 2, 3]
    assert resumes(api) == [None, "2", "3"]


@pytest.mark.trio
async def test_async_events_reconnect_under_trio():
    await _async_reconnects()


@pytest.mark.asyncio
async def test_async_events_reconnect_under_asyncio():
    await _async_reconnects()


def pinging_forever() -> dict:
    """A running job whose stream sends its latest event, then only pings."""
    running = fake_job(JOB, "running", 10)

    def events(seen: Seen) -> Reply:
        def body() -> Iterator[bytes]:
            yield sse_event(5, "content_job.progress", running)
            while True:
                time.sleep(0.1)
                yield b": ping\n\n"

        return Reply(200, SSE_HEADERS, body())

    return {f"/api/content-jobs/{JOB}": json_reply(running), EVENTS: events}


def test_wait_keeps_its_deadline_while_pings_keep_the_stream_alive():
    with fake_api(pinging_forever()) as api, Client(api.url, "t") as client:
        started = time.monotonic()
        with pytest.raises(WaitTimeout, match=rf"job {JOB} is still running after 0\.5s"):
            client.wait(JOB, timeout=0.5)
        assert 0.5 <= time.monotonic() - started < 2


@pytest.mark.trio
async def test_async_wait_timeout_under_trio():
    with fake_api(pinging_forever()) as api:
        async with AsyncClient(api.url, "t") as client:
            started = time.monotonic()
            with pytest.raises(WaitTimeout):
                await client.wait(JOB, timeout=0.3)
            assert time.monotonic() - started < 2


def test_a_stream_that_cannot_come_back_gives_up():
    running = fake_job(JOB, "running")
    calls = []

    def events(seen: Seen) -> Reply:
        calls.append(seen)
        if len(calls) == 1:
            return Reply(200, SSE_HEADERS, iter([sse_event(1, "content_job.running", running)]))
        return Reply(503, {"Content-Type": "application/json"}, b'{"error": {}}')

    routes = {f"/api/content-jobs/{JOB}": json_reply(running), EVENTS: events}
    with fake_api(routes) as api, Client(api.url, "t") as client:
        with client.events(job=JOB, reconnect_for=0.5) as stream:
            assert next(stream).id == 1  # type: ignore[union-attr]
            with pytest.raises(ConnectionFailed, match=r"could not reconnect for 0\.5s"):
                next(stream)
    assert len(calls) >= 3  # it did retry


CONTENT = b"the quarterly report\n" * 100


def test_download_refuses_tampered_bytes_and_leaves_no_file(tmp_path):
    tampered = CONTENT.replace(b"quarterly", b"QUARTERLY")
    with fake_api(asset_routes(CONTENT, tampered)) as api, Client(api.url, "t") as client:
        with pytest.raises(ChecksumMismatch, match="nothing was written") as mismatch:
            client.download(ASSET_ID, tmp_path / "report.txt")
    assert hashlib.sha256(tampered).hexdigest() in mismatch.value.message
    assert list(tmp_path.iterdir()) == []


def test_download_refuses_an_etag_that_is_not_the_recorded_sha256(tmp_path):
    routes = asset_routes(CONTENT, CONTENT, etag="0" * 64)
    with fake_api(routes) as api, Client(api.url, "t") as client:
        with pytest.raises(ChecksumMismatch, match="ETag"):
            client.download(ASSET_ID, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_keeps_matching_bytes_under_the_original_name(tmp_path):
    with fake_api(asset_routes(CONTENT, CONTENT)) as api, Client(api.url, "t") as client:
        done = client.download(ASSET_ID, tmp_path)
    assert done.path == tmp_path / "report.txt" and done.path.read_bytes() == CONTENT
    assert [p.name for p in tmp_path.iterdir()] == ["report.txt"]


@pytest.mark.trio
async def test_async_download_refuses_tampered_bytes_under_trio(tmp_path):
    truncated = CONTENT[:-1]
    with fake_api(asset_routes(CONTENT, truncated)) as api:
        async with AsyncClient(api.url, "t") as client:
            with pytest.raises(ChecksumMismatch, match=f"downloaded {len(truncated)} bytes"):
                await client.download(ASSET_ID, tmp_path / "r.txt")
    assert list(tmp_path.iterdir()) == []
