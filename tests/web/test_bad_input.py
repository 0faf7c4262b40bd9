"""Every bad input answers its status with `{"error": {"code", "message"}}`, a message
that says what was wrong, and writes nothing."""

from __future__ import annotations

import json
import logging

import pytest
import trio
from webkit import job_url, raw_exchange, submit

pytestmark = pytest.mark.trio


def assert_error(response, status: int, *words: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert isinstance(body["error"]["code"], str) and body["error"]["code"]
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    return body["error"]


@pytest.fixture
async def nothing_written(server, company):
    """Asserts after the test that no job and no event was written."""
    before = await server.rt.store.last_event_id()
    yield
    assert sum((await server.rt.counts(company["id"])).values()) == 0
    assert await server.rt.store.last_event_id() == before


RAW_BODIES = [
    pytest.param(b'{"jobType": "noop", ', 400, ["not valid JSON"], id="malformed-json"),
    pytest.param(b"\xff\xfe{}", 400, ["not valid JSON"], id="not-utf8"),
    pytest.param(b"", 400, ["not valid JSON"], id="empty-body"),
    pytest.param(b"[1, 2]", 400, ["JSON object"], id="array-body"),
    pytest.param(b'"noop"', 400, ["JSON object"], id="string-body"),
    pytest.param(b"{}", 400, ["jobType is required"], id="no-job-type"),
    pytest.param(
        b'{"jobType": "noop", "input": {"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}}",
        400,
        ["nested too deeply"],
        id="deeply-nested",
    ),
    pytest.param(
        b'{"jobType": "noop", "input": {"x": NaN}}', 400, ["input", "JSON"], id="nan-in-input"
    ),
    pytest.param(
        b'{"jobType": "noop", "priority": ' + b"1" * 5000 + b"}",
        400,
        ["number too long"],
        id="5000-digits",
    ),
    # JSON can carry a lone surrogate, which no database stores as text.
    pytest.param(
        b'{"jobType": "noop", "input": {"x": "\\ud800"}}', 400, ["input", "surrogate"], id="lone-in"
    ),
    pytest.param(
        b'{"jobType": "noop", "sourceTaskId": "\\udfff"}', 400, ["sourceTaskId"], id="lone-source"
    ),
]

JSON_BODIES = [
    pytest.param(
        {"jobType": "noop", "colour": "red"}, 400, ["unknown field", "colour"], id="unknown-field"
    ),
    pytest.param(
        {"jobType": "noop", "priority": "high"}, 400, ["priority", "integer"], id="priority-high"
    ),
    pytest.param({"jobType": "noop", "priority": 1.5}, 400, ["priority"], id="priority-float"),
    pytest.param({"jobType": "noop", "priority": True}, 400, ["priority"], id="priority-bool"),
    pytest.param(
        {"jobType": "noop", "maxAttempts": 0}, 400, ["maxAttempts", "from 1"], id="max-attempts-0"
    ),
    pytest.param(
        {"jobType": "noop", "delaySeconds": -1},
        400,
        ["delaySeconds", "from 0"],
        id="delay-negative",
    ),
    pytest.param(
        {"jobType": "noop", "delaySeconds": "soon"}, 400, ["delaySeconds"], id="delay-string"
    ),
    pytest.param({"jobType": "noop", "timeoutSeconds": 0}, 400, ["timeoutSeconds"], id="timeout-0"),
    pytest.param({"jobType": "noop", "input": [1, 2]}, 400, ["input", "object"], id="input-list"),
    pytest.param({"jobType": "noop", "input": "x"}, 400, ["input", "object"], id="input-string"),
    pytest.param({"jobType": 7}, 400, ["jobType"], id="job-type-int"),
    pytest.param({"jobType": "noop", "sourceTaskId": 7}, 400, ["sourceTaskId"], id="source-int"),
    pytest.param(
        {"jobType": "noop", "idempotencyKey": ["k"]}, 400, ["idempotencyKey"], id="key-list"
    ),
    pytest.param({"jobType": "noop", "priority": 2**40}, 400, ["priority"], id="priority-huge"),
    pytest.param({"jobType": "noop", "sourceTaskId": ""}, 400, ["sourceTaskId"], id="source-empty"),
    # Numbers out of every store's range: refused by name, never a 500.
    pytest.param({"jobType": "noop", "delaySeconds": 1e12}, 400, ["delaySeconds"], id="delay-1e12"),
    pytest.param(
        {"jobType": "noop", "timeoutSeconds": 1e300}, 400, ["timeoutSeconds"], id="timeout-1e300"
    ),
    pytest.param({"jobType": "noop", "maxAttempts": 10**30}, 400, ["maxAttempts"], id="att-1e30"),
    pytest.param({"jobType": "noop", "maxAttempts": 2**63}, 400, ["maxAttempts"], id="att-2**63"),
    pytest.param({"jobType": "noop", "maxAttempts": 1001}, 400, ["maxAttempts"], id="att-1001"),
    pytest.param({"jobType": "noop", "priority": 2**31}, 400, ["priority"], id="priority-2**31"),
    pytest.param({"jobType": "noop", "priority": -(2**63)}, 400, ["priority"], id="priority-neg"),
    pytest.param(
        {"jobType": "noop", "idempotencyKey": "k" * 201}, 400, ["idempotencyKey"], id="key-201"
    ),
    pytest.param({"jobType": "noop", "sourceTaskId": "a\0b"}, 400, ["NUL"], id="source-nul"),
]


@pytest.mark.parametrize(("raw", "status", "words"), RAW_BODIES)
async def test_bad_raw_body(server, company, nothing_written, raw, status, words):
    async with server.client() as client:
        response = await client.post(
            f"/api/companies/{company['id']}/content-jobs",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
    error = assert_error(response, status, *words)
    assert error["code"] == "invalid_request"


@pytest.mark.parametrize(("body", "status", "words"), JSON_BODIES)
async def test_bad_job_fields(server, company, nothing_written, body, status, words):
    async with server.client() as client:
        response = await client.post(f"/api/companies/{company['id']}/content-jobs", json=body)
        assert_error(response, status, *words)
        # The same job inside a batch names its index.
        batch = await client.post(
            f"/api/companies/{company['id']}/content-jobs/batch",
            json={"jobs": [{"jobType": "noop"}, body]},
        )
        assert_error(batch, status, *words)
        assert "1" in batch.json()["error"]["message"]


async def test_integral_floats_are_integers_and_bounds_are_inclusive(server, company):
    body = {
        "jobType": "noop",
        "priority": 2.0**31 - 1,
        "maxAttempts": 1000.0,
        "delaySeconds": 10 * 365 * 24 * 3600,
        "timeoutSeconds": 10 * 365 * 24 * 3600,
        "idempotencyKey": "k" * 200,
    }
    async with server.client() as client:
        response = await client.post(f"/api/companies/{company['id']}/content-jobs", json=body)
        assert response.status_code == 202, response.text
        job = (await client.get(f"/api/content-jobs/{response.json()['jobId']}")).json()
    assert (job["priority"], job["maxAttempts"]) == (2**31 - 1, 1000)


async def test_unknown_job_type_is_422_listing_the_known_ones(server, company, nothing_written):
    async with server.client() as client:
        response = await client.post(
            f"/api/companies/{company['id']}/content-jobs", json={"jobType": "diagram"}
        )
    error = assert_error(response, 422, "diagram")
    assert error["code"] == "unknown_job_type"
    for known in server.rt.job_types:
        assert known in error["message"]
    assert {"noop", "demo.sleep", "demo.fail", "test.steps"} <= set(server.rt.job_types)


async def test_body_over_1_mib_is_413(server, company, nothing_written, caplog):
    path = f"/api/companies/{company['id']}/content-jobs"
    json_type = {"Content-Type": "application/json"}
    # Announced by Content-Length: refused before a byte of the body is read.
    status, content = await raw_exchange(
        server, "POST", path, {**json_type, "Content-Length": str(1024 * 1024 + 1)}, []
    )
    assert status == 413
    error = json.loads(content)["error"]
    assert error["code"] == "too_large"
    assert "1 MiB" in error["message"] and "1048576" in error["message"]
    # Chunked, no length given: refused once the body passes the limit.
    raw = json.dumps({"jobType": "noop", "input": {"p": "x" * (1024 * 1024)}}).encode()
    chunks = [raw[i : i + 64 * 1024] for i in range(0, len(raw), 64 * 1024)]
    with caplog.at_level(logging.WARNING):
        status, content = await raw_exchange(
            server, "POST", path, {**json_type, "Transfer-Encoding": "chunked"}, chunks
        )
        # The server's side of that connection ends right after the answer (the old
        # traceback came within a few milliseconds, every time): give it that long.
        await trio.sleep(0.2)
    assert status == 413
    assert json.loads(content)["error"]["code"] == "too_large"
    # The connection closes under the answer; that is no error of the server's.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_body_just_under_1_mib_is_accepted(server, company):
    # The counterpart of the 413 case: the limit is on the body, not lower.
    body = {"jobType": "noop", "input": {"p": ""}, "delaySeconds": 3600}
    overhead = len(json.dumps(body).encode())
    body["input"]["p"] = "x" * (1024 * 1024 - overhead)
    raw = json.dumps(body).encode()
    assert len(raw) == 1024 * 1024
    async with server.client() as client:
        response = await client.post(
            f"/api/companies/{company['id']}/content-jobs",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 202, response.text[:200]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"limit": "0"}, ["limit", "1 to 500"]),
        ({"limit": "501"}, ["limit", "1 to 500"]),
        ({"limit": "ten"}, ["limit"]),
        ({"cursor": "not-a-cursor"}, ["cursor"]),
        ({"cursor": "djF8bm90LWEtZGF0ZXx4"}, ["cursor"]),  # base64 of "v1|not-a-date|x"
        ({"status": "finished"}, ["status", "queued", "running", "done", "failed", "cancelled"]),
        ({"sort": "oldest"}, ["unknown query parameter", "sort"]),
    ],
)
async def test_bad_list_query_is_400(server, company, params, words):
    async with server.client() as client:
        response = await client.get(f"/api/companies/{company['id']}/content-jobs", params=params)
    assert_error(response, 400, *words)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/nope"),
        ("GET", "/nope"),
        ("POST", "/api/companies/{c}/widgets"),
        ("GET", "/api/companies/{c}/content-jobs/{j}/nope"),
    ],
)
async def test_unknown_route_is_404_json(server, company, method, path):
    async with server.client() as client:
        job = await submit(client, company["id"], "noop", delaySeconds=3600)
        response = await client.request(method, path.format(c=company["id"], j=job["jobId"]))
    error = assert_error(response, 404)
    assert error["code"] == "not_found"


