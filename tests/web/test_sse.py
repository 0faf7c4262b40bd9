"""The SSE contract over a real Hypercorn server: per-job streams, company and operator
feeds, Last-Event-ID resume (replay + live, no gap, no duplicate), stream.gap after
pruning, resume across a restart, many clients, vanished clients, slow clients."""

from __future__ import annotations

import gc
import uuid
from datetime import timedelta

import httpx
import pytest
import trio
from webkit import (
    Frame,
    create_company,
    gate,
    job_url,
    serving,
    sse,
    submit,
    subscribers,
    wait_for,
    wait_for_status,
)

from callboard import JobSpec
from callboard.errors import StoreUnavailable

pytestmark = pytest.mark.trio

JOB_EVENT = "content_job."


def feed_url(company_id: str) -> str:
    return f"/api/companies/{company_id}/events"


def ids(frames: list[Frame]) -> list[int]:
    return [int(f.id) for f in frames if f.event and f.event.startswith(JOB_EVENT)]


def assert_sse_headers(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"


async def test_job_stream_resends_the_latest_event_then_follows_to_the_end(server, company):
    name = uuid.uuid4().hex
    async with server.client() as client:
        job = await submit(client, company["id"], "test.gate", input={"gate": name})

        async def at_the_gate():
            latest = await server.rt.store.latest_event(job["jobId"])
            return latest if latest and latest.type == "content_job.progress" else None

        latest = await wait_for(at_the_gate)
        with trio.fail_after(10):
            async with sse(client, job_url(company["id"], job["jobId"]) + "/events") as stream:
                assert_sse_headers(stream.response)
                first = await stream.next_raw()
                # The job's latest event, re-sent as it was, carrying retry: as well.
                assert first.retry == 3000
                assert (first.id, first.event) == (str(latest.id), "content_job.progress")
                assert first.json() == latest.to_dict()
                assert first.json()["job"]["status"] == "running"
                gate(name).set()
                rest = await stream.rest()
                assert stream.ended  # the server ended it after the terminal event
    stored = await server.events_of(job_id=job["jobId"])
    assert ids(rest) == [e.id for e in stored if e.id > latest.id]
    assert rest[-1].event == "content_job.done"
    assert rest[-1].json()["job"]["status"] == "done"


async def test_finished_job_stream_last_event_id_and_204(server, company):
    async with server.client() as client:
        job = await submit(client, company["id"], "noop")
        await wait_for_status(server, job["jobId"], "done")
        stored = await server.events_of(job_id=job["jobId"])
        assert [e.type for e in stored] == [
            "content_job.queued",
            "content_job.running",
            "content_job.done",
        ]
        first, last = stored[0].id, stored[-1].id
        url = job_url(company["id"], job["jobId"]) + "/events"

        async with sse(client, url) as stream:
            frames = await stream.rest()
        assert [(f.id, f.event, f.retry) for f in frames] == [(str(last), "content_job.done", 3000)]

        async def get(header: int | None = None, query: int | None = None) -> httpx.Response:
            headers = {} if header is None else {"Last-Event-ID": str(header)}
            params = {} if query is None else {"lastEventId": str(query)}
            return await client.get(url, headers=headers, params=params)

        # A reconnect after the last event: 204 tells the browser to stop.
        for response in (await get(header=last), await get(query=last)):
            assert response.status_code == 204 and response.content == b""
        # After an earlier id: the rest, then the end.
        replay = await get(header=first)
        assert_sse_headers(replay)
        assert replay.text.count("event: ") == 2
        assert f"id: {stored[1].id}\n" in replay.text and f"id: {last}\n" in replay.text
        # The header wins over a stale ?lastEventId= (a browser repeats it on reconnect).
        assert (await get(header=last, query=first)).status_code == 204
        newer = await get(header=first, query=last)
        assert newer.status_code == 200 and newer.text.count("event: ") == 2


async def test_company_and_operator_feeds(server, company):
    other = await create_company(server, "globex")
    async with server.client() as client:
        async with (
            sse(client, feed_url(company["id"])) as feed,
            sse(client, "/api/events") as ops,
        ):
            for stream in (feed, ops):
                assert_sse_headers(stream.response)
                assert (await stream.next_raw()).retry == 3000
            # The first message goes out once the subscription is live.
            assert subscribers(server) == 2
            # The other company's (delayed) job first: its event precedes all of the next.
            await submit(client, other["id"], "noop", delaySeconds=3600)
            job = await submit(client, company["id"], "noop")

            def done(f: Frame) -> bool:
                return f.event == "content_job.done"

            company_frames = await feed.until(done)
            # Up to the job's worker.idle, then up to the next runtime.stats.
            ops_frames = await ops.until(lambda f: f.event == "worker.idle")
            ops_frames += await ops.until(lambda f: f.event == "runtime.stats")

            # Only this company's job events reach its feed, each with its id.
            assert [f.event for f in company_frames] == [
                "content_job.queued",
                "content_job.running",
                "content_job.done",
            ]
            assert {f.json()["jobId"] for f in company_frames} == {job["jobId"]}
            stored = await server.events_of(company_id=company["id"])
            assert ids(company_frames) == [e.id for e in stored]

            # The operator feed: every company's job events, plus worker.* and
            # runtime.stats, which carry no id.
            job_frames = [f for f in ops_frames if f.event.startswith(JOB_EVENT)]
            assert all(f.id is not None for f in job_frames)
            assert {f.json()["companyId"] for f in job_frames} == {company["id"], other["id"]}
            node = [f for f in ops_frames if not f.event.startswith(JOB_EVENT)]
            assert all(f.id is None for f in node)
            busy = [f.json() for f in node if f.event == "worker.busy"]
            idle = [f.json() for f in node if f.event == "worker.idle"]
            assert [b["jobId"] for b in busy] == [job["jobId"]]
            assert busy[0]["jobType"] == "noop" and busy[0]["companyId"] == company["id"]
            assert [i["jobId"] for i in idle] == [job["jobId"]]
            assert idle[0]["worker"] == busy[0]["worker"]
            stats = ops_frames[-1].json()
            assert stats["counts"]["done"] == 1 and stats["counts"]["queued"] == 1
            assert stats["subscribers"] == 2
            assert {"jobsPerSecond", "node", "eventsPublished"} <= set(stats)
            assert stats["workers"]["total"] == 4

            # After a runtime.stats went out, the company feed still has only job events.
            second = await submit(client, company["id"], "noop")
            frames = await feed.until(lambda f: done(f) and f.json()["jobId"] == second["jobId"])
            assert all(f.event.startswith(JOB_EVENT) for f in frames)


async def test_resume_replays_exactly_the_missed_events_while_new_ones_arrive(
    tmp_path, monkeypatch
):
    async with serving(tmp_path, workers=0) as server:
        company = await create_company(server, "acme")
        other = await create_company(server, "globex")
        rt, store = server.rt, server.rt.store
        start = await store.last_event_id()
        await rt.submit_many(company["id"], [JobSpec("noop", {"i": i}) for i in range(1200)])
        original = store.events_after
        pages = 0

        async def during_replay(after_id, **kwargs):
            """Each replay page is read, then new events are published before the page
            is delivered: they reach the live buffer and later replay pages both."""
            nonlocal pages
            page = await original(after_id, **kwargs)
            pages += 1
            if pages <= 3:
                for target in (company["id"], other["id"]):
                    await rt.submit_many(target, [JobSpec("noop", {"wave": pages})] * 40)
            return page

        monkeypatch.setattr(store, "events_after", during_replay)
        async with server.client() as client:
            with trio.fail_after(30):
                async with sse(client, feed_url(company["id"]), last_event_id=start) as stream:
                    frames = [await stream.next() for _ in range(1200 + 3 * 40)]
                    assert pages >= 3
                    monkeypatch.setattr(store, "events_after", original)
                    expected = await original(start, company_id=company["id"], limit=10_000)
                    assert ids(frames) == [e.id for e in expected]
                    # Nothing further is queued up (no duplicate after the end): the
                    # next frame is a new event.
                    sentinel = await rt.submit(company["id"], "noop")
                    following = await stream.next()
                    assert following.json()["jobId"] == sentinel.id
                    assert int(following.id) > int(frames[-1].id)


async def test_stream_gap_when_resuming_from_a_pruned_id(server, company):
    async with server.client() as client:
        jobs = [await submit(client, company["id"], "noop") for _ in range(3)]
        for job in jobs:
            await wait_for_status(server, job["jobId"], "done")
        before = await server.events_of(company_id=company["id"])
        assert len(before) == 9
        pruned = await server.rt.store.prune_events(server.rt.now() + timedelta(seconds=1))
        assert pruned == 6  # every event but each job's latest
        through = await server.rt.store.pruned_through()
        held = await server.events_of(company_id=company["id"])
        assert [e.type for e in held] == ["content_job.done"] * 3
        oldest = before[0].id
        assert oldest < through

        async with sse(client, feed_url(company["id"]), last_event_id=oldest) as stream:
            gap = await stream.next_raw()
            assert (gap.event, gap.id, gap.retry) == ("stream.gap", None, 3000)
            assert gap.json()["lastEventId"] == oldest
            assert gap.json()["prunedThrough"] == through
            assert "reload" in gap.json()["message"]
            replay = [await stream.next() for _ in held]
            assert ids(replay) == [e.id for e in held]
            live = await submit(client, company["id"], "noop", delaySeconds=3600)
            assert (await stream.next()).json()["jobId"] == live["jobId"]

        # From the pruned-through id on, or from 0 (everything still held): no gap.
        for resume in (through, 0):
            async with sse(client, feed_url(company["id"]), last_event_id=resume) as stream:
                first = await stream.next()
                assert first.event == "content_job.done"
                assert int(first.id) == min(e.id for e in held if e.id > resume)

        # The per-job stream of a finished job: the gap, the job's last event, the end.
        url = job_url(company["id"], jobs[0]["jobId"]) + "/events"
        async with sse(client, url, last_event_id=oldest) as stream:
            frames = await stream.rest()
        assert [f.event for f in frames] == ["stream.gap", "content_job.done"]


async def test_resume_after_the_server_restarts_mid_run_loses_nothing(tmp_path):
    kwargs = {"lease_seconds": 1, "shutdown_grace": 0.05}
    seen: list[Frame] = []
    async with serving(tmp_path, **kwargs) as first:
        company = await create_company(first, "acme")
        async with first.client() as client:
            job = await submit(
                client,
                company["id"],
                "test.steps",
                input={"steps": 6, "pause": 0.2},
                maxAttempts=2,
            )
            url = job_url(company["id"], job["jobId"]) + "/events"
            async with sse(client, url, last_event_id=0) as stream:
                seen += await stream.until(lambda f: f.event == "content_job.progress")
                async with trio.open_nursery() as nursery:

                    async def read_to_the_end() -> None:
                        seen.extend(await stream.rest())

                    nursery.start_soon(read_to_the_end)
                    # Stop the node mid-run: the stream ends without a terminal event.
                    nursery.start_soon(first.rt.drain, 0.05)
    assert seen[-1].event != "content_job.done"
    assert [f.event for f in seen[:2]] == ["content_job.queued", "content_job.running"]

    async with serving(tmp_path, **kwargs) as second:
        async with second.client() as client:
            with trio.fail_after(20):
                async with sse(client, url, last_event_id=seen[-1].id) as stream:
                    seen += await stream.rest()  # ends after the terminal event
        stored = await second.events_of(job_id=job["jobId"])
    assert ids(seen) == [e.id for e in stored]
    assert seen[-1].event == "content_job.done"
    assert seen[-1].json()["job"]["attempt"] == 2
    assert "content_job.retrying" in [f.event for f in seen]


async def test_100_concurrent_clients_all_get_every_event(server, company):
    clients, jobs = 100, 10
    start = await server.rt.store.last_event_id()
    results: dict[int, list[Frame]] = {}
    ready = trio.Semaphore(0)
    async with server.client(limits=httpx.Limits(max_connections=200)) as client:

        async def listen(n: int) -> None:
            async with sse(client, feed_url(company["id"])) as stream:
                await stream.next_raw()  # subscribed from here on
                ready.release()
                done: set[str] = set()
                frames = []
                while len(done) < jobs:
                    frame = await stream.next()
                    frames.append(frame)
                    if frame.event == "content_job.done":
                        done.add(frame.json()["jobId"])
                results[n] = frames

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for n in range(clients):
                    nursery.start_soon(listen, n)
                for _ in range(clients):
                    await ready.acquire()
                assert subscribers(server) == clients
                response = await client.post(
                    f"/api/companies/{company['id']}/content-jobs/batch",
                    json={"jobs": [{"jobType": "noop"}] * jobs},
                )
                assert response.status_code == 202
    expected = [e.id for e in await server.rt.store.events_after(start, limit=10_000)]
    assert len(expected) == 3 * jobs
    assert len(results) == clients
    for frames in results.values():
        assert ids(frames) == expected
    await wait_for(lambda: subscribers(server) == 0)


async def test_200_clients_that_vanish_leave_no_subscriber(server, company):
    connected = trio.Semaphore(0)
    leave = trio.Event()
    async with server.client(limits=httpx.Limits(max_connections=250)) as client:

        async def visit(n: int) -> None:
            url = feed_url(company["id"]) if n % 2 else "/api/events"
            async with sse(client, url) as stream:
                await stream.next_raw()
                connected.release()
                if n % 4 < 2:
                    await leave.wait()  # then hangs up
                else:
                    await trio.sleep_forever()  # until cancelled mid-read

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for n in range(200):
                    nursery.start_soon(visit, n)
                for _ in range(200):
                    await connected.acquire()
                assert subscribers(server) == 200
                leave.set()
                await wait_for(lambda: subscribers(server) == 100)
                nursery.cancel_scope.cancel()
            await wait_for(lambda: subscribers(server) == 0)
            # The node still serves streams.
            async with sse(client, feed_url(company["id"])) as stream:
                await stream.next_raw()
                assert subscribers(server) == 1
                job = await submit(client, company["id"], "noop", delaySeconds=3600)
                assert (await stream.next()).json()["jobId"] == job["jobId"]
    await wait_for(lambda: subscribers(server) == 0)


async def test_slow_client_is_dropped_and_resumes_without_loss(tmp_path, monkeypatch):
    async with serving(tmp_path, workers=0) as server:
        company = await create_company(server, "acme")
        start = await server.rt.store.last_event_id()
        monkeypatch.setattr(server.rt.broker, "default_buffer", 8)
        seen: list[Frame] = []
        async with server.client() as client:
            with trio.fail_after(15):
                async with sse(client, feed_url(company["id"])) as stream:
                    await stream.next_raw()
                    # One batch publishes 30 events with no checkpoint in between: the
                    # subscriber's 8-event buffer overflows whatever the client reads.
                    response = await client.post(
                        f"/api/companies/{company['id']}/content-jobs/batch",
                        json={"jobs": [{"jobType": "noop"}] * 30},
                    )
                    assert response.status_code == 202
                    seen += await stream.rest()
                    assert stream.ended  # the server ended the response
                # What was buffered (8), plus the one its reader was already waiting for.
                assert 8 <= len(seen) <= 9
                stats = server.rt.broker.statistics()
                assert stats.dropped == 1
                assert stats.subscribers == 0
                # The browser reconnects with the last id it saw; the replay fills in.
                async with sse(client, feed_url(company["id"]), last_event_id=seen[-1].id) as s:
                    seen += [await s.next() for _ in range(30 - len(seen))]
        expected = await server.rt.store.events_after(start, limit=100)
        assert ids(seen) == [e.id for e in expected]
        assert len(expected) == 30


async def test_sse_never_answers_503_while_the_store_is_down(server, company, monkeypatch):
    back = trio.Event()
    original = server.rt.store.get_company

    async def unavailable(company_id):
        if not back.is_set():
            raise StoreUnavailable("the database is down (test)")
        return await original(company_id)

    monkeypatch.setattr(server.rt.store, "get_company", unavailable)
    async with server.client() as client:
        # A plain API call says so with a 503 ...
        response = await client.get(f"/api/companies/{company['id']}/content-jobs")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_unavailable"
        # ... but a stream opens and waits: a browser would give up for good on a 503.
        with trio.fail_after(15):
            async with sse(client, feed_url(company["id"])) as stream:
                assert_sse_headers(stream.response)
                assert (await stream.next_raw()).retry == 3000
                assert subscribers(server) == 0
                back.set()
                await wait_for(lambda: subscribers(server) == 1)
                job = await submit(client, company["id"], "noop", delaySeconds=3600)
                frame = await stream.next()
                assert (frame.event, frame.json()["jobId"]) == ("content_job.queued", job["jobId"])


async def test_clients_hanging_up_mid_replay_leave_nothing_behind(tmp_path):
    """Clients that go while the server is between two frames (suspended at a yield,
    or blocked writing): every generator of the response must be closed there and
    then, releasing the subscription; none may be left to the garbage collector (a
    ResourceWarning, an error here)."""
    async with serving(tmp_path, workers=0) as server:
        company = await create_company(server, "acme")
        await server.rt.submit_many(company["id"], [JobSpec("noop", {"text": "x" * 2000})] * 300)
        async with server.client() as client:
            with trio.fail_after(20):
                for n in range(40):
                    async with sse(client, feed_url(company["id"]), last_event_id=0) as stream:
                        for _ in range(n % 4):
                            await stream.next()
                    await wait_for(lambda: subscribers(server) == 0)
        gc.collect()


async def test_a_fresh_feed_starts_at_the_head_and_says_so(server, company):
    """Without Last-Event-ID a feed's first message carries the store's current head as
    `id:` (no data): a client that drops before its first event resumes from there."""
    async with server.client() as client:
        done = await submit(client, company["id"], "noop")
        await wait_for_status(server, done["jobId"], "done")
        head = await server.rt.store.last_event_id()
        assert head > 0
        for url in (f"/api/companies/{company['id']}/events", "/api/events"):
            async with sse(client, url) as stream:
                first = await stream.next_raw()
            assert (first.retry, first.id, first.data_lines) == (3000, str(head), [])


async def test_the_client_takes_the_head_from_an_id_only_message():
    from httpx_sse import ServerSentEvent

    from callboard.client._core import Follow

    follow = Follow("http://x", "/api/events", per_job=False, last_event_id=None, reconnect_for=1)
    assert follow.accept(ServerSentEvent(event="message", data="", id="41", retry=3000)) is None
    assert follow.last_id == 41 and follow.retry == 3.0
    assert follow.headers()["Last-Event-ID"] == "41"
