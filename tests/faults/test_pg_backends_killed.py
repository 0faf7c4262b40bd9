"""Every callboard connection to PostgreSQL terminated mid-run (`pg_terminate_backend`,
what a server restart or a failover does to clients), three times during 300 jobs:
afterwards every job is done, none was lost or run twice at once, and the node's log
holds no traceback. (A longer outage, with submits answering 503 and `/readyz` not
ready, is tests/integration/test_postgres_serve.py's.)"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest
from faultkit import assert_never_twice_at_once, node_client, read_attempts

from integration.serve_process import serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

HERE = Path(__file__).parent
JOBS = 300


def _terminate_callboard_backends(pg_url: str) -> int:
    database = urlsplit(pg_url).path.lstrip("/")

    async def terminate() -> int:
        conn = await asyncpg.connect(pg_url.rsplit("/", 1)[0] + "/postgres")
        try:
            rows = await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'callboard'",
                database,
            )
        finally:
            await conn.close()
        return len(rows)

    return asyncio.run(terminate())


def test_terminated_connections_lose_nothing(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), *sys.path]))
    log = tmp_path / "attempts.log"
    args = ("--database", pg_url, "--handlers", "fault_handlers", "--workers", "8")
    with serve(tmp_path, *args, "--lease-seconds", "5") as node:
        with node_client(node) as http:
            company = http.post("/api/companies", json={"name": "terminated"}).json()["id"]
            job = {"jobType": "test.short", "input": {"log": str(log), "seconds": 0.1}}
            answer = http.post(
                f"/api/companies/{company}/content-jobs/batch", json={"jobs": [job] * JOBS}
            )
            assert answer.status_code == 202
            ids = [j["jobId"] for j in answer.json()["jobs"]]
            terminated = 0
            for _ in range(3):
                time.sleep(0.7)
                terminated += _terminate_callboard_backends(pg_url)
            deadline = time.monotonic() + 90
            while True:
                statuses = [http.get(f"/api/content-jobs/{i}").json()["status"] for i in ids]
                if all(s == "done" for s in statuses):
                    break
                assert time.monotonic() < deadline, sorted(set(statuses))
                time.sleep(0.5)
        log_lines = list(node.log)
    runs = assert_never_twice_at_once(read_attempts(log, killed_at=time.time()))
    assert terminated >= 3, "the test did not reach the node's connections"
    assert not [line for line in log_lines if "Traceback" in line]
    loud = [line for line in log_lines if " WARNING " in line or " ERROR " in line]
    print(
        f"\npostgres backends terminated 3 times ({terminated} connections) during {JOBS} "
        f"jobs: lost 0, run twice at once 0, attempts {runs}, warning lines {len(loud)}"
    )
