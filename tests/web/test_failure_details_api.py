"""Failure details over HTTP, on a real Hypercorn: GET, the list, each attempt's SSE
event, and the OpenAPI document."""

from __future__ import annotations

import pytest
import trio
from webkit import job_url, sse, submit, wait_for_status

from callboard.jobs import MAX_TRACEBACK_BYTES

pytestmark = pytest.mark.trio


async def test_get_list_and_every_attempts_event_carry_type_and_traceback(server, company):
    async with server.client() as client:
        job = await submit(
            client,
            company["id"],
            "demo.fail",
            input={"message": "disk on fire"},
            maxAttempts=2,
        )
        url = job_url(company["id"], job["jobId"])
        with trio.fail_after(20):
            async with sse(client, url + "/events", last_event_id=0) as stream:
                frames = await stream.rest()
        got = (await client.get(url)).json()
        listed = (await client.get(f"/api/companies/{company['id']}/content-jobs")).json()
    assert got["status"] == "failed" and got["attempt"] == 2
    assert got["errorMessage"] == "disk on fire"
    assert got["errorType"] == "RuntimeError"
    tb = got["errorTraceback"]
    assert tb.startswith("Traceback (most recent call last):\n")
    assert "in fail" in tb and tb.endswith("RuntimeError: disk on fire\n")
    assert len(tb.encode()) <= MAX_TRACEBACK_BYTES
    [item] = [j for j in listed["items"] if j["id"] == job["jobId"]]
    assert (item["errorType"], item["errorTraceback"]) == ("RuntimeError", tb)
    endings = [f for f in frames if f.event in ("content_job.retrying", "content_job.failed")]
    assert [f.event for f in endings] == ["content_job.retrying", "content_job.failed"]
    for frame in endings:
        data = frame.json()["job"]
        assert data["errorType"] == "RuntimeError"
        assert data["errorTraceback"].endswith("RuntimeError: disk on fire\n")
    queued = frames[0].json()["job"]
    assert queued["errorType"] is None and queued["errorTraceback"] is None


async def test_a_done_or_cancelled_job_has_no_error_details(server, company):
    async with server.client() as client:
        done = await submit(client, company["id"], "noop")
        later = await submit(client, company["id"], "noop", delaySeconds=3600)
        await wait_for_status(server, done["jobId"], "done")
        cancelled = await client.post(job_url(company["id"], later["jobId"]) + "/cancel")
        assert cancelled.status_code == 202, cancelled.text
        for job in (done, later):
            got = (await client.get(job_url(company["id"], job["jobId"]))).json()
            assert got["errorType"] is None and got["errorTraceback"] is None


async def test_the_openapi_document_declares_the_error_fields(server):
    async with server.client() as client:
        doc = (await client.get("/openapi.json")).json()
    fields = doc["components"]["schemas"]["Job"]["properties"]
    for name in ("errorType", "errorTraceback"):
        assert fields[name]["type"] == ["string", "null"]
    assert "mymodule.MyError" in fields["errorType"]["description"]
    assert "16 KiB" in fields["errorTraceback"]["description"]
