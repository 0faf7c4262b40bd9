"""`callboard.client` against a real `callboard serve` process: the sync `Client`, and
the `AsyncClient` under trio and under asyncio (each test carries its own marker)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from serve_process import ServeProcess, serve

from callboard import JobSpec, JobStatus
from callboard.client import (
    AsyncClient,
    Client,
    ClientError,
    Conflict,
    ConnectionFailed,
    InvalidRequest,
    NotFound,
    Submitted,
    Unauthorized,
    WaitTimeout,
)
from callboard.jobs import JobEvent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    with serve(tmp_path_factory.mktemp("client"), "--workers", "4") as s:
        with Client(s.url, s.token) as client:
            client.create_company("acme")
            client.create_company("zeta")
        yield s


@pytest.fixture
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.url, server.token) as c:
        yield c


def test_submit_wait_get_and_history(client: Client):
    submitted = client.submit(
        "acme", "demo.sleep", {"seconds": 0.3}, source_task_id="task-1", priority=5
    )
    assert isinstance(submitted, Submitted) and submitted.status is JobStatus.QUEUED
    job = client.wait(submitted.job_id, timeout=30)
    assert job.status is JobStatus.DONE and job.progress.percent == 100
    assert job.source_task_id == "task-1" and job.priority == 5
    assert client.get(job.id) == job

    history = client.history(job.id)
    types = [str(e.type) for e in history]
    assert types[:2] == ["content_job.queued", "content_job.running"]
    assert types[-1] == "content_job.done" and "content_job.progress" in types
    assert [e.id for e in history] == sorted(e.id for e in history)
    assert all(e.job_id == job.id for e in history)
    # A terminal job waits no more.
    assert client.wait(job.id, timeout=0.001) == job


def test_companies_by_name_id_or_alone_and_lists_follow_the_cursor(client: Client):
    company_id = client.company_id("acme")
    assert client.company_id(company_id) == company_id
    # No company named: only a token that sees a single one may leave it out.
    with pytest.raises(InvalidRequest, match="this token sees acme, zeta"):
        client.company_id(None)
    task = f"task-{uuid.uuid4()}"
    batch = client.submit_many(
        company_id,
        [JobSpec("noop", source_task_id=task) for _ in range(4)]
        + [{"jobType": "demo.fail", "input": {"message": "boom"}, "sourceTaskId": task}],
    )
    assert len(batch) == 5
    for submitted in batch:
        client.wait(submitted.job_id, timeout=30)
    listed = list(client.list("acme", source_task_id=task, page_size=2))  # three pages
    # Three pages, no job twice; newest first (a batch shares one creation time).
    assert sorted(job.id for job in listed) == sorted(s.job_id for s in batch)
    assert [job.created_at for job in listed] == sorted(
        (job.created_at for job in listed), reverse=True
    )
    # Without a company: every company's jobs, merged newest first.
    failed = list(client.list(None, status="failed", source_task_id=task))
    assert [job.error_message for job in failed] == ["boom"]
    assert [j.job_type for j in client.list(job_type="noop", source_task_id=task)] == ["noop"] * 4


def test_server_errors_are_typed(server: ServeProcess, client: Client):
    with pytest.raises(NotFound) as missing:
        client.get(str(uuid.uuid4()))
    assert missing.value.status == 404 and missing.value.code == "not_found"
    with pytest.raises(NotFound, match="no company named"):
        client.submit("no-such-company", "noop")

    with pytest.raises(InvalidRequest) as unknown:
        client.submit("acme", "no.such.type")
    assert unknown.value.status == 422 and "known job types" in unknown.value.message
    with pytest.raises(InvalidRequest) as bad:
        client.submit("acme", "noop", priority="high")  # type: ignore[arg-type]
    assert bad.value.status == 400 and "priority" in bad.value.message

    done = client.wait(client.submit("acme", "noop").job_id, timeout=30)
    with pytest.raises(Conflict) as conflict:
        client.cancel(done.id)
    assert conflict.value.status == 409
    with pytest.raises(Conflict):
        client.retry(done.id)

    with Client(server.url, "cb_000000000000_nope") as stranger, pytest.raises(Unauthorized):
        stranger.companies()
    with Client("http://127.0.0.1:9", "x") as nowhere, pytest.raises(ConnectionFailed) as down:
        nowhere.get(done.id)
    assert down.value.status == 0 and down.value.message.startswith("cannot reach")
    assert all(issubclass(e, ClientError) for e in (NotFound, Conflict, WaitTimeout))


def test_cancel_retry_and_wait_timeout(client: Client):
    job = client.submit("acme", "demo.sleep", {"seconds": 30})
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as late:
        client.wait(job.job_id, timeout=0.5)
    assert 0.5 <= time.monotonic() - started < 5
    assert isinstance(late.value, TimeoutError) and job.job_id in late.value.message
    client.cancel(job.job_id)
    assert client.wait(job.job_id, timeout=30).status is JobStatus.CANCELLED
    assert client.retry(job.job_id).status is JobStatus.QUEUED
    client.cancel(job.job_id)
    assert client.wait(job.job_id, timeout=30).status is JobStatus.CANCELLED


def test_events_replay_from_an_id_then_follow(client: Client):
    job = client.wait(client.submit("acme", "noop").job_id, timeout=30)
    first, *rest = client.history(job.id)
    # The company feed after the job's first event: the rest of its events, in order.
    seen: list[JobEvent] = []
    with client.events(company="acme", last_event_id=first.id) as events:
        for event in events:
            assert isinstance(event, JobEvent)
            if event.job_id == job.id:
                seen.append(event)
            if event.terminal and event.job_id == job.id:
                break
    assert [e.id for e in seen] == [e.id for e in rest]
    # One job's stream ends by itself after its terminal event.
    with client.events(job=job.id, last_event_id=0) as events:
        assert [e.id for e in events] == [first.id] + [e.id for e in rest]
    # The operator feed (no company) carries job events too.
    with client.events(last_event_id=first.id - 1) as events:
        assert next(e for e in events if isinstance(e, JobEvent)).id == first.id


def test_a_company_token_acts_on_its_own_company(server: ServeProcess, client: Client):
    secret = client.create_token("zeta", "tests")["token"]
    with Client(server.url, secret) as scoped:
        assert [c["name"] for c in scoped.companies()] == ["zeta"]
        job = scoped.wait(scoped.submit(None, "noop").job_id, timeout=30)  # its only company
        assert job.company_id == client.company_id("zeta")
        # Without a company: its own feed (the operator feed answers 403 to it).
        with scoped.events(last_event_id=0) as events:
            assert next(iter(events)).company_id == job.company_id  # type: ignore[union-attr]
        with pytest.raises(NotFound):
            scoped.submit("acme", "noop")


async def _async_round_trip(server: ServeProcess) -> None:
    async with AsyncClient(server.url, server.token) as client:
        submitted = await client.submit("acme", "demo.sleep", {"seconds": 0.2})
        job = await client.wait(submitted.job_id, timeout=30)
        assert job.status is JobStatus.DONE
        async with client.events(job=job.id, last_event_id=0) as events:
            types = [str(event.type) async for event in events]
        assert types[0] == "content_job.queued" and types[-1] == "content_job.done"
        assert [e.id for e in await client.history(job.id)] == sorted(
            e.id for e in await client.history(job.id)
        )
        listed = [j.id async for j in client.list("acme", job_type="demo.sleep", page_size=1)]
        assert job.id in listed
        slow = await client.submit("acme", "demo.sleep", {"seconds": 30})
        with pytest.raises(WaitTimeout):
            await client.wait(slow.job_id, timeout=0.3)
        assert (await client.cancel(slow.job_id)).id == slow.job_id
        with pytest.raises(NotFound):
            await client.get(str(uuid.uuid4()))
        many = await client.submit_many("acme", [JobSpec("noop"), JobSpec("noop")])
        assert len(many) == 2


@pytest.mark.trio
async def test_async_client_under_trio(server: ServeProcess):
    await _async_round_trip(server)


@pytest.mark.asyncio
async def test_async_client_under_asyncio(server: ServeProcess):
    await _async_round_trip(server)


# --- assets (the asset routes of the HTTP API) -------------------------------


def test_upload_then_download_verifies_the_sha256(client: Client, tmp_path):
    source = tmp_path / "notes.txt"
    source.write_bytes(b"callboard " * 10_000)
    asset = client.upload(source, "acme")
    assert asset.byte_size == 100_000 and asset.namespace == "uploads"
    assert asset.original_filename == "notes.txt"
    done = client.download(asset.id, tmp_path / "copy.txt")
    assert done.path.read_bytes() == source.read_bytes() and done.asset == asset
    # A directory target keeps the original name; the company is found by the client.
    (tmp_path / "out").mkdir()
    assert client.download(asset.id, tmp_path / "out").path == tmp_path / "out" / "notes.txt"
    # Storage on the disk hands out no presigned URL: redirect=True gets the bytes here.
    direct = client.download(asset.id, tmp_path / "out" / "direct.txt", redirect=True)
    assert direct.path.read_bytes() == source.read_bytes()
    assert asset.id in [a.id for a in client.assets("acme")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.txt", "notes.txt", "out"]


async def _async_assets(server: ServeProcess, tmp_path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(bytes(range(256)) * 1000)
    async with AsyncClient(server.url, server.token) as client:
        asset = await client.upload(source, "acme")
        done = await client.download(asset.id, tmp_path / "b.bin")
        assert done.path.read_bytes() == source.read_bytes()
        assert asset.id in [a.id async for a in client.assets("acme", page_size=1)]


@pytest.mark.trio
async def test_async_assets_under_trio(server: ServeProcess, tmp_path):
    await _async_assets(server, tmp_path)


@pytest.mark.asyncio
async def test_async_assets_under_asyncio(server: ServeProcess, tmp_path):
    await _async_assets(server, tmp_path)
