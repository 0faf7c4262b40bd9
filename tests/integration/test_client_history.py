"""A job's event history across an operator retry, through a real `callboard serve`:
the job fails its first attempt, is retried, and finishes; both clients must list the
events of both attempts (the first attempt's `failed` is terminal, but not the end)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from serve_process import ServeProcess, serve_handlers

from callboard.client import AsyncClient, Client
from callboard.jobs import JobEvent

pytestmark = pytest.mark.slow

HANDLERS = """
import callboard

board = callboard.Board()


@board.handler("flaky")
async def flaky(ctx: callboard.JobContext) -> object:
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt always fails")
    return {"attempt": ctx.attempt}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    tmp = tmp_path_factory.mktemp("client-history")
    with serve_handlers(tmp, "history_handlers", HANDLERS) as s:
        with Client(s.url, s.token) as client:
            client.create_company("acme")
        yield s


@pytest.fixture(scope="module")
def retried(server: ServeProcess) -> str:
    """A job that failed once, was retried by the operator, and is done."""
    with Client(server.url, server.token) as client:
        job_id = client.submit("acme", "flaky", max_attempts=1).job_id
        assert client.wait(job_id, timeout=30).status == "failed"
        client.retry(job_id)
        done = client.wait(job_id, timeout=30)
        assert done.status == "done" and done.result == {"attempt": 2}
        return job_id


def _check(history: list[JobEvent]) -> None:
    types = [str(e.type).removeprefix("content_job.") for e in history]
    assert types == ["queued", "running", "failed", "queued", "running", "done"]
    assert [e.id for e in history] == sorted(e.id for e in history)
    assert history[-1].job.result == {"attempt": 2}
    assert history[2].job.error_message == "the first attempt always fails"


def test_sync_history_lists_every_attempt(server: ServeProcess, retried: str) -> None:
    with Client(server.url, server.token) as client:
        _check(client.history(retried))


async def _async_history(server: ServeProcess, job_id: str) -> list[JobEvent]:
    async with AsyncClient(server.url, server.token) as client:
        return await client.history(job_id)


@pytest.mark.trio
async def test_async_history_lists_every_attempt_under_trio(
    server: ServeProcess, retried: str
) -> None:
    _check(await _async_history(server, retried))


@pytest.mark.asyncio
async def test_async_history_lists_every_attempt_under_asyncio(
    server: ServeProcess, retried: str
) -> None:
    _check(await _async_history(server, retried))


def test_history_right_after_a_retry_reaches_the_new_attempt(server: ServeProcess) -> None:
    """Asked for while the retried job may still be queued or running: the history
    goes past the first attempt's `failed` up to the newest event, and returns
    without waiting for the job to end."""
    with Client(server.url, server.token) as client:
        job_id = client.submit("acme", "flaky", max_attempts=1).job_id
        assert client.wait(job_id, timeout=30).status == "failed"
        client.retry(job_id)
        types = [str(e.type).removeprefix("content_job.") for e in client.history(job_id)]
        assert types[:4] == ["queued", "running", "failed", "queued"]


def test_callboard_show_lists_every_attempt(server: ServeProcess, retried: str) -> None:
    """The operator's view of the same history: `callboard show JOB --json`."""
    shown = server.cli("show", retried, "--json")
    assert shown.returncode == 0, shown.stderr
    kinds = [e["type"].removeprefix("content_job.") for e in json.loads(shown.stdout)["events"]]
    assert kinds == ["queued", "running", "failed", "queued", "running", "done"]
