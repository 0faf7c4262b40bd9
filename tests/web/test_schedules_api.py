"""Schedules over real HTTP, on SQLite and on PostgreSQL: create, list, read, change,
pause and resume, delete; every refusal; company tokens kept to their own company;
and the jobs a schedule makes, with scheduleId and scheduledFor on the wire."""

from __future__ import annotations

import uuid

import pytest
from webkit import create_company, create_token, serving, wait_for

from callboard.jobs import parse_iso

pytestmark = pytest.mark.trio


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request) -> dict[str, str] | None:
    # A plain fixture: the PostgreSQL one runs its own asyncio loop to make the database.
    if request.param == "postgres":
        return {"CALLBOARD_DATABASE_URL": request.getfixturevalue("pg_url")}
    return None


@pytest.fixture
async def server(database_env, tmp_path):
    async with serving(tmp_path, database_env) as s:
        yield s


def url(company: dict, schedule_id: str | None = None) -> str:
    base = f"/api/companies/{company['id']}/schedules"
    return base if schedule_id is None else f"{base}/{schedule_id}"


async def test_create_list_get_patch_delete(server, company):
    async with server.client() as client:
        response = await client.post(
            url(company),
            json={
                "name": "nightly",
                "jobType": "noop",
                "input": {"report": "daily"},
                "cron": "30 2 * * *",
                "timezone": "Europe/Paris",
                "priority": 5,
                "maxAttempts": 3,
                "timeoutSeconds": 60,
                "catchUp": "once",
            },
        )
        assert response.status_code == 201, response.text
        made = response.json()
        assert {
            "id",
            "companyId",
            "name",
            "jobType",
            "input",
            "cron",
            "every",
            "timezone",
            "nextRunAt",
            "lastRunAt",
            "lastJobId",
            "paused",
            "createdAt",
        } <= set(made)
        assert made["companyId"] == company["id"] and made["cron"] == "30 2 * * *"
        assert made["every"] is None and made["timezone"] == "Europe/Paris"
        assert made["catchUp"] == "once" and made["maxAttempts"] == 3
        assert made["lastRunAt"] is None and made["lastJobId"] is None and not made["paused"]
        assert parse_iso(made["nextRunAt"]) > server.rt.now()

        listed = (await client.get(url(company))).json()
        assert [s["id"] for s in listed["items"]] == [made["id"]] and listed["nextCursor"] is None
        assert (await client.get(url(company, made["id"]))).json() == made

        paused = await client.patch(url(company, made["id"]), json={"paused": True})
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] and paused.json()["nextRunAt"] is None
        resumed = (await client.patch(url(company, made["id"]), json={"paused": False})).json()
        assert not resumed["paused"] and resumed["nextRunAt"] is not None
        every = (await client.patch(url(company, made["id"]), json={"every": 3600})).json()
        assert every["cron"] is None and every["every"] == 3600
        cleared = (await client.patch(url(company, made["id"]), json={"maxAttempts": None})).json()
        assert cleared["maxAttempts"] is None

        gone = await client.delete(url(company, made["id"]))
        assert gone.status_code == 204
        assert (await client.get(url(company, made["id"]))).status_code == 404
        assert (await client.delete(url(company, made["id"]))).status_code == 404


async def test_a_schedule_makes_jobs_with_its_id_and_tick(server, company):
    async with server.client() as client:
        made = (
            await client.post(
                url(company),
                json={"name": "pulse", "jobType": "noop", "every": 1, "input": {"a": 1}},
            )
        ).json()

        async def two_jobs():
            page = (
                await client.get(f"/api/companies/{company['id']}/content-jobs?jobType=noop")
            ).json()
            return page["items"] if len(page["items"]) >= 2 else None

        jobs = await wait_for(two_jobs, within=10, interval=0.1)
        ticks = sorted(parse_iso(j["scheduledFor"]) for j in jobs)
        assert all(j["scheduleId"] == made["id"] and j["input"] == {"a": 1} for j in jobs)
        assert len(set(ticks)) == len(ticks)
        for job in jobs:
            late = parse_iso(job["createdAt"]) - parse_iso(job["scheduledFor"])
            assert late.total_seconds() < 1.0
        one = (await client.get(f"/api/content-jobs/{jobs[0]['id']}")).json()
        assert one["scheduleId"] == made["id"] and one["scheduledFor"] == jobs[0]["scheduledFor"]
        after = (await client.get(url(company, made["id"]))).json()
        assert after["lastJobId"] is not None and after["lastRunAt"] is not None


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "x", "jobType": "noop", "cron": "61 * * * *"}, 422, "invalid cron"),
        ({"name": "x", "jobType": "noop", "cron": "* * *"}, 422, "5 fields"),
        (
            {"name": "x", "jobType": "noop", "cron": "0 3 * * *", "timezone": "Nowhere/X"},
            422,
            "timezone",
        ),
        ({"name": "x", "jobType": "no.such.type", "every": 5}, 422, "unknown job type"),
        ({"name": "x", "jobType": "noop", "every": 0.5}, 400, "every must be"),
        ({"name": "x", "jobType": "noop", "every": "5"}, 400, "every must be"),
        ({"name": "x", "jobType": "noop"}, 400, "either cron"),
        ({"name": "x", "jobType": "noop", "every": 5, "cron": "* * * * *"}, 400, "either cron"),
        ({"name": "x", "jobType": "noop", "every": 5, "catchUp": "all"}, 400, "catchUp"),
        ({"name": "x", "jobType": "noop", "every": 5, "colour": "red"}, 400, "unknown field"),
        ({"jobType": "noop", "every": 5}, 400, "name is required"),
        ({"name": " ", "jobType": "noop", "every": 5}, 400, "schedule name"),
        ({"name": "x", "jobType": "noop", "every": 5, "input": []}, 400, "input must be"),
        ({"name": "x", "jobType": "noop", "every": 5, "maxAttempts": 0}, 400, "maxAttempts"),
        ({"name": "x", "jobType": "noop", "every": 5, "paused": "yes"}, 400, "paused"),
    ],
)
async def test_bad_schedules_are_refused_and_nothing_is_written(
    server, company, body, status, words
):
    async with server.client() as client:
        response = await client.post(url(company), json=body)
        assert response.status_code == status, response.text
        assert words in response.json()["error"]["message"]
        assert (await client.get(url(company))).json()["items"] == []


