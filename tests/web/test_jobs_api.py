"""Submitting, listing, reading, cancelling and retrying jobs over real HTTP."""

from __future__ import annotations

import json
import uuid

import httpx_sse
import pytest
import trio
from webkit import create_company, gate, job_url, serving, sse, submit, wait_for_status

pytestmark = pytest.mark.trio


def jobs_url(company: dict) -> str:
    return f"/api/companies/{company['id']}/content-jobs"


async def test_submit_answers_202_then_sse_follows_the_job_to_done(server, company):
    async with server.client() as client:
        response = await client.post(
            jobs_url(company),
            json={
                "jobType": "test.steps",
                "input": {"steps": 3, "pause": 0.05},
                "sourceTaskId": "task-7",
            },
        )
        assert response.status_code == 202, response.text
        accepted = response.json()
        assert set(accepted) == {"jobId", "status", "createdAt"}
        assert accepted["status"] == "queued"
        url = job_url(company["id"], accepted["jobId"]) + "/events"
        seen = []
        with trio.fail_after(20):
            # Last-Event-ID: 0 replays the job's whole life, then follows it live.
            async with httpx_sse.aconnect_sse(
                client, "GET", url, headers={"Last-Event-ID": "0"}
            ) as source:
                assert source.response.headers["content-type"].startswith("text/event-stream")
                assert source.response.headers["cache-control"] == "no-cache"
                async for event in source.aiter_sse():
                    if event.data:  # the lone `retry:` message has none
                        seen.append(event)
    # The stream closed by itself after the terminal event.
    types = [s.event for s in seen]
    assert types[:2] == ["content_job.queued", "content_job.running"]
    assert types[-1] == "content_job.done"
    assert set(types[2:-1]) == {"content_job.progress"}
    ids = [int(s.id) for s in seen]
    assert ids == sorted(set(ids))
    stored = await server.events_of(job_id=accepted["jobId"])
    assert ids == [e.id for e in stored]
    percents = [json.loads(s.data)["progress"]["percent"] for s in seen]
    assert percents == sorted(percents)
    last = json.loads(seen[-1].data)
    assert last["jobId"] == accepted["jobId"] and last["status"] == "done"
    assert last["job"]["sourceTaskId"] == "task-7"
    assert last["job"]["progress"]["percent"] == 100


async def test_submit_does_not_wait_for_the_handler(server, company):
    name = uuid.uuid4().hex
    async with server.client() as client:
        accepted = await submit(client, company["id"], "test.gate", input={"gate": name})
        assert accepted["status"] == "queued"
        # The handler is still held at its gate: the 202 came back without waiting.
        await wait_for_status(server, accepted["jobId"], "running")
        gate(name).set()
        job = await wait_for_status(server, accepted["jobId"], "done")
        assert job.attempt == 1


async def test_batch_of_1000_in_one_request(server, company):
    specs = [
        {"jobType": "noop", "input": {"i": i}, "delaySeconds": 3600, "sourceTaskId": "bulk"}
        for i in range(1000)
    ]
    before = await server.rt.store.last_event_id()
    async with server.client() as client:
        response = await client.post(jobs_url(company) + "/batch", json={"jobs": specs})
        assert response.status_code == 202, response.text
        accepted = response.json()["jobs"]
        assert len(accepted) == 1000
        assert {a["status"] for a in accepted} == {"queued"}
        assert len({a["jobId"] for a in accepted}) == 1000
        # In the order given.
        first = (await client.get(job_url(company["id"], accepted[0]["jobId"]))).json()
        last = (await client.get(job_url(company["id"], accepted[-1]["jobId"]))).json()
        assert first["input"] == {"i": 0} and last["input"] == {"i": 999}
        # One transaction: every job shares the commit time.
        assert len({a["createdAt"] for a in accepted}) == 1
    counts = await server.rt.counts(company["id"])
    assert sum(counts.values()) == 1000
    assert await server.rt.store.last_event_id() == before + 1000

    async with server.client() as client:
        too_many = await client.post(
            jobs_url(company) + "/batch", json={"jobs": [*specs, specs[0]]}
        )
        empty = await client.post(jobs_url(company) + "/batch", json={"jobs": []})
    for response, got in ((too_many, "1001"), (empty, "0")):
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert "1 to 1000" in message and got in message
    assert sum((await server.rt.counts(company["id"])).values()) == 1000