async def test_wrong_method_is_405_json(server, company):
    async with server.client() as client:
        response = await client.delete(f"/api/companies/{company['id']}/content-jobs")
    error = assert_error(response, 405)
    assert error["code"] == "method_not_allowed"


async def test_unknown_or_malformed_ids_are_404(server, company):
    missing = "00000000-0000-4000-8000-000000000000"
    async with server.client() as client:
        for path in (
            f"/api/companies/{missing}/content-jobs",
            "/api/companies/acme/content-jobs",
            job_url(company["id"], missing),
            job_url(company["id"], "not-a-uuid"),
            f"/api/content-jobs/{missing}",
            f"/api/content-jobs/{missing}/../x",
        ):
            response = await client.get(path)
            assert_error(response, 404)
        for action in ("cancel", "retry"):
            response = await client.post(job_url(company["id"], missing) + f"/{action}")
            assert_error(response, 404, missing)
        response = await client.post(
            f"/api/companies/{missing}/content-jobs", json={"jobType": "noop"}
        )
        assert_error(response, 404, missing)


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "9e9"])
@pytest.mark.parametrize("where", ["header", "query"])
async def test_bad_last_event_id_is_400(server, company, value, where):
    async with server.client() as client:
        job = await submit(client, company["id"], "noop", delaySeconds=3600)
        for url in (
            job_url(company["id"], job["jobId"]) + "/events",
            f"/api/companies/{company['id']}/events",
            "/api/events",
        ):
            kwargs = (
                {"headers": {"Last-Event-ID": value}}
                if where == "header"
                else {"params": {"lastEventId": value}}
            )
            response = await client.get(url, **kwargs)
            error = assert_error(response, 400, "Last-Event-ID", value)
            assert error["code"] == "invalid_request"


