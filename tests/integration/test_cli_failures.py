"""Failure details end to end: a `callboard serve` process running a handler module
whose handler raises, and `callboard show` through the installed entry point."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from cli_kit import callboard, callboard_all
from serve_process import ServeProcess, serve_handlers

from callboard.client import Client

pytestmark = pytest.mark.slow

HANDLERS = """
import callboard

board = callboard.Board()


class QuotaExceeded(Exception):
    pass


@board.handler("haiku", max_attempts=2)
async def haiku(ctx: callboard.JobContext) -> None:
    ctx.input["topic"]


@board.handler("quota")
async def quota(ctx: callboard.JobContext) -> None:
    raise QuotaExceeded("over the monthly quota")
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("cli-failures")
    with serve_handlers(tmp, "failing_handlers", HANDLERS) as s:
        assert callboard(s, "companies", "create", "acme").returncode == 0
        yield s


@pytest.fixture
def client(server: ServeProcess) -> Iterator[Client]:
    with Client(server.url, server.token) as c:
        yield c


def test_show_prints_the_error_type_and_the_traceback(server, client):
    # Retries back off about a second: the job ends within a few.
    failed = client.wait(client.submit("acme", "haiku", {}).job_id, timeout=30)
    assert failed.error_type == "KeyError"  # the client reads the new fields too
    shown, as_json = callboard_all(server, ["show", failed.id], ["show", failed.id, "--json"])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "errorMessage    KeyError: 'topic'" in lines
    assert "errorType       KeyError" in lines
    assert "errorTraceback  (below)" in lines
    start = lines.index("traceback")
    assert lines[start + 1] == "Traceback (most recent call last):"
    body = lines[start + 1 : lines.index("assets (0)") - 1]
    assert any("in haiku" in line for line in body) and body[-1] == "KeyError: 'topic'"
    retrying = [line for line in lines if "content_job.retrying" in line]
    ended = [line for line in lines if "content_job.failed" in line]
    assert len(retrying) == len(ended) == 1
    for line in retrying + ended:
        assert line.endswith("error: KeyError: 'topic' (KeyError)")
    details = json.loads(as_json.stdout)
    assert details["job"]["errorType"] == "KeyError"
    assert details["job"]["errorTraceback"].endswith("KeyError: 'topic'\n")
    kinds = {e["type"]: e["data"]["job"]["errorType"] for e in details["events"]}
    assert kinds["content_job.retrying"] == kinds["content_job.failed"] == "KeyError"


def test_a_handlers_own_exception_is_named_with_its_module(server, client):
    failed = client.wait(client.submit("acme", "quota").job_id, timeout=30)
    shown = callboard(server, "show", failed.id)
    assert shown.returncode == 0, shown.stderr
    assert "errorType       failing_handlers.QuotaExceeded" in shown.stdout.splitlines()
    assert "failing_handlers.QuotaExceeded: over the monthly quota" in shown.stdout
