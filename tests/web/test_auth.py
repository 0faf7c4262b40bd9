"""Who may call what: the authz matrix over every route, the token API, the operator
token file, and tokens kept out of logs."""

from __future__ import annotations

import logging
import os
import stat
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from webkit import Server, create_company, create_token, frames, serving, sse, subscribers, wait_for

from callboard.config import sqlite_path
from callboard.web.auth import create_token as mint_stored_token

pytestmark = pytest.mark.trio

OTHER_COMPANY = "other"  # the expectation of another company's token on this route


@dataclass(frozen=True)
class Route:
    method: str
    # {c}: company A, {j}: a fresh queued job, {k}: a fresh cancelled job, {t}: a token,
    # {a}: a fresh asset of company A
    path: str
    ok: int
    operator_only: bool = False
    company_scoped: bool = True  # another company's token gets 404 (False: it sees its own)
    sse: bool = False
    body: Any = None
    raw: bool = False  # a success answers bytes, not JSON

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


ROUTES = [
    Route("POST", "/api/companies", 201, operator_only=True, body="company"),
    Route("GET", "/api/companies", 200, company_scoped=False),
    Route("GET", "/api/companies/{c}", 200),
    Route("PATCH", "/api/companies/{c}", 200, operator_only=True, body={"maxRunning": 50}),
    Route("POST", "/api/companies/{c}/tokens", 201, operator_only=True, body={"label": "ci"}),
    Route("GET", "/api/companies/{c}/tokens", 200, operator_only=True),
    Route("DELETE", "/api/companies/{c}/tokens/{t}", 204, operator_only=True),
    Route("POST", "/api/companies/{c}/content-jobs", 202, body={"jobType": "noop"}),
    Route(
        "POST", "/api/companies/{c}/content-jobs/batch", 202, body={"jobs": [{"jobType": "noop"}]}
    ),
    Route("GET", "/api/companies/{c}/content-jobs", 200),
    Route("GET", "/api/companies/{c}/content-jobs/{j}", 200),
    Route("GET", "/api/content-jobs/{j}", 200),
    Route("POST", "/api/companies/{c}/content-jobs/{j}/cancel", 202),
    Route("POST", "/api/companies/{c}/content-jobs/{k}/retry", 202),
    Route("GET", "/api/companies/{c}/content-jobs/{k}/events", 200, sse=True),
    Route("GET", "/api/companies/{c}/events", 200, sse=True),
    Route("GET", "/api/events", 200, operator_only=True, sse=True),
    Route("GET", "/api/stats", 200, operator_only=True),
    Route("GET", "/api/nodes", 200, operator_only=True),
    Route("POST", "/api/companies/{c}/assets", 201, body="upload"),
    Route("GET", "/api/companies/{c}/assets", 200),
    Route("GET", "/api/companies/{c}/assets/{a}", 200),
    Route("GET", "/api/companies/{c}/assets/{a}/content", 200, raw=True),
    Route("POST", "/api/gc", 200, operator_only=True),
    Route("GET", "/api/content-jobs", 200, operator_only=True),
    Route("POST", "/api/companies/{c}/content-jobs/bulk-retry", 200, body={"dryRun": True}),
    Route("POST", "/api/companies/{c}/content-jobs/bulk-cancel", 200, body={"dryRun": True}),
    Route("POST", "/api/content-jobs/bulk-retry", 200, operator_only=True, body={"dryRun": True}),
    Route("POST", "/api/content-jobs/bulk-cancel", 200, operator_only=True, body={"dryRun": True}),
    Route(
        "POST",
        "/api/content-jobs/prune",
        200,
        operator_only=True,
        body={"olderThanSeconds": 86400, "dryRun": True},
    ),
]


@dataclass
class World:
    server: Server
    a: str  # company A (whose resources every route touches)
    b: str
    tokens: dict[str, str]  # principal name -> bearer token


@pytest.fixture
async def world(server, company) -> World:
    b = await create_company(server, "globex")
    own = (await create_token(server, company["id"], "a"))["token"]
    other = (await create_token(server, b["id"], "b"))["token"]
    revoked = await create_token(server, company["id"], "gone")
    async with server.client() as client:
        response = await client.delete(f"/api/companies/{company['id']}/tokens/{revoked['id']}")
        assert response.status_code == 204
    return World(
        server,
        company["id"],
        b["id"],
        {
            "operator": server.token,
            "own": own,
            "other": other,
            "revoked": revoked["token"],
            "bad": "not-a-token",
            "forged": "cb_0123456789ab_" + "x" * 32,
            "none": "",
        },
    )


def expected(route: Route, principal: str, in_query: bool) -> int:
    if principal in {"none", "bad", "forged", "revoked"}:
        return 401
    if in_query and not route.sse:
        return 401  # ?token= is for EventSource only
    if principal == "operator":
        return route.ok
    if route.operator_only:
        return 403
    if principal == "other" and route.company_scoped:
        return 404
    return route.ok


async def fill(world: World, route: Route) -> tuple[str, Any]:
    """The route's path with fresh resources of company A, and its body."""
    rt = world.server.rt
    queued = await rt.submit(world.a, "noop", delay=3600)
    cancelled = await rt.submit(world.a, "noop", delay=3600)
    await rt.cancel(cancelled.id)
    _, token = await mint_stored_token(rt.store, world.a, "victim", rt.now())
    asset = None
    if "{a}" in route.path:
        asset = (await rt.upload_asset(world.a, "a.txt", "text/plain", b"hello")).id
    path = route.path.format(c=world.a, j=queued.id, k=cancelled.id, t=token.id, a=asset)
    body = {"name": f"co-{uuid.uuid4().hex[:8]}"} if route.body == "company" else route.body
    return path, body


async def call(world: World, route: Route, principal: str, in_query: bool) -> tuple[int, Any]:
    token = world.tokens[principal]
    path, body = await fill(world, route)
    params = {"token": token} if in_query and token else {}
    async with world.server.client(token="" if in_query else token) as client:
        kwargs: dict[str, Any] = {"params": params}
        if body == "upload":
            kwargs["files"] = {"file": ("a.txt", b"hello", "text/plain")}
        elif body is not None:
            kwargs["json"] = body
        async with client.stream(route.method, path, **kwargs) as response:
            if route.sse and response.status_code == 200:
                assert response.headers["content-type"].startswith("text/event-stream")
                if "{k}" in route.path:
                    # A finished job: its last event, then the stream ends by itself.
                    got = [f async for f in frames(response)]
                    return 200, [f.event for f in got if f.event]
                return 200, None  # a feed never ends: leaving the block closes it
            await response.aread()
            if route.raw and response.status_code == 200:
                assert response.content == b"hello"
                return 200, None
            if response.status_code == 204:
                assert response.content == b""
                return 204, None
            assert response.headers["content-type"].startswith("application/json")
            return response.status_code, response.json()


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.id)
async def test_authz_matrix(world, route):
    failures = []
    for principal in world.tokens:
        for in_query in (False, True):
            if in_query and principal == "none":
                continue
            want = expected(route, principal, in_query)
            status, body = await call(world, route, principal, in_query)
            where = f"{principal}{' via ?token=' if in_query else ''}"
            if status != want:
                failures.append(f"{where}: {status} (want {want}) {body}")
                continue
            if status >= 400:
                error = body["error"]
                assert error["code"] in {"unauthorized", "forbidden", "not_found"}, where
                if principal == "revoked" and (route.sse or not in_query):
                    assert "revoked" in error["message"], where
            if route.path == "/api/companies" and route.method == "GET" and status == 200:
                ids = {c["id"] for c in body["items"]}
                assert ids == (
                    {world.a, world.b}
                    if principal == "operator"
                    else {world.a}
                    if principal == "own"
                    else {world.b}
                ), where
            if route.path.endswith("{k}/events") and status == 200:
                assert body == ["content_job.cancelled"], where
    assert not failures, "\n".join(failures)
    # Every feed a denied call might have opened was released.
    await wait_for(lambda: subscribers(world.server) == 0)