@pytest.mark.parametrize(
    ("bad", "status", "words"),
    [
        ({"jobType": "noop", "priority": "high"}, 400, ["jobs[7]", "priority"]),
        ({"jobType": "noop", "input": [1]}, 400, ["jobs[7]", "input"]),
        ({"jobType": "noop", "colour": "red"}, 400, ["jobs[7]", "colour"]),
        ({"jobType": "no.such.type"}, 422, ["7", "no.such.type", "noop"]),
        ({"jobType": "noop", "priority": 2**40}, 400, ["7", "priority"]),
        ("not a job", 400, ["jobs[7]", "object"]),
    ],
)
async def test_one_bad_job_rejects_the_whole_batch(server, company, bad, status, words):
    jobs = [{"jobType": "noop", "delaySeconds": 3600} for _ in range(10)]
    jobs[7] = bad
    before = await server.rt.store.last_event_id()
    async with server.client() as client:
        response = await client.post(jobs_url(company) + "/batch", json={"jobs": jobs})
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    for word in words:
        assert word in message, message
    assert sum((await server.rt.counts(company["id"])).values()) == 0
    assert await server.rt.store.last_event_id() == before


async def test_idempotency_key_returns_the_same_job(server, company):
    async with server.client() as client:
        body = {"input": {"n": 1}, "idempotencyKey": "order-42", "delaySeconds": 3600}
        first = await submit(client, company["id"], "noop", **body)
        again = await submit(client, company["id"], "noop", **body)
        batch = await client.post(
            jobs_url(company) + "/batch",
            json={"jobs": [{"jobType": "noop", "idempotencyKey": "order-42"}]},
        )
        other = await submit(client, company["id"], "noop", idempotencyKey="order-43")
        # Keys are per company.
        globex = await create_company(server, "globex")
        elsewhere = await submit(client, globex["id"], "noop", idempotencyKey="order-42")
        assert elsewhere["jobId"] != first["jobId"]
    assert again["jobId"] == first["jobId"]
    assert again["createdAt"] == first["createdAt"]
    assert batch.status_code == 202
    assert batch.json()["jobs"][0]["jobId"] == first["jobId"]
    assert other["jobId"] != first["jobId"]
    page = await server.rt.list(company["id"])
    assert sorted(j.id for j in page.items) == sorted([first["jobId"], other["jobId"]])