async def test_an_empty_last_event_id_is_none_in_the_header_and_refused_in_the_query(
    server, company
):
    """EventSource sends an empty Last-Event-ID while it has seen no id; an empty
    `?lastEventId=` is not an integer, as the document says it must be."""
    async with server.client() as client:
        url = f"/api/companies/{company['id']}/events"
        refused = await client.get(url, params={"lastEventId": ""})
        assert_error(refused, 400, "Last-Event-ID")
        async with client.stream("GET", url, headers={"Last-Event-ID": ""}) as stream:
            assert stream.status_code == 200


async def test_bad_company_and_token_bodies(server, company):
    async with server.client() as client:
        cases = [
            ("/api/companies", {"name": ""}, 400, ["name"]),
            ("/api/companies", {"name": "a\x00b"}, 400, ["control characters"]),
            ("/api/companies", {"name": "x" * 201}, 400, ["200"]),
            ("/api/companies", {"name": "acme", "plan": "gold"}, 400, ["plan"]),
            ("/api/companies", {"name": "acme"}, 409, ["acme", "exists"]),
            (f"/api/companies/{company['id']}/tokens", {}, 400, ["label"]),
            (f"/api/companies/{company['id']}/tokens", {"label": 5}, 400, ["label"]),
            (
                f"/api/companies/{company['id']}/tokens",
                {"label": "ci", "scope": "all"},
                400,
                ["scope"],
            ),
        ]
        for path, body, status, words in cases:
            assert_error(await client.post(path, json=body), status, *words)
        assert_error(await client.post("/api/companies", content=b"{"), 400, "not valid JSON")
        listed = (await client.get("/api/companies")).json()["items"]
        assert [c["name"] for c in listed] == ["acme"]
        tokens = (await client.get(f"/api/companies/{company['id']}/tokens")).json()["items"]
        assert tokens == []


async def test_an_event_id_too_long_to_read_is_a_400(server, company):
    url = f"/api/companies/{company['id']}/events"
    async with server.client() as client:
        for headers, params in (
            ({"Last-Event-ID": "9" * 5000}, {}),
            ({}, {"lastEventId": "9" * 20}),
        ):
            answer = await client.get(url, headers=headers, params=params)
            assert answer.status_code == 400, answer.text
            assert "Last-Event-ID" in answer.json()["error"]["message"]
