"""Filters of several statuses and of creation time, the operator's list of every
company, bulk retry and cancel, and the prune of finished jobs, over real HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from webkit import create_company, create_token, gate, submit, wait_for_status

from callboard.jobs import iso

pytestmark = pytest.mark.trio


def jobs_url(company: dict) -> str:
    return f"/api/companies/{company['id']}/content-jobs"


async def failed_jobs(server, client, company: dict, n: int) -> list[str]:
    ids = [(await submit(client, company["id"], "demo.fail"))["jobId"] for _ in range(n)]
    for job_id in ids:
        await wait_for_status(server, job_id, "failed")
    return ids


async def test_a_list_takes_several_statuses_repeated_or_comma_separated(server, company):
    async with server.client() as client:
        [failed] = await failed_jobs(server, client, company, 1)
        queued = (await submit(client, company["id"], delaySeconds=3600))["jobId"]
        cancelled = (await submit(client, company["id"], delaySeconds=3600))["jobId"]
        assert (await client.post(f"{jobs_url(company)}/{cancelled}/cancel")).status_code == 202

        async def ids(params) -> list[str]:
            response = await client.get(jobs_url(company), params=params)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert await ids([("status", "queued"), ("status", "failed")]) == [queued, failed]
        assert await ids({"status": "queued,cancelled"}) == [cancelled, queued]
        assert await ids([("status", "failed,cancelled"), ("status", "queued")]) == [
            cancelled,
            queued,
            failed,
        ]
        response = await client.get(jobs_url(company), params={"status": "queued,bogus"})
        assert response.status_code == 400
        assert "bogus" in response.json()["error"]["message"]
        response = await client.get(jobs_url(company), params={"status": "queued,"})
        assert response.status_code == 400


async def test_a_list_by_creation_time(server, company):
    async with server.client() as client:
        first = (await submit(client, company["id"], delaySeconds=3600))["jobId"]
        job = await server.rt.store.get_job(first)
        between = iso(job.created_at + timedelta(microseconds=1))
        second = (await submit(client, company["id"], delaySeconds=3600))["jobId"]

        async def ids(**params) -> list[str]:
            response = await client.get(jobs_url(company), params=params)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert await ids(createdAfter=between) == [second]
        assert await ids(createdBefore=between) == [first]
        assert await ids(createdAfter=iso(job.created_at)) == [second, first]
        hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
        assert await ids(createdBefore=hour_ago) == []  # no zone: UTC
        for bad in ({"createdAfter": "yesterday"}, {"createdBefore": ""}):
            response = await client.get(jobs_url(company), params=bad)
            assert response.status_code == 400, bad
        # A window holding no time matches nothing.
        assert await ids(createdAfter=between, createdBefore=between) == []


async def test_the_operator_lists_every_company_at_once(server, company):
    other = await create_company(server, "other")
    async with server.client() as client:
        mine = (await submit(client, company["id"], delaySeconds=3600))["jobId"]
        theirs = (await submit(client, other["id"], delaySeconds=3600))["jobId"]
        response = await client.get("/api/content-jobs", params={"status": "queued"})
        assert response.status_code == 200, response.text
        assert [item["id"] for item in response.json()["items"]] == [theirs, mine]
        page = (await client.get("/api/content-jobs", params={"limit": 1})).json()
        assert [item["id"] for item in page["items"]] == [theirs]
        rest = await client.get("/api/content-jobs", params={"cursor": page["nextCursor"]})
        assert [item["id"] for item in rest.json()["items"]] == [mine]
        # The POST-only paths beside a job's answer a GET with 405, not "no such job".
        for path in ("/api/content-jobs/prune", f"{jobs_url(company)}/bulk-retry"):
            response = await client.get(path)
            assert response.status_code == 405, path
            assert "POST" in response.headers["allow"]
    token = await create_token(server, company["id"])
    async with server.client(token["token"]) as client:
        assert (await client.get("/api/content-jobs")).status_code == 403


async def test_bulk_retry_dry_run_counts_then_retries_only_what_applies(server, company):
    async with server.client() as client:
        failed = await failed_jobs(server, client, company, 3)
        queued = (await submit(client, company["id"], delaySeconds=3600))["jobId"]
        url = f"{jobs_url(company)}/bulk-retry"
        response = await client.post(url, json={"status": ["failed", "queued"], "dryRun": True})
        assert response.status_code == 200, response.text
        assert response.json() == {
            "action": "retry",
            "dryRun": True,
            "matched": 4,
            "eligible": 3,
            "applied": 0,
            "stopping": 0,
            "changed": 0,
            "skipped": {"queued": 1},
        }
        for job_id in failed:  # a dry run changed nothing
            assert str((await server.rt.get(job_id)).status) == "failed"
        response = await client.post(url, json={"status": "failed", "jobType": "demo.fail"})
        assert response.status_code == 200, response.text
        report = response.json()
        assert (report["matched"], report["applied"], report["skipped"]) == (3, 3, {})
        for job_id in failed:
            job = await wait_for_status(server, job_id, "failed")  # ran again, failed again
            assert job.attempt == 2
        assert str((await server.rt.get(queued)).status) == "queued"
        # Nothing of another type matches.
        response = await client.post(url, json={"jobType": "noop"})
        assert response.json()["matched"] == 1 and response.json()["applied"] == 0


async def test_bulk_cancel_stops_running_jobs_and_skips_ended_ones(server, company):
    async with server.client() as client:
        running = (await submit(client, company["id"], "test.gate", input={"gate": "bulk"}))[
            "jobId"
        ]
        await wait_for_status(server, running, "running")
        queued = [(await submit(client, company["id"], delaySeconds=60))["jobId"] for _ in range(2)]
        [failed] = await failed_jobs(server, client, company, 1)
        response = await client.post(f"{jobs_url(company)}/bulk-cancel", json={})
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["matched"] == 4 and report["eligible"] == 3
        assert report["applied"] == 3 and report["stopping"] == 1
        assert report["skipped"] == {"failed": 1}
        for job_id in (running, *queued):
            await wait_for_status(server, job_id, "cancelled")
        assert str((await server.rt.get(failed)).status) == "failed"
    gate("bulk").set()


async def test_bulk_actions_are_bounded_by_the_token_and_the_time(server, company):
    other = await create_company(server, "other")
    async with server.client() as client:
        mine = await failed_jobs(server, client, company, 1)
        theirs = await failed_jobs(server, client, other, 1)
    token = await create_token(server, company["id"])
    async with server.client(token["token"]) as client:
        # Another company's path is not found; the every-company routes are the operator's.
        response = await client.post(f"{jobs_url(other)}/bulk-retry", json={})
        assert response.status_code == 404
        assert (await client.post("/api/content-jobs/bulk-retry", json={})).status_code == 403
        assert (await client.post("/api/content-jobs/bulk-cancel", json={})).status_code == 403
        future = iso(datetime.now(UTC) + timedelta(hours=1))
        response = await client.post(
            f"{jobs_url(company)}/bulk-retry", json={"createdAfter": future}
        )
        assert response.json()["matched"] == 0
        response = await client.post(f"{jobs_url(company)}/bulk-retry", json={})
        assert response.json()["applied"] == 1
    await wait_for_status(server, mine[0], "queued", "running", "failed")
    assert (await server.rt.get(mine[0])).attempt >= 1
    assert str((await server.rt.get(theirs[0])).status) == "failed"
    async with server.client() as client:  # the operator: every company
        response = await client.post("/api/content-jobs/bulk-retry", json={"dryRun": True})
        assert response.status_code == 200
        assert response.json()["matched"] >= 1


@pytest.mark.parametrize(
    "body",
    [
        {"status": "bogus"},
        {"status": []},
        {"status": [1]},
        {"jobType": ""},
        {"dryRun": "yes"},
        {"createdAfter": "soon"},
        {"createdBefore": 5},
        {"extra": 1},
        [],
    ],
)
async def test_bulk_bodies_are_checked(server, company, body):
    async with server.client() as client:
        response = await client.post(f"{jobs_url(company)}/bulk-retry", json=body)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["message"]
        # No body is an empty filter; a JSON null is not an object.
        nothing = await client.post(f"{jobs_url(company)}/bulk-retry", content=b"null")
        assert nothing.status_code == 400


async def test_prune_deletes_finished_jobs_with_their_events(server, company):
    async with server.client() as client:
        failed = await failed_jobs(server, client, company, 2)
        queued = (await submit(client, company["id"], delaySeconds=3600))["jobId"]
        response = await client.post(
            "/api/content-jobs/prune", json={"olderThanSeconds": 3600, "dryRun": True}
        )
        assert response.status_code == 200, response.text
        assert response.json()["matched"] == 0  # they finished just now
        response = await client.post(
            "/api/content-jobs/prune", json={"olderThanSeconds": 0, "dryRun": True}
        )
        assert (response.json()["matched"], response.json()["deleted"]) == (2, 0)
        response = await client.post("/api/content-jobs/prune", json={"olderThanSeconds": 0})
        assert (response.json()["matched"], response.json()["deleted"]) == (2, 2)
        for job_id in failed:
            assert (await client.get(f"/api/content-jobs/{job_id}")).status_code == 404
            assert await server.events_of(job_id=job_id) == []
        assert (await client.get(f"/api/content-jobs/{queued}")).status_code == 200
        for bad in ({}, {"olderThanSeconds": -1}, {"olderThanSeconds": "1d"}, {"dryRun": True}):
            response = await client.post("/api/content-jobs/prune", json=bad)
            assert response.status_code == 400, bad
    token = await create_token(server, company["id"])
    async with server.client(token["token"]) as client:
        response = await client.post("/api/content-jobs/prune", json={"olderThanSeconds": 0})
        assert response.status_code == 403