async def test_list_filters_and_keyset_pagination_newest_first(server, company):
    submitted = []
    async with server.client() as client:
        for i in range(7):
            job_type = "noop" if i % 2 == 0 else "demo.sleep"
            accepted = await submit(
                client,
                company["id"],
                job_type,
                delaySeconds=3600,
                sourceTaskId=f"task-{i % 3}",
            )
            submitted.append((accepted["jobId"], job_type, f"task-{i % 3}"))
        cancelled = {submitted[1][0], submitted[4][0]}
        for job_id in cancelled:
            response = await client.post(job_url(company["id"], job_id) + "/cancel")
            assert response.status_code == 202

        async def ids(**params) -> list[str]:
            response = await client.get(jobs_url(company), params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            assert set(body) == {"items", "nextCursor"}
            return [item["id"] for item in body["items"]]

        newest_first = [job_id for job_id, _, _ in reversed(submitted)]
        assert await ids() == newest_first
        assert await ids(status="cancelled") == [j for j in newest_first if j in cancelled]
        assert await ids(status="queued") == [j for j in newest_first if j not in cancelled]
        assert await ids(status="done") == []
        assert await ids(jobType="demo.sleep") == [
            job_id for job_id, t, _ in reversed(submitted) if t == "demo.sleep"
        ]
        assert await ids(sourceTaskId="task-1") == [
            job_id for job_id, _, s in reversed(submitted) if s == "task-1"
        ]
        assert await ids(jobType="noop", sourceTaskId="task-0", status="queued") == [
            job_id
            for job_id, t, s in reversed(submitted)
            if t == "noop" and s == "task-0" and job_id not in cancelled
        ]

        # Keyset pages of 3: 3 + 3 + 1, nothing twice, nothing missed.
        pages, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            body = (await client.get(jobs_url(company), params=params)).json()
            pages.append([item["id"] for item in body["items"]])
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [j for page in pages for j in page] == newest_first
        # A job submitted after the first page was read does not shift later pages.
        body = (await client.get(jobs_url(company), params={"limit": 3})).json()
        await submit(client, company["id"], "noop", delaySeconds=3600)
        second = await client.get(
            jobs_url(company), params={"limit": 3, "cursor": body["nextCursor"]}
        )
        assert [item["id"] for item in second.json()["items"]] == newest_first[3:6]
        # A filtered list paginates within the filter.
        page = (await client.get(jobs_url(company), params={"status": "queued", "limit": 2})).json()
        rest = (
            await client.get(
                jobs_url(company),
                params={"status": "queued", "limit": 500, "cursor": page["nextCursor"]},
            )
        ).json()
        queued = [j for j in newest_first if j not in cancelled]
        assert [i["id"] for i in page["items"] + rest["items"]][1:] == queued
        assert rest["nextCursor"] is None


async def test_get_by_company_route_and_by_bare_id(server, company):
    async with server.client() as client:
        accepted = await submit(
            client,
            company["id"],
            "noop",
            input={"x": 1},
            priority=5,
            delaySeconds=3600,
            maxAttempts=3,
            timeoutSeconds=9.5,
            sourceTaskId="t",
            idempotencyKey="k",
        )
        by_company = await client.get(job_url(company["id"], accepted["jobId"]))
        by_id = await client.get(f"/api/content-jobs/{accepted['jobId']}")
    assert by_company.status_code == by_id.status_code == 200
    job = by_company.json()
    assert job == by_id.json()
    assert job["id"] == accepted["jobId"]
    assert job["companyId"] == company["id"]
    assert job["status"] == "queued"
    assert job["createdAt"] == accepted["createdAt"]
    assert (job["input"], job["priority"], job["maxAttempts"], job["timeoutSeconds"]) == (
        {"x": 1},
        5,
        3,
        9.5,
    )
    assert (job["sourceTaskId"], job["idempotencyKey"], job["attempt"]) == ("t", "k", 0)
    assert job["runAt"] > job["createdAt"]
    assert set(job) >= {
        "progress",
        "resultAssetId",
        "errorMessage",
        "startedAt",
        "finishedAt",
        "updatedAt",
    }


async def test_cancel_queued_and_running_jobs_then_409(server, company):
    name = uuid.uuid4().hex
    async with server.client() as client:
        queued = await submit(client, company["id"], "noop", delaySeconds=3600)
        response = await client.post(job_url(company["id"], queued["jobId"]) + "/cancel")
        assert response.status_code == 202
        assert response.json()["status"] == "cancelled"
        assert response.json()["id"] == queued["jobId"]

        running = await submit(client, company["id"], "test.gate", input={"gate": name})
        await wait_for_status(server, running["jobId"], "running")
        response = await client.post(job_url(company["id"], running["jobId"]) + "/cancel")
        assert response.status_code == 202
        assert response.json()["status"] in {"running", "cancelled"}
        job = await wait_for_status(server, running["jobId"], "cancelled")
        assert not gate(name).is_set()  # the handler was cancelled, not released
        assert job.finished_at is not None

        for job_id in (queued["jobId"], running["jobId"]):
            again = await client.post(job_url(company["id"], job_id) + "/cancel")
            assert again.status_code == 409
            error = again.json()["error"]
            assert error["code"] == "conflict"
            assert "cancelled" in error["message"]


async def test_retry_failed_or_cancelled_and_409_otherwise(server, company):
    async with server.client() as client:
        failed = await submit(client, company["id"], "demo.fail", input={"message": "boom"})
        job = await wait_for_status(server, failed["jobId"], "failed")
        assert job.error_message and "boom" in job.error_message
        response = await client.post(job_url(company["id"], failed["jobId"]) + "/retry")
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
        job = await wait_for_status(server, failed["jobId"], "failed")
        assert job.attempt == 2  # a manual retry runs as the next attempt

        cancelled = await submit(client, company["id"], "noop", delaySeconds=3600)
        await client.post(job_url(company["id"], cancelled["jobId"]) + "/cancel")
        response = await client.post(job_url(company["id"], cancelled["jobId"]) + "/retry")
        assert response.status_code == 202
        await wait_for_status(server, cancelled["jobId"], "queued", "running", "done")

        queued = await submit(client, company["id"], "noop", delaySeconds=3600)
        done = await submit(client, company["id"], "noop")
        await wait_for_status(server, done["jobId"], "done")
        for job_id, status in ((queued["jobId"], "queued"), (done["jobId"], "done")):
            response = await client.post(job_url(company["id"], job_id) + "/retry")
            assert response.status_code == 409, response.text
            assert status in response.json()["error"]["message"]
        assert (await server.rt.get(done["jobId"])).attempt == 1


async def test_job_stream_of_a_finished_job_through_httpx_sse(server, company):
    async with server.client() as client:
        accepted = await submit(client, company["id"], "noop")
        await wait_for_status(server, accepted["jobId"], "done")
        async with sse(client, job_url(company["id"], accepted["jobId"]) + "/events") as stream:
            rest = await stream.rest()
    assert [f.event for f in rest] == ["content_job.done"]


async def test_submits_over_the_queue_limit_get_503_and_retry_after(tmp_path, monkeypatch):
    """Backpressure: while more due jobs are queued than CALLBOARD_MAX_QUEUED, submits
    answer 503 with Retry-After and write nothing; delayed jobs are not due and do not
    count, and once the queue drains submits are taken again."""
    from callboard.web import backlog

    monkeypatch.setattr(backlog, "REFRESH_SECONDS", 0.0)  # read the queue on every submit
    async with serving(tmp_path, env={"CALLBOARD_MAX_QUEUED": "3"}, workers=0) as server:
        company = (await create_company(server, "acme"))["id"]
        url = f"/api/companies/{company}/content-jobs"
        async with server.client() as client:
            later = await submit(client, company, delaySeconds=3600)
            queued = [await submit(client, company) for _ in range(3)]
            for answer in (
                await client.post(url, json={"jobType": "noop"}),
                await client.post(f"{url}/batch", json={"jobs": [{"jobType": "noop"}]}),
            ):
                assert answer.status_code == 503, answer.text
                assert answer.headers["Retry-After"] == "1"
                error = answer.json()["error"]
                assert error["code"] == "queue_full"
                assert "CALLBOARD_MAX_QUEUED" in error["message"]
            listed = (await client.get(url, params={"limit": 50})).json()["items"]
            assert len(listed) == 4  # nothing of the refused submits was written
            await client.post(f"{url}/{queued[0]['jobId']}/cancel")
            assert (await client.post(url, json={"jobType": "noop"})).status_code == 202
            metrics = (await client.get("/metrics")).text
            assert "callboard_submits_refused_total 2.0" in metrics
        assert later["status"] == "queued"
        assert server.app.extensions["callboard"].backlog.refused == 2


async def test_clients_slow_to_send_their_bodies_hold_no_submit_turn(tmp_path):
    """Submits take turns on a node with workers, but a turn is taken only once the
    body has arrived: clients that announce a body and stall cannot block others."""
    from callboard.web.backlog import SUBMIT_TURNS

    async with serving(tmp_path, workers=2) as server:
        company = (await create_company(server, "acme"))["id"]
        host, port = server.url.removeprefix("http://").rsplit(":", 1)
        request = (
            f"POST /api/companies/{company}/content-jobs HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {server.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100\r\n\r\n" + '{"jobType":'
        ).encode()
        stalled = []
        try:
            for _ in range(SUBMIT_TURNS + 2):
                stream = await trio.open_tcp_stream(host, int(port))
                stalled.append(stream)
                await stream.send_all(request)  # and never the rest of the body
            async with server.client() as client:
                with trio.fail_after(10):
                    answer = await client.post(
                        f"/api/companies/{company}/content-jobs", json={"jobType": "noop"}
                    )
            assert answer.status_code == 202, answer.text
        finally:
            for stream in stalled:
                await stream.aclose()
