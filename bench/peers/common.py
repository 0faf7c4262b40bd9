"""What every side (worker or producer, any system) shares: the record it writes.

A worker records, for each job, the `time.time()` at which its own process learned
that the job's terminal state was stored (see bench/compare.py's docstring for the
hook each system offers); a producer records the `time.time()` just before each
submit. bench/compare.py joins the two by job id.
"""

from __future__ import annotations

import asyncio
import json
import time
from argparse import Namespace
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

#: The two job bodies every system runs: nothing, and a 10 ms wait on a timer.
IO_SECONDS = 0.01


class Recorder:
    """The worker side's record: when each job's terminal state was seen, and whether
    it succeeded. `finished()` is called once `expect` distinct jobs are recorded."""

    def __init__(self, expect: int, finished: Callable[[], None]) -> None:
        self.expect = expect
        self.finished = finished
        self.t_start = time.time()
        self.cpu_start = time.process_time()
        self.t_ready: float | None = None
        self.done: dict[str, float] = {}
        self.failed: dict[str, str] = {}

    def begin(self) -> None:
        """Just before the worker opens its connections: its start, for throughput."""
        self.t_start = time.time()
        self.cpu_start = time.process_time()

    def started(self) -> None:
        """The worker is ready to take jobs: tell the parent (it paces producers on it)."""
        self.t_ready = time.time()
        print("ready", flush=True)

    def record(self, job_id: object, ok: bool = True, status: str = "") -> None:
        now = time.time()
        key = str(job_id)
        if key in self.done:
            return
        self.done[key] = now
        if not ok:
            self.failed[key] = status
        if len(self.done) == self.expect:
            self.finished()

    def dump(self, path: str, timed_out: bool) -> None:
        write(
            path,
            {
                "t_start": self.t_start,
                "t_ready": self.t_ready,
                "cpu": time.process_time() - self.cpu_start,
                "done": self.done,
                "failed": self.failed,
                "timed_out": timed_out,
            },
        )
        # Written before the worker stops: the parent ends a worker that hangs on its
        # way out once it has said this.
        print("recorded", flush=True)


class Submitted:
    """The producer side's record: the time just before each submit, by job id."""

    def __init__(self, warmup: int) -> None:
        self.warmup_left = warmup
        self.at: dict[str, float] = {}
        self.warmup: list[str] = []

    def add(self, job_id: object, t: float, warmup: bool = False) -> None:
        self.at[str(job_id)] = t
        if warmup:
            self.warmup.append(str(job_id))

    def dump(self, path: str) -> None:
        write(path, {"submitted": self.at, "warmup": self.warmup})


def schedule(count: int, rate: float, start: float) -> list[float]:
    """Open-loop pacing: the i-th submit is due at start + i / rate whatever the
    previous ones cost, so a slow submit does not push the rest later."""
    return [start + i / rate for i in range(count)]


async def submit_batches(
    sub: Submitted, count: int, size: int, enqueue: Callable[[int], Awaitable[Iterable[object]]]
) -> None:
    """`count` jobs, `size` at a time: `enqueue(n)` submits n jobs and gives their ids;
    each job's time is the one just before its batch (works on asyncio and trio)."""
    left = count
    while left:
        n = min(size, left)
        t = time.time()
        for job_id in await enqueue(n):
            sub.add(job_id, t)
        left -= n


async def paced_asyncio(
    sub: Submitted, args: Namespace, enqueue: Callable[[], Awaitable[object]]
) -> None:
    """--warmup then --count submits at --rate on asyncio, open loop: `enqueue()`
    submits one job and gives its id."""

    async def one(index: int) -> None:
        t = time.time()
        job_id = await enqueue()
        sub.add(job_id, t, warmup=index < args.warmup)

    pending = []
    for index, due in enumerate(schedule(args.warmup + args.count, args.rate, time.time())):
        await asyncio.sleep(max(0.0, due - time.time()))
        pending.append(asyncio.create_task(one(index)))
    await asyncio.gather(*pending)


async def wait_and_dump(rec: Recorder, everything: asyncio.Event, args: Namespace) -> None:
    """Wait (on asyncio) until `everything` is set or --deadline passed, then write the
    record to --out."""
    timed_out = False
    try:
        await asyncio.wait_for(everything.wait(), args.deadline)
    except TimeoutError:
        timed_out = True
    rec.dump(args.out, timed_out)


async def cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


def write(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data))
