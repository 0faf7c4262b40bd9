"""`callboard schedules list | create | pause | resume | delete` through the installed
entry point, in a subprocess, against a real `callboard serve`; and the client's
schedule calls (sync and async) against the same server."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import trio
from cli_kit import callboard
from serve_process import ServeProcess, serve

from callboard.client import AsyncClient, Client, Conflict, InvalidRequest, NotFound

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServeProcess]:
    with serve(tmp_path_factory.mktemp("cli-schedules")) as s:
        assert callboard(s, "companies", "create", "acme").returncode == 0
        yield s


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_create_list_pause_resume_delete(server: ServeProcess):
    made = callboard(
        server,
        "schedules",
        "create",
        "nightly",
        "--job-type",
        "noop",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "Europe/Paris",
        "--input",
        '{"report": "daily"}',
        "--json",
    )
    assert made.returncode == 0, made.stderr
    schedule = json.loads(made.stdout)
    assert schedule["cron"] == "30 2 * * *" and schedule["input"] == {"report": "daily"}
    assert schedule["timezone"] == "Europe/Paris" and schedule["nextRunAt"]

    listed = callboard(server, "schedules", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.strip().splitlines()
    assert line.startswith(schedule["id"]) and "nightly" in line and "next 20" in line

    paused = callboard(server, "schedules", "pause", "nightly", "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["paused"] is True
    assert "paused" in callboard(server, "schedules", "list").stdout
    resumed = callboard(server, "schedules", "resume", schedule["id"], "--json")
    assert json.loads(resumed.stdout)["paused"] is False

    gone = callboard(server, "schedules", "delete", "nightly")
    assert gone.returncode == 0 and gone.stdout.strip() == "deleted nightly"
    assert callboard(server, "schedules", "list").stdout.strip() == ""
    missing = callboard(server, "schedules", "pause", "nightly")
    assert missing.returncode == 1 and "no schedule named" in one_error_line(missing)


def test_every_schedule_makes_jobs(server: ServeProcess):
    made = callboard(server, "schedules", "create", "pulse", "--job-type", "noop", "--every", "1")
    assert made.returncode == 0, made.stderr
    schedule_id = made.stdout.split()[0]
    with Client(server.url, server.token) as client:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            jobs = [j for j in client.list(job_type="noop") if j.schedule_id == schedule_id]
            if len(jobs) >= 2:
                break
            time.sleep(0.2)
        assert len(jobs) >= 2 and len({j.scheduled_for for j in jobs}) == len(jobs)
        client.delete_schedule("pulse")


@pytest.mark.parametrize(
    ("argv", "code", "words"),
    [
        (["--job-type", "noop", "--cron", "61 * * * *"], 2, "invalid cron"),
        (["--job-type", "noop", "--cron", "0 3 * * *", "--timezone", "No/Where"], 2, "timezone"),
        (["--job-type", "no.such.type", "--every", "5"], 2, "unknown job type"),
        (["--job-type", "noop", "--every", "0.5"], 2, "every must be"),
        (["--job-type", "noop", "--every", "5", "--input", "{nope"], 2, "--input"),
        (["--job-type", "noop"], 2, "--cron"),
        (["--job-type", "noop", "--every", "5", "--cron", "* * * * *"], 2, "not allowed"),
    ],
)
def test_bad_creates_fail_with_one_line(server: ServeProcess, argv, code, words):
    result = callboard(server, "schedules", "create", f"bad-{uuid.uuid4().hex[:6]}", *argv)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert words in result.stderr
    assert "Traceback" not in result.stderr


def test_a_taken_name_fails(server: ServeProcess):
    argv = ["schedules", "create", "twice", "--job-type", "noop", "--every", "600"]
    assert callboard(server, *argv).returncode == 0
    again = callboard(server, *argv)
    assert again.returncode == 1 and "already" in one_error_line(again)
    assert callboard(server, "schedules", "delete", "twice").returncode == 0


def test_sync_client(server: ServeProcess):
    with Client(server.url, server.token) as client:
        made = client.create_schedule("sync", "noop", {"a": 1}, every=600, priority=2)
        assert made.every == 600 and made.priority == 2 and made.input == {"a": 1}
        assert client.get_schedule("sync").id == made.id
        assert client.pause_schedule(made.id).paused
        changed = client.update_schedule("sync", cron="0 4 * * *", timezone="Asia/Tokyo")
        assert changed.cron == "0 4 * * *" and changed.every is None and changed.paused
        with pytest.raises(Conflict):
            client.create_schedule("sync", "noop", every=5)
        with pytest.raises(InvalidRequest):
            client.create_schedule("other", "noop", cron="nope")
        client.delete_schedule("sync")
        with pytest.raises(NotFound):
            client.get_schedule("sync")


def test_async_client(server: ServeProcess):
    async def main() -> None:
        async with AsyncClient(server.url, server.token) as client:
            made = await client.create_schedule("async", "noop", cron="*/5 * * * *")
            assert made.id in [s.id for s in await client.schedules()]
            assert (await client.pause_schedule("async")).paused
            assert not (await client.resume_schedule("async")).paused
            await client.delete_schedule("async")

    trio.run(main)