async def test_401_carries_www_authenticate(server, company):
    async with server.client(token="") as client:
        response = await client.get(f"/api/companies/{company['id']}/content-jobs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == "unauthorized"


async def test_tokens_over_the_api(server, company):
    jobs = f"/api/companies/{company['id']}/content-jobs"
    async with server.client() as client:
        response = await client.post(f"/api/companies/{company['id']}/tokens", json={"label": "ci"})
        assert response.status_code == 201
        created = response.json()
        assert set(created) == {"id", "companyId", "label", "createdAt", "revokedAt", "token"}
        assert created["companyId"] == company["id"] and created["label"] == "ci"
        assert created["revokedAt"] is None
        secret = created["token"]
        assert secret.startswith("cb_")

        listed = await client.get(f"/api/companies/{company['id']}/tokens")
        assert listed.status_code == 200
        assert secret not in listed.text
        (item,) = listed.json()["items"]
        assert set(item) == {"id", "companyId", "label", "createdAt", "revokedAt"}
        assert item["id"] == created["id"]

        async with server.client(token=secret) as company_client:
            assert (await company_client.get(jobs)).status_code == 200  # (now cached)
            gone = await client.delete(f"/api/companies/{company['id']}/tokens/{created['id']}")
            assert gone.status_code == 204 and gone.content == b""
            response = await company_client.get(jobs)
            assert response.status_code == 401
            assert "revoked" in response.json()["error"]["message"]

        (item,) = (await client.get(f"/api/companies/{company['id']}/tokens")).json()["items"]
        assert item["revokedAt"] is not None
        # Revoking again is harmless; an unknown id or another company's path is 404.
        again = await client.delete(f"/api/companies/{company['id']}/tokens/{created['id']}")
        assert again.status_code == 204
        other = await create_company(server, "globex")
        wrong = await client.delete(f"/api/companies/{other['id']}/tokens/{created['id']}")
        assert wrong.status_code == 404
        unknown = await client.delete(f"/api/companies/{company['id']}/tokens/{uuid.uuid4()}")
        assert unknown.status_code == 404
        # The operator token is no company's.
        assert (await client.get(f"/api/companies/{other['id']}/tokens")).json()["items"] == []

    # Only hashes are stored: no secret in the database files.
    db = sqlite_path(server.settings.database_url)
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert secret.encode() not in stored
    assert server.token.encode() not in stored


async def test_operator_token_file_is_0600_and_survives_a_restart(tmp_path):
    async with serving(tmp_path, workers=0) as first:
        path = first.settings.operator_token_file
        assert path.exists()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        token = path.read_text().strip()
        assert token == first.token and token.startswith("cb_")
        async with first.client() as client:
            assert (await client.get("/api/stats")).status_code == 200
    async with serving(tmp_path, workers=0) as second:
        assert path.read_text().strip() == token
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        async with second.client() as client:
            assert (await client.get("/api/stats")).status_code == 200
            operator_tokens = await second.rt.store.list_tokens(None)
            assert len(operator_tokens) == 1  # not minted again


async def test_tokens_never_reach_the_logs(server, company, caplog):
    for name in ("callboard", "hypercorn"):
        caplog.set_level(logging.DEBUG, logger=name)
    own = (await create_token(server, company["id"]))["token"]
    bad = "cb_0123456789ab_" + "s" * 32
    feed = f"/api/companies/{company['id']}/events"
    async with server.client(token="") as client:
        with trio.fail_after(10):
            async with sse(client, feed, params={"token": own}) as stream:
                await wait_for(lambda: subscribers(server) == 1)
                await server.rt.submit(company["id"], "noop", delay=3600)
                await stream.until(lambda f: f.event == "content_job.queued")
        # Refused ones too: a bad token in the query and in the header, and ?token= on
        # a route that does not take it.
        assert (await client.get(feed, params={"token": bad})).status_code == 401
        response = await client.get(feed, headers={"Authorization": f"Bearer {bad}"})
        assert response.status_code == 401
        jobs = f"/api/companies/{company['id']}/content-jobs"
        assert (await client.get(jobs, params={"token": own})).status_code == 401
    await wait_for(lambda: subscribers(server) == 0)

    def access_records() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "callboard.access"]

    # The stream's access line is written when its response ends.
    await wait_for(lambda: sum("/events" in r.getMessage() for r in access_records()) >= 3)
    for record in caplog.records:
        if not record.name.startswith(("callboard", "hypercorn")):
            continue
        text = record.getMessage() + repr(record.args) + repr(record.__dict__)
        for secret in (own, bad, server.token):
            assert secret not in text, f"{record.name}: {record.getMessage()}"


async def test_ids_guessed_across_companies_and_replays_stay_within_the_company(world):
    """A company token that pairs its own company with another company's ids, or
    replays its feed from the first event, sees nothing of the other company."""
    rt = world.server.rt
    theirs = await rt.submit(world.b, "noop", delay=3600)
    their_asset = (await rt.upload_asset(world.b, "b.txt", "text/plain", b"theirs")).id
    mine = await rt.submit(world.a, "noop", delay=3600)
    own = world.tokens["own"]
    guesses = [
        ("GET", f"/api/companies/{world.a}/content-jobs/{theirs.id}"),
        ("POST", f"/api/companies/{world.a}/content-jobs/{theirs.id}/cancel"),
        ("POST", f"/api/companies/{world.a}/content-jobs/{theirs.id}/retry"),
        ("GET", f"/api/companies/{world.a}/content-jobs/{theirs.id}/events"),
        ("GET", f"/api/content-jobs/{theirs.id}"),
        ("GET", f"/api/companies/{world.a}/assets/{their_asset}"),
        ("GET", f"/api/companies/{world.a}/assets/{their_asset}/content"),
        ("GET", f"/api/companies/{world.b}/content-jobs/{theirs.id}"),
        ("GET", f"/api/companies/{world.b}/events"),
    ]
    async with world.server.client(token=own) as client:
        for method, path in guesses:
            answer = await client.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
        # A replay of the whole feed: this company's events only, the other's left out.
        async with sse(client, f"/api/companies/{world.a}/events", last_event_id=0) as stream:
            seen = []
            while not any(job_id == mine.id for job_id in seen):
                frame = await stream.next()
                if frame.id is not None and frame.data_lines:
                    seen.append(frame.json()["jobId"])
    assert (await rt.get(theirs.id)).status == "queued"  # the guessed cancel did nothing
    their_jobs = {j.id for j in (await rt.list(world.b, limit=500)).items}
    assert seen and not set(seen) & their_jobs
