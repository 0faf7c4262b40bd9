"""Fair share over HTTP: a company's cap on its running jobs (PATCH and GET
/api/companies/{c}), refused values, the cap holding on a real node, and each
company's running and queued counts in /api/stats."""

from __future__ import annotations

import pytest
from webkit import create_company, create_token, gate, submit, wait_for, wait_for_status

pytestmark = pytest.mark.trio


async def test_patch_sets_and_lifts_the_cap(server, company):
    path = f"/api/companies/{company['id']}"
    async with server.client() as client:
        got = await client.get(path)
        assert got.status_code == 200 and got.json() == {**company, "maxRunning": None}
        patched = await client.patch(path, json={"maxRunning": 3})
        assert patched.status_code == 200, patched.text
        assert patched.json() == {**company, "maxRunning": 3}
        assert (await client.get(path)).json()["maxRunning"] == 3
        listed = (await client.get("/api/companies")).json()["items"]
        assert [c["maxRunning"] for c in listed] == [3]
        # JSON's 2.0 is the integer 2, as everywhere else in the API (and the schema).
        assert (await client.patch(path, json={"maxRunning": 2.0})).json()["maxRunning"] == 2
        lifted = await client.patch(path, json={"maxRunning": None})
        assert lifted.status_code == 200 and lifted.json()["maxRunning"] is None
    assert (await server.rt.get_company(company["id"])).max_running is None


@pytest.mark.parametrize(
    "body",
    [
        {"maxRunning": 0},
        {"maxRunning": -4},
        {"maxRunning": 1.5},
        {"maxRunning": "5"},
        {"maxRunning": True},
        {"maxRunning": 10**7},
        {},
        {"maxRunning": 5, "name": "renamed"},
        [5],
    ],
)
async def test_patch_refuses_bad_values_and_changes_nothing(server, company, body):
    path = f"/api/companies/{company['id']}"
    async with server.client() as client:
        await client.patch(path, json={"maxRunning": 7})
        response = await client.patch(path, json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_request" and error["message"]
        assert (await client.get(path)).json()["maxRunning"] == 7


async def test_patch_is_for_the_operator_and_known_companies(server, company):
    own = (await create_token(server, company["id"]))["token"]
    path = f"/api/companies/{company['id']}"
    async with server.client(token=own) as client:
        assert (await client.patch(path, json={"maxRunning": 1})).status_code == 403
        # A company sees its own cap.
        assert (await client.get(path)).json()["maxRunning"] is None
    async with server.client() as client:
        missing = "/api/companies/00000000-0000-4000-8000-000000000000"
        assert (await client.patch(missing, json={"maxRunning": 1})).status_code == 404
        assert (await client.get(missing)).status_code == 404
        assert (await client.get("/api/companies/not-an-id")).status_code == 404


async def test_the_cap_holds_on_a_node_and_stats_show_each_company(server, company):
    other = await create_company(server, "globex")
    a, b = company["id"], other["id"]
    async with server.client() as client:
        await client.patch(f"/api/companies/{a}", json={"maxRunning": 1})
        a_jobs = [await submit(client, a, "test.gate", input={"gate": "fair-a"}) for _ in range(3)]
        b_job = await submit(client, b, "test.gate", input={"gate": "fair-b"})
        # Four workers: B's job runs, and one of A's only.
        await wait_for_status(server, b_job["jobId"], "running")
        await wait_for_status(server, a_jobs[0]["jobId"], "running")

        async def companies() -> dict[str, dict]:
            stats = (await client.get("/api/stats")).json()
            return {c["name"]: c for c in stats["companies"]}

        seen = await companies()
        assert seen["acme"] == {"id": a, "name": "acme", "running": 1, "queued": 2, "maxRunning": 1}
        assert seen["globex"] == {
            "id": b,
            "name": "globex",
            "running": 1,
            "queued": 0,
            "maxRunning": None,
        }
        gate("fair-a").set()
        gate("fair-b").set()
        for job in a_jobs:
            await wait_for_status(server, job["jobId"], "done")

        async def drained() -> bool:
            return all(c["running"] == c["queued"] == 0 for c in (await companies()).values())

        await wait_for(drained)
