"""Job results over HTTP, on a real Hypercorn: GET, lists, the SSE done event (a job's
stream and the feeds), the AsyncClient's wait, and the OpenAPI document."""

from __future__ import annotations

import uuid

import pytest
import trio
from webkit import gate, job_url, sse, submit, wait_for_status

from callboard.client import AsyncClient

pytestmark = pytest.mark.trio

#: Text that SSE framing and JSON escaping must both carry: line breaks of every kind,
#: NUL, quotes, astral characters.
VALUE = {
    "title": 'Résumé ✓ 漢字 🎉 "quoted"',
    "lines": "one\ntwo\r\nthree\rfour\u2028five\u0085six\x00",
    "pages": [1, 2.5, None, True, {"deep": ["x" * 1000]}],
    "order": {"z": 1, "a": 2},
}


async def test_get_lists_and_the_done_event_carry_the_result(server, company):
    name = uuid.uuid4().hex
    async with server.client() as client:
        job = await submit(
            client, company["id"], "test.result", input={"gate": name, "value": VALUE}
        )
        url = job_url(company["id"], job["jobId"])
        assert (await client.get(url)).json()["result"] is None  # not done yet
        with trio.fail_after(10):
            async with (
                sse(client, url + "/events") as own,
                sse(client, f"/api/companies/{company['id']}/events") as feed,
                sse(client, "/api/events") as operator,
            ):
                # Every stream is subscribed once it sent its first frame (retry:).
                for stream in (own, feed, operator):
                    await stream.next_raw()
                gate(name).set()
                frames = await own.rest()
                is_done = lambda f: f.event == "content_job.done"  # noqa: E731
                feed_done = (await feed.until(is_done))[-1]
                operator_done = (await operator.until(is_done))[-1]
        assert frames[-1].event == "content_job.done"
        for frame in (frames[-1], feed_done, operator_done):
            assert frame.json()["job"]["result"] == VALUE
            assert list(frame.json()["job"]["result"]["order"]) == ["z", "a"]
        assert all(f.json()["job"]["result"] is None for f in frames[:-1])
        got = (await client.get(url)).json()
        assert got["status"] == "done" and got["result"] == VALUE
        listed = (await client.get(f"/api/companies/{company['id']}/content-jobs")).json()
        [item] = [j for j in listed["items"] if j["id"] == job["jobId"]]
        assert item["result"] == VALUE


async def test_nothing_returned_is_null_and_a_refused_result_fails_the_job(server, company):
    async with server.client() as client:
        quiet = await submit(client, company["id"], "test.result")
        refused = await submit(client, company["id"], "test.result", input={"notJson": True})
        await wait_for_status(server, quiet["jobId"], "done")
        await wait_for_status(server, refused["jobId"], "failed")
        got = (await client.get(job_url(company["id"], quiet["jobId"]))).json()
        assert "result" in got and got["result"] is None
        failed = (await client.get(job_url(company["id"], refused["jobId"]))).json()
    assert failed["result"] is None
    assert failed["errorMessage"] == (
        "the result is not JSON: Object of type set is not JSON serializable (at result['tags'])"
    )


async def test_the_async_clients_wait_returns_the_result(server, company):
    name = uuid.uuid4().hex
    async with AsyncClient(server.url, server.token) as client:
        submitted = await client.submit(
            company["id"], "test.result", {"gate": name, "value": VALUE}
        )
        async with trio.open_nursery() as nursery:
            # Opened once the job is running, so wait() follows its stream to the end.
            async def open_gate() -> None:
                await wait_for_status(server, submitted.job_id, "running")
                gate(name).set()

            nursery.start_soon(open_gate)
            job = await client.wait(submitted.job_id, timeout=10)
        assert job.status == "done" and job.result == VALUE
        assert (await client.get(job.id)).result == VALUE


async def test_the_openapi_job_has_every_field_a_job_has(server, company):
    async with server.client() as client:
        job = await submit(client, company["id"], "test.result", input={"value": [1]})
        await wait_for_status(server, job["jobId"], "done")
        got = (await client.get(job_url(company["id"], job["jobId"]))).json()
        doc = (await client.get("/openapi.json")).json()
    schema = doc["components"]["schemas"]["Job"]
    assert set(schema["properties"]) == set(got)
    assert "CALLBOARD_RESULT_MAX_BYTES" in schema["properties"]["result"]["description"]
