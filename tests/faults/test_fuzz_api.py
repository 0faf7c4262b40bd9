"""An outside fuzzer finds no failure: schemathesis drives a real `callboard serve` from
its own `/openapi.json`, every check enabled, every operation, the stateful phase
following the document's links, with a fixed seed and a bounded number of examples.

Zero failures means: no 5xx, every answer as documented (status, headers, body, SSE
events), everything the document allows is accepted and everything it forbids is
refused, a 405 says `Allow`, and no request hangs. The server's log must hold no
traceback either.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from integration.serve_process import ServeProcess, serve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SEED = 3
EXAMPLES = 15


def _config(cancel: tuple[str, str], retry: tuple[str, str]) -> str:
    """Event streams may never end: read each for two seconds or three events. cancel
    and retry also get a job of their own, so the fuzzing phases reach past 404."""
    return f"""
[checks]
enabled = true

[[operations]]
include-path-regex = "/events$"
request-timeout = 2
max-stream-events = 3

[operations.generation]
max-examples = 5

# A cron expression or timezone that means nothing (61 minutes, Mars/Base) is well
# formed but refused with 422, as the document says: the schema cannot spell cron out.
[[operations]]
include-operation-id = "createSchedule"

[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

[[operations]]
include-operation-id = "updateSchedule"

[operations.checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "422"]

# A prune of every finished job (olderThanSeconds 0) would delete what the other
# operations were given to act on (and what a submit just made): true answers, 404s,
# that would read as failures. Here it prunes only jobs finished 100 years ago: none.
# tests/web/test_bulk_api.py tests what it deletes.
[[operations]]
include-operation-id = "pruneJobs"

[operations.parameters]
"body.olderThanSeconds" = 3153600000

[[operations]]
include-operation-id = "cancelJob"

[operations.parameters]
"path.companyId" = "{cancel[0]}"
"path.jobId" = "{cancel[1]}"

# Not in the stateful phase: there a link from a company just created gives
# companyId while jobId stays the one above, of another company, and schemathesis
# reads the true 404 as a created resource lost (ST302). The other phases reach it.
[operations.phases.stateful]
enabled = false

[[operations]]
include-operation-id = "retryJob"

[operations.parameters]
"path.companyId" = "{retry[0]}"
"path.jobId" = "{retry[1]}"

# Not in the stateful phase: there a link from a company just created gives
# companyId while jobId stays the one above, of another company, and schemathesis
# reads the true 404 as a created resource lost (ST302). The other phases reach it.
[operations.phases.stateful]
enabled = false
"""


def _jobs_to_act_on(server: ServeProcess) -> tuple[tuple[str, str], tuple[str, str]]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}
    ) as client:
        company = client.post("/api/companies", json={"name": "fuzz-targets"}).json()["id"]
        running = client.post(
            f"/api/companies/{company}/content-jobs",
            json={"jobType": "demo.sleep", "input": {"seconds": 3600}},
        ).json()["jobId"]
        failed = client.post(
            f"/api/companies/{company}/content-jobs",
            json={"jobType": "demo.fail", "input": {"message": "for retry"}},
        ).json()["jobId"]
    return (company, running), (company, failed)


def test_schemathesis_finds_no_failure(tmp_path: Path):
    with serve(tmp_path) as server:
        cancel, retry = _jobs_to_act_on(server)
        config = tmp_path / "schemathesis.toml"
        config.write_text(_config(cancel, retry))
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(config),
                "run",
                f"{server.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {server.token}",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                str(SEED),
                "--request-timeout",
                "5",
                # One worker: with two, hypothesis describes strategies (ast.parse) in
                # two threads at once, and CPython 3.11 fails that now and then with
                # "SystemError: AST constructor recursion depth mismatch".
                "--workers",
                "1",
                "--generation-database",
                "none",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_TELEMETRY": "false"},
            timeout=540,
            check=False,
        )
        log = list(server.log)
    summary = run.stdout[run.stdout.find("SUMMARY") :]
    print(summary)  # the figures docs/reliability.md quotes
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert cases is not None, summary
    assert int(cases.group(1)) > 500, "the fuzzer ran far fewer cases than it should"
    selected = re.search(r"Selected: (\d+)/(\d+)", summary)
    tested = re.search(r"Tested: (\d+)", summary)
    assert selected and tested and tested.group(1) == selected.group(1) == selected.group(2)
    assert [line for line in log if "Traceback" in line or " ERROR " in line] == []
