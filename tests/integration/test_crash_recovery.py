"""A node killed with SIGKILL leaves jobs `running`; the next start recovers them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trio

import callboard
from callboard import JobContext, JobStatus

pytestmark = [pytest.mark.trio, pytest.mark.slow]

NODE = textwrap.dedent(
    """
    import sys
    import trio
    import callboard

    board = callboard.Board(database_url=sys.argv[1], workers=2, lease_seconds=30)

    @board.handler("hang", max_attempts=2)
    async def hang(ctx):
        await ctx.progress(10, "hanging")
        await trio.sleep_forever()

    @board.handler("hang.once", max_attempts=1)
    async def hang_once(ctx):
        await trio.sleep_forever()

    async def main():
        async with board.running() as rt:
            company = await rt.create_company("acme")
            again = await rt.submit(company.id, "hang")
            once = await rt.submit(company.id, "hang.once")
            for job in (again, once):
                while (await rt.get(job.id)).status != "running":
                    await trio.sleep(0.01)
            # Its progress event is committed before we report, so the kill comes after.
            while (await rt.store.latest_event(again.id)).type != "content_job.progress":
                await trio.sleep(0.01)
            print(again.id, once.id, flush=True)
            await trio.sleep_forever()

    trio.run(main)
    """
)


def start_node(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", NODE, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_jobs_of_a_killed_node_are_recovered_on_the_next_start(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'cb.db'}"
    node = start_node(url)
    try:
        line = await trio.to_thread.run_sync(node.stdout.readline)
        assert line, node.stderr.read()
        again_id, once_id = line.split()
        os.kill(node.pid, signal.SIGKILL)
        assert node.wait(timeout=10) == -signal.SIGKILL
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        node.stdout.close()
        node.stderr.close()

    board = callboard.Board(database_url=url, workers=2, lease_seconds=30)

    @board.handler("hang", max_attempts=2)
    async def hang(ctx: JobContext) -> None:
        await ctx.progress(50, f"attempt {ctx.attempt}")

    @board.handler("hang.once", max_attempts=1)
    async def hang_once(ctx: JobContext) -> None:
        raise AssertionError("a job with no attempts left must not run again")

    async with board.running() as rt:
        # Both were left running by the dead process.
        again = await rt.wait(again_id, timeout=20)
        once = await rt.wait(once_id, timeout=20)
        again_events = [str(e.type) for e in await rt.store.events_after(0, job_id=again_id)]
        once_events = [str(e.type) for e in await rt.store.events_after(0, job_id=once_id)]
    assert again.status is JobStatus.DONE and again.attempt == 2
    assert again_events == [
        "content_job.queued",
        "content_job.running",
        "content_job.progress",
        "content_job.retrying",
        "content_job.running",
        "content_job.progress",
        "content_job.done",
    ]
    assert once.status is JobStatus.FAILED and once.error_message == "worker lost"
    assert once_events == ["content_job.queued", "content_job.running", "content_job.failed"]
