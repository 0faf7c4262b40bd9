"""A handler that blocks the event loop never gets its job run twice at once.

The watchdog thread ends a node whose loop stays blocked for half a lease, before its
leases can run out; the job is then reclaimed once, by another node, after its lease.
Handlers get the right tools instead: `ctx.run_sync` (a thread, abandoned on cancel)
and `ctx.run_process` (a program, terminated on cancel or timeout).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio
from faultkit import feed

from callboard import Board, JobContext, JobStatus
from callboard.runtime.watchdog import EXIT_STALLED, LoopWatchdog
from callboard.store.memory import MemoryStore
from integration.serve_process import serve

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


@pytest.mark.trio
async def test_the_watchdog_ends_a_process_whose_loop_stays_blocked():
    exits: list[int] = []
    fatal: list[float] = []
    stalls: list[float] = []
    watchdog = LoopWatchdog(
        warn_after=0.1,
        fatal_after=0.3,
        interval=0.02,
        on_stall=stalls.append,
        on_fatal=fatal.append,
        exit=exits.append,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.run)
        await trio.sleep(0.1)
        time.sleep(0.2)  # noqa: ASYNC251 - a short block: a warning, not an exit
        await trio.sleep(0.1)
        assert (exits, len(stalls)) == ([], 1)
        # Longer than fatal_after: the thread acts while the loop is blocked.
        time.sleep(0.6)  # noqa: ASYNC251
        assert exits == [EXIT_STALLED]
        assert fatal and fatal[0] > 0.3
        await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    stats = watchdog.statistics()
    assert stats.stalls == 2 and stats.longest_stall >= 0.55


@pytest.mark.trio
async def test_a_loop_blocked_past_a_jobs_stop_deadline_ends_the_process():
    """Renewals failing had brought a job's stop deadline close: a block far shorter
    than half a lease, but past that deadline, is fatal (the job cannot be stopped)."""
    exits: list[int] = []
    stop_by = time.monotonic() + 0.3
    watchdog = LoopWatchdog(
        warn_after=0.1,
        fatal_after=10.0,
        interval=0.02,
        exit=exits.append,
        must_run_by=lambda: stop_by,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.run)
        time.sleep(0.6)  # noqa: ASYNC251 - the block under test
        assert exits == [EXIT_STALLED]
        nursery.cancel_scope.cancel()


@pytest.mark.trio
async def test_a_loop_that_keeps_running_is_never_reported():
    exits: list[int] = []
    watchdog = LoopWatchdog(warn_after=0.1, fatal_after=0.3, interval=0.02, exit=exits.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.run)
        for _ in range(20):
            await trio.to_thread.run_sync(time.sleep, 0.05)  # blocking, but off the loop
        nursery.cancel_scope.cancel()
    assert exits == [] and watchdog.statistics().stalls == 0


def _board(**kwargs) -> Board:
    board = Board(store=MemoryStore(), workers=2, lease_seconds=2.0, **kwargs)

    @board.handler("test.thread")
    async def in_a_thread(ctx: JobContext) -> None:
        slept = await ctx.run_sync(lambda s: time.sleep(s) or s, float(ctx.input["seconds"]))
        await ctx.progress(100, f"slept {slept}")

    @board.handler("test.process", timeout=1.5)
    async def in_a_process(ctx: JobContext) -> None:
        done = await ctx.run_process([sys.executable, "-c", str(ctx.input["code"])])
        await ctx.progress(100, done.stdout.decode().strip())

    return board


@pytest.mark.trio
async def test_run_sync_keeps_the_loop_and_the_lease_alive():
    board = _board()
    async with board.running() as rt:
        company = await rt.create_company("acme")
        # Two lease lengths in a thread: renewals go on, no stall, no exit.
        job = await rt.submit(company.id, "test.thread", {"seconds": 4.0})
        job = await rt.wait(job.id, timeout=30)
        assert job.status is JobStatus.DONE and job.attempt == 1
        assert job.progress.message == "slept 4.0"
        assert rt.statistics().loop.stalls == 0
        # Cancelled mid-thread: the job ends at once; the thread is abandoned.
        async with rt.subscribe(company.id) as events:
            slow = await rt.submit(company.id, "test.thread", {"seconds": 2.0})
            async for event in events:
                if event.job_id == slow.id and event.job.status is JobStatus.RUNNING:
                    break
        started = trio.current_time()
        await rt.cancel(slow.id)
        slow = await rt.wait(slow.id, timeout=30)
        assert slow.status is JobStatus.CANCELLED
        assert trio.current_time() - started < 1.0


@pytest.mark.trio
async def test_run_process_captures_output_and_is_killed_on_timeout(tmp_path):
    board = _board()
    pid_file = tmp_path / "pid"
    async with board.running() as rt:
        company = await rt.create_company("acme")
        job = await rt.submit(company.id, "test.process", {"code": "print('from a child')"})
        job = await rt.wait(job.id, timeout=30)
        assert (job.status, job.progress.message) == (JobStatus.DONE, "from a child")
        # Over the handler's 1.5 s timeout: the attempt fails and the program is gone.
        # The program starts one of its own: the whole group goes on timeout.
        code = (
            "import subprocess, time; "
            "child = subprocess.Popen(['sleep', '60']); "
            f"open({str(pid_file)!r}, 'w').write(str(child.pid)); "
            "time.sleep(60)"
        )
        job = await rt.submit(company.id, "test.process", {"code": code})
        job = await rt.wait(job.id, timeout=30)
        assert job.status is JobStatus.FAILED
        assert "timed out" in (job.error_message or "")
        assert not _alive(int(pid_file.read_text()))
        # One that ignores SIGTERM is killed with the group a second later.
        code = code.replace("['sleep', '60']", "['sh', '-c', 'trap \"\" TERM; sleep 60']")
        job = await rt.submit(company.id, "test.process", {"code": code})
        job = await rt.wait(job.id, timeout=30)
        assert job.status is JobStatus.FAILED and "timed out" in (job.error_message or "")
        assert not _alive(int(pid_file.read_text()))
        # A program that fails fails the attempt, with its exit status in the message.
        job = await rt.submit(company.id, "test.process", {"code": "raise SystemExit(3)"})
        job = await rt.wait(job.id, timeout=30)
        assert job.status is JobStatus.FAILED and "3" in (job.error_message or "")


def _alive(pid: int) -> bool:
    """Running (a zombie, killed and waiting for a parent to reap it, is not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _lines(path: Path) -> list[tuple[str, int, int, float]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, attempt, pid, at = line.split()
        out.append((what, int(attempt), int(pid), float(at)))
    return out


@pytest.mark.timeout(180)
def test_a_blocked_node_is_ended_and_its_job_runs_once_at_a_time(pg_url, tmp_path, monkeypatch):
    """Three real nodes on PostgreSQL, leases of 2 s: an API node (no workers) takes
    the submit and streams the events; worker node A runs attempt 1, whose handler
    blocks the loop for 20 s; A's watchdog ends it about 1 s in; worker node C, started
    then, reclaims the job after its lease and runs attempt 2. No two attempts overlap,
    attempt 1 never ends, and the client on the API node sees every event in order."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), *sys.path]))
    monkeypatch.setenv("CALLBOARD_DATABASE_URL", pg_url)
    monkeypatch.setenv("CALLBOARD_LEASE_SECONDS", "2")
    log = tmp_path / "attempts.log"
    for node in ("api", "a", "c"):
        (tmp_path / node).mkdir()
    handlers = ("--handlers", "fault_handlers")
    with serve(tmp_path / "api", "--workers", "0", *handlers) as api:
        headers = {"Authorization": f"Bearer {api.token}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=10) as client:
            company = client.post("/api/companies", json={"name": "blocked"}).json()["id"]
            with serve(tmp_path / "a", "--workers", "1", *handlers) as node_a:
                submitted = client.post(
                    f"/api/companies/{company}/content-jobs",
                    json={
                        "jobType": "test.block_first",
                        "input": {"log": str(log), "seconds": 20},
                    },
                )
                assert submitted.status_code == 202  # the API node answers at once
                job_id = submitted.json()["jobId"]
                assert node_a.proc.wait(timeout=30) == EXIT_STALLED
                a_ended = time.time()
                a_log = _wait_for_line(node_a.log, "ending the process")
            assert "ending the process before its leases can run out" in a_log
            assert job_id in a_log  # it says which job was running
            with serve(tmp_path / "c", "--workers", "1", *handlers):
                deadline = time.monotonic() + 60
                while client.get(f"/api/content-jobs/{job_id}").json()["status"] != "done":
                    assert time.monotonic() < deadline, "the job was not recovered"
                    time.sleep(0.2)
            with feed(api, company, until_done=1) as events:
                pass
    attempts = _lines(log)
    assert [(what, n) for what, n, _, _ in attempts] == [("start", 1), ("start", 2), ("end", 2)]
    second_start = attempts[1][3]
    assert second_start > a_ended  # attempt 2 began only once attempt 1's process was gone
    types = [e["event"] for e in events]
    assert types[0] == "content_job.queued" and types[-1] == "content_job.done"
    assert types.count("content_job.running") == 2
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def _wait_for_line(log: list[str], text: str) -> str:
    """The process's log once it holds `text` (its last lines are still being read)."""
    deadline = time.monotonic() + 10
    while not any(text in line for line in log) and time.monotonic() < deadline:
        time.sleep(0.05)
    return "\n".join(log)
