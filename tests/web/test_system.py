"""Health, readiness, metrics, the OpenAPI document, and CORS."""

from __future__ import annotations

import os
import re
import socket

import httpx
import pytest
import trio
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from webkit import (
    create_company,
    serving,
    sse,
    start_server,
    submit,
    subscribers,
    wait_for,
    wait_for_status,
)

import s3kit
from callboard.errors import StoreUnavailable
from callboard.web.readiness import STORAGE_TIMEOUT, StorageCheck

pytestmark = pytest.mark.trio

ORIGIN = "https://app.example"


async def test_healthz_needs_no_token(server):
    async with server.client(token="") as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_ready_then_503_with_the_store_down_or_while_draining(
    server, company, monkeypatch
):
    async with server.client(token="") as client:
        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {
            "status": "ready",
            "checks": {"runtime": True, "store": True, "storage": True},
            "nodes": 1,
            "warnings": [],
        }

        async def down() -> None:
            raise StoreUnavailable("the database is down (test)")

        with monkeypatch.context() as patch:
            patch.setattr(server.rt.store, "ping", down)
            response = await client.get("/readyz")
            assert response.status_code == 503
            assert response.json()["checks"] == {"runtime": True, "store": False, "storage": True}
        assert (await client.get("/readyz")).status_code == 200

        # Draining: the first thing a drain does is stop accepting.
        monkeypatch.setattr(server.rt, "accepting", False)
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "checks": {"runtime": False, "store": True, "storage": True},
            "nodes": 1,
            "warnings": [],
        }
    # ... and a submit is refused with 503, writing nothing.
    async with server.client() as client:
        response = await client.post(
            f"/api/companies/{company['id']}/content-jobs", json={"jobType": "noop"}
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "shutting_down"
    assert sum((await server.rt.counts(company["id"])).values()) == 0


async def test_stats_for_the_operator(server, company):
    async with server.client() as client:
        done = await submit(client, company["id"], "noop")
        await submit(client, company["id"], "noop", delaySeconds=3600)
        await wait_for_status(server, done["jobId"], "done")
        # A worker counts a job once it is idle again, a moment after the job is done.
        await wait_for(lambda: sum(w.completed for w in server.rt.worker_states()) == 1)
        response = await client.get("/api/stats")
    assert response.status_code == 200
    stats = response.json()
    assert stats["counts"] == {
        "queued": 1,
        "running": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
    }
    assert len(stats["workers"]) == 4
    assert stats["accepting"] is True
    assert stats["throughput"]["completed"] == 1
    assert stats["events"]["published"] >= 4


async def test_readyz_503_while_asset_storage_cannot_be_written(tmp_path, caplog):
    """A file where the storage directory would be made: no asset could be written, so
    the node is not ready, and the log says why once however often it is asked."""
    board, settings, web, servers = await start_server(tmp_path)
    settings.storage_dir.parent.mkdir(parents=True)
    settings.storage_dir.write_text("not a directory")
    async with board.running(extra_children=web):
        async with httpx.AsyncClient(base_url=servers[-1].bound[0]) as client:
            answers = [await client.get("/readyz") for _ in range(3)]
    assert [a.status_code for a in answers] == [503, 503, 503]
    assert answers[0].json()["status"] == "unavailable"
    assert answers[0].json()["checks"] == {"runtime": True, "store": True, "storage": False}
    said = [r.getMessage() for r in caplog.records if "/readyz answers 503" in r.getMessage()]
    assert said == [
        f"asset storage {settings.storage_dir} is not a directory: "
        "/readyz answers 503 until it works again"
    ]


async def test_readyz_asks_the_bucket_at_most_once_per_window(tmp_path, s3_url, caplog):
    """On s3:// storage readiness asks the bucket (HeadBucket), keeps the answer for a
    while so that polling load balancers do not hammer it, and says once in the log
    when the bucket stops answering."""
    bucket = s3_url.removeprefix("s3://").partition("/")[0]
    env = {"CALLBOARD_STORAGE_URL": s3_url}
    board, _settings, web, servers = await start_server(tmp_path, env)
    async with board.running(extra_children=web) as rt:
        # A shorter window than the node's 5 s, so the test need not wait that long.
        servers[-1].app.extensions["callboard"].storage_check = StorageCheck(
            rt.storage.check, cache_seconds=1.0
        )
        async with httpx.AsyncClient(base_url=servers[-1].bound[0]) as client:
            first = await client.get("/readyz")
            assert first.status_code == 200 and first.json()["checks"]["storage"] is True
            assert first.json()["warnings"] == []  # one node, shared storage
            s3kit.client(os.environ["AWS_ENDPOINT_URL_S3"]).delete_bucket(Bucket=bucket)
            assert (await client.get("/readyz")).status_code == 200  # not asked again yet

            async def unready() -> bool:
                return (await client.get("/readyz")).status_code == 503

            await wait_for(unready, within=10, interval=0.2)
            answer = await client.get("/readyz")
            assert answer.json()["checks"] == {"runtime": True, "store": True, "storage": False}
    said = [r.getMessage() for r in caplog.records if "/readyz answers 503" in r.getMessage()]
    assert len(said) == 1 and f"object storage s3://{bucket}/assets" in said[0]
    assert s3kit.CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in caplog.text


async def test_readyz_gives_up_on_a_bucket_that_does_not_answer(tmp_path, s3_url, monkeypatch):
    """An endpoint that takes connections and never answers: readiness says so within
    the check's 2 s, not after the client's own timeouts."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        host, port = silent.getsockname()
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{host}:{port}")
        board, _settings, web, servers = await start_server(
            tmp_path, {"CALLBOARD_STORAGE_URL": s3_url}
        )
        async with board.running(extra_children=web):
            async with httpx.AsyncClient(base_url=servers[-1].bound[0]) as client:
                started = trio.current_time()
                answer = await client.get("/readyz")
                took = trio.current_time() - started
                again = await client.get("/readyz")  # the answer kept: at once
                took_again = trio.current_time() - started - took
    assert answer.status_code == 503 and answer.json()["checks"]["storage"] is False
    assert STORAGE_TIMEOUT <= took < STORAGE_TIMEOUT + 2, took
    assert again.status_code == 503 and took_again < 1, took_again


async def test_nodes_lists_this_node_for_the_operator(server):
    async with server.client() as client:
        response = await client.get("/api/nodes")
    assert response.status_code == 200
    [me] = response.json()["items"]
    assert me["id"] == server.rt.lease_owner
    assert me["host"] == socket.gethostname() and me["pid"] == os.getpid()
    assert me["storage"] == server.settings.storage_location
    assert me["storage"].startswith("file:///")
    assert "test.gate" in me["jobTypes"]
    assert me["startedAt"] <= me["lastSeen"]
    assert response.json()["nextCursor"] is None


def scrape(text: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics(server, company):
    async with server.client() as client:
        async with sse(client, f"/api/companies/{company['id']}/events") as stream:
            await stream.next_raw()
            await submit(client, company["id"], "noop")
            await submit(client, company["id"], "demo.fail", input={"message": "x"})
            await submit(client, company["id"], "demo.sleep", delaySeconds=3600)
            # Durations are observed as terminal events are published: wait for those.
            terminal = {"content_job.done", "content_job.failed"}
            await stream.until(lambda f: f.event in terminal)
            await stream.until(lambda f: f.event in terminal)
            stored = await server.events_of(company_id=company["id"])
            async with server.client(token="") as anonymous:
                response = await anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    m = scrape(response.text)

    def jobs(job_type: str, status: str) -> float:
        return m[("callboard_jobs", (("job_type", job_type), ("status", status)))]

    assert jobs("noop", "done") == 1
    assert jobs("demo.fail", "failed") == 1
    assert jobs("demo.sleep", "queued") == 1
    assert m[("callboard_queue_depth", ())] == 1
    assert m[("callboard_event_subscribers", ())] == 1
    assert m[("callboard_events_published_total", ())] >= len(stored) == 7
    assert m[("callboard_subscribers_dropped_total", ())] == 0
    assert m[("callboard_workers", ())] == 4
    # The watchdog's figures are exposed (their values are tests/faults' business: an
    # in-process node shares the test runner, whose own pauses count).
    assert ("callboard_loop_stalls_total", ()) in m
    assert ("callboard_loop_stall_longest_seconds", ()) in m

    def duration(suffix: str, job_type: str, status: str, **extra: str) -> float:
        labels = tuple(sorted({"job_type": job_type, "status": status, **extra}.items()))
        return m[(f"callboard_job_duration_seconds_{suffix}", labels)]

    assert duration("count", "noop", "done") == 1
    assert duration("count", "demo.fail", "failed") == 1
    assert duration("bucket", "noop", "done", le="+Inf") == 1
    assert duration("sum", "noop", "done") >= 0
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in m.items()
        if name == "callboard_job_duration_seconds_bucket" and dict(labels)["job_type"] == "noop"
    )
    assert len(buckets) > 5 and [v for _, v in buckets] == sorted(v for _, v in buckets)


def openapi_path(rule: str) -> str:
    """/api/companies/<company_id>/x -> /api/companies/{companyId}/x"""

    def camel(match: re.Match) -> str:
        head, *rest = match.group(1).split("_")
        return "{" + head + "".join(part.title() for part in rest) + "}"

    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", camel, rule)


async def test_openapi_lists_every_route_and_is_valid(server):
    async with server.client(token="") as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    validate(doc)  # a valid OpenAPI 3.1 document
    assert doc["openapi"].startswith("3.1")

    routes: dict[str, set[str]] = {}
    for rule in server.app.url_map.iter_rules():
        methods = {m.lower() for m in rule.methods} - {"head", "options"}
        routes.setdefault(openapi_path(rule.rule), set()).update(methods)
    documented = {path: set(item) for path, item in doc["paths"].items()}
    assert documented == routes

    for path, item in doc["paths"].items():
        in_path = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            params = op.get("parameters", [])
            declared = {p["name"] for p in params if p["in"] == "path"}
            assert declared == in_path, f"{method} {path}"
            public = path in {"/healthz", "/readyz", "/metrics", "/openapi.json"}
            assert (op.get("security") == []) == public, f"{method} {path}"
            if path.endswith("events"):
                assert "lastEventId" in {p["name"] for p in params}
                # EventSource's ?token= is a security scheme: without it or the header, 401.
                assert op["security"] == [{"bearer": []}, {"queryToken": []}]
                scheme = doc["components"]["securitySchemes"]["queryToken"]
                assert (scheme["in"], scheme["name"]) == ("query", "token")
                assert "text/event-stream" in op["responses"]["200"]["content"]
    job_type = doc["paths"]["/api/companies/{companyId}/content-jobs"]["post"]["requestBody"]
    enum = job_type["content"]["application/json"]["schema"]["properties"]["jobType"]["enum"]
    assert enum == server.rt.job_types


async def test_cors_for_the_configured_origins_only(tmp_path):
    env = {"CALLBOARD_CORS_ORIGINS": f"{ORIGIN}, https://admin.example"}
    async with serving(tmp_path, env=env, workers=0) as server:
        company = await create_company(server, "acme")
        jobs = f"/api/companies/{company['id']}/content-jobs"
        async with server.client(token="") as client:

            async def preflight(origin: str | None, path: str = jobs):
                headers = {
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                }
                if origin:
                    headers["Origin"] = origin
                return await client.options(path, headers=headers)

            for origin in (ORIGIN, "https://admin.example"):
                response = await preflight(origin)
                assert response.status_code == 204
                assert response.headers["access-control-allow-origin"] == origin
                assert "POST" in response.headers["access-control-allow-methods"]
                allowed = response.headers["access-control-allow-headers"].lower()
                assert {"authorization", "content-type", "last-event-id"} <= {
                    h.strip() for h in allowed.split(",")
                }
                assert "Origin" in response.headers["vary"]
            # EventSource reconnects send Last-Event-ID, which needs a preflight too.
            assert (
                await preflight(ORIGIN, f"/api/companies/{company['id']}/events")
            ).status_code == 204

            for origin in ("https://evil.example", None):
                response = await preflight(origin)
                assert response.status_code == 403
                assert response.json()["error"]["code"] == "cors"
                assert "access-control-allow-origin" not in response.headers

        async with server.client() as client:
            ok = await client.get("/api/companies", headers={"Origin": ORIGIN})
            assert ok.status_code == 200
            assert ok.headers["access-control-allow-origin"] == ORIGIN
            assert "Origin" in ok.headers["vary"]
            posted = await client.post(jobs, json={"jobType": "noop"}, headers={"Origin": ORIGIN})
            assert posted.status_code == 202
            assert posted.headers["access-control-allow-origin"] == ORIGIN
            for headers in ({"Origin": "https://evil.example"}, {}):
                response = await client.get("/api/companies", headers=headers)
                assert response.status_code == 200
                assert "access-control-allow-origin" not in response.headers
            # Only /api routes.
            health = await client.get("/healthz", headers={"Origin": ORIGIN})
            assert "access-control-allow-origin" not in health.headers

        async with server.client(token="") as client:
            # An error is readable by the allowed origin's script ...
            denied = await client.get(jobs, headers={"Origin": ORIGIN})
            assert denied.status_code == 401
            assert denied.headers["access-control-allow-origin"] == ORIGIN
            # ... and so is an EventSource stream, token in the query.
            with trio.fail_after(10):
                async with sse(
                    client,
                    f"/api/companies/{company['id']}/events",
                    params={"token": server.token},
                    headers={"Origin": ORIGIN},
                ) as stream:
                    assert stream.response.headers["access-control-allow-origin"] == ORIGIN
                    await stream.next_raw()
        await wait_for(lambda: subscribers(server) == 0)


async def test_no_cors_by_default(server, company):
    async with server.client() as client:
        response = await client.options(
            "/api/companies", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
        )
        assert response.status_code == 403
        response = await client.get("/api/companies", headers={"Origin": ORIGIN})
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers
