"""What every side (worker or producer, any system) shares: the record it writes.

A worker records, for each job, the `time.time()` at which its own process learned
that the job's terminal state was stored (see bench/compare.py's docstring for the
hook each system offers); a producer records the `time.time()` just before each
submit. bench/compare.py joins the two by job id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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


def write(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data))
