"""GET /api/job-types on a real Hypercorn: every principal may list what the node
runs; the OpenAPI document declares it."""

from __future__ import annotations

import pytest
from webkit import create_token, serving

pytestmark = pytest.mark.trio


async def test_any_token_lists_every_type_with_its_defaults(server, company):
    company_token = (await create_token(server, company["id"]))["token"]
    answers = []
    for token in (server.token, company_token):
        async with server.client(token=token) as client:
            response = await client.get("/api/job-types")
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers[0] == answers[1]
    items = answers[0]["items"]
    assert answers[0]["nextCursor"] is None
    names = [t["jobType"] for t in items]
    assert names == sorted(server.rt.job_types)
    assert {"noop", "demo.sleep", "test.steps"} <= set(names)
    by_name = {t["jobType"]: t for t in items}
    assert by_name["noop"] == {
        "jobType": "noop",
        "timeoutSeconds": None,
        "maxAttempts": 1,
        "concurrency": None,
        "builtIn": True,
    }
    assert by_name["demo.sleep"]["builtIn"] and not by_name["test.steps"]["builtIn"]


async def test_without_a_token_it_is_401(server):
    async with server.client(token="") as client:
        response = await client.get("/api/job-types")
    assert response.status_code == 401, response.text


async def test_a_node_without_demo_types_lists_none(tmp_path):
    async with serving(tmp_path, demo_types=False) as server, server.client() as client:
        items = (await client.get("/api/job-types")).json()["items"]
        company_id = (await client.post("/api/companies", json={"name": "acme"})).json()["id"]
        submitted = await client.post(
            f"/api/companies/{company_id}/content-jobs", json={"jobType": "demo.render"}
        )
    assert not any(t["jobType"].startswith("demo.") for t in items)
    assert submitted.status_code == 422
    error = submitted.json()["error"]
    assert error["code"] == "unknown_job_type"
    assert "--demo-types" in error["message"] and "CALLBOARD_DEMO_TYPES=true" in error["message"]


async def test_the_openapi_document_declares_the_route(server):
    async with server.client() as client:
        doc = (await client.get("/openapi.json")).json()
    op = doc["paths"]["/api/job-types"]["get"]
    assert op["operationId"] == "listJobTypes"
    schema = doc["components"]["schemas"]["JobType"]
    assert set(schema["properties"]) == {
        "jobType",
        "timeoutSeconds",
        "maxAttempts",
        "concurrency",
        "builtIn",
    }