async def test_names_are_unique_within_a_company(server, company):
    other = await create_company(server, "other")
    body = {"name": "nightly", "jobType": "noop", "cron": "0 3 * * *"}
    async with server.client() as client:
        assert (await client.post(url(company), json=body)).status_code == 201
        again = await client.post(url(company), json=body)
        assert again.status_code == 409 and again.json()["error"]["code"] == "schedule_exists"
        assert (await client.post(url(other), json=body)).status_code == 201
        second = (await client.post(url(company), json={**body, "name": "second"})).json()
        clash = await client.patch(url(company, second["id"]), json={"name": "nightly"})
        assert clash.status_code == 409


async def test_bad_patches(server, company):
    async with server.client() as client:
        made = (
            await client.post(url(company), json={"name": "s", "jobType": "noop", "every": 60})
        ).json()
        for body, status in [
            ({}, 400),
            ({"every": None}, 400),
            ({"name": None}, 400),
            ({"cron": "nope"}, 422),
            ({"timezone": "Mars/Base"}, 422),
            ({"jobType": "no.such.type"}, 422),
            ({"id": "x"}, 400),
        ]:
            response = await client.patch(url(company, made["id"]), json=body)
            assert response.status_code == status, (body, response.text)
        assert (await client.get(url(company, made["id"]))).json() == made
        for bad in ("not-a-uuid", str(uuid.uuid4())):
            assert (await client.get(url(company, bad))).status_code == 404
            assert (await client.patch(url(company, bad), json={"paused": True})).status_code == 404


async def test_company_tokens_manage_only_their_own_schedules(server, company):
    other = await create_company(server, "other")
    token = (await create_token(server, company["id"]))["token"]
    async with server.client() as operator:
        theirs = (
            await operator.post(url(other), json={"name": "t", "jobType": "noop", "every": 60})
        ).json()
    async with server.client(token) as client:
        mine = await client.post(url(company), json={"name": "m", "jobType": "noop", "every": 60})
        assert mine.status_code == 201
        mine_id = mine.json()["id"]
        assert (await client.patch(url(company, mine_id), json={"paused": True})).status_code == 200
        assert (await client.get(url(other))).status_code == 404
        assert (await client.get(url(other, theirs["id"]))).status_code == 404
        # Another company's schedule under this company's path: not found either.
        assert (await client.get(url(company, theirs["id"]))).status_code == 404
        assert (await client.delete(url(company, theirs["id"]))).status_code == 404
        assert (
            await client.post(url(other), json={"name": "z", "jobType": "noop", "every": 60})
        ).status_code == 404
        assert (await client.delete(url(company, mine_id))).status_code == 204
    async with server.client() as operator:
        assert (await operator.get(url(other, theirs["id"]))).status_code == 200


async def test_list_pages(server, company):
    async with server.client() as client:
        for i in range(5):
            response = await client.post(
                url(company), json={"name": f"s{i}", "jobType": "noop", "every": 3600}
            )
            assert response.status_code == 201
        first = (await client.get(url(company), params={"limit": 2})).json()
        assert len(first["items"]) == 2 and first["nextCursor"]
        seen = [s["name"] for s in first["items"]]
        cursor = first["nextCursor"]
        while cursor:
            page = (await client.get(url(company), params={"limit": 2, "cursor": cursor})).json()
            seen += [s["name"] for s in page["items"]]
            cursor = page["nextCursor"]
        assert sorted(seen) == [f"s{i}" for i in range(5)]
        assert (await client.get(url(company), params={"limit": 0})).status_code == 400
        assert (await client.get(url(company), params={"cursor": "x"})).status_code == 400
        assert (await client.get(url(company), params={"colour": "x"})).status_code == 400
