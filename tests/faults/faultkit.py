"""What the fault tests share: clients of a real node, the attempts log the fault
handlers write, and the checks that no job ran twice at once and that event histories
are in order."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import httpx

from integration.serve_process import ServeProcess


def node_client(node: ServeProcess) -> httpx.Client:
    return httpx.Client(
        base_url=node.url, headers={"Authorization": f"Bearer {node.token}"}, timeout=30
    )


def read_attempts(log: Path, killed_at: float) -> dict[str, list[tuple[int, float, float]]]:
    """Per job, (attempt, start, end) of every attempt; an attempt that never ended ran
    until its process was killed."""
    starts: dict[tuple[str, int], float] = {}
    ends: dict[tuple[str, int], float] = {}
    for line in log.read_text().splitlines():
        what, job, attempt, _pid, at = line.split()
        key = (job, int(attempt))
        (starts if what == "start" else ends)[key] = float(at)
    out: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for (job, attempt), start in starts.items():
        out[job].append((attempt, start, ends.get((job, attempt), killed_at)))
    return out


def assert_never_twice_at_once(attempts: dict[str, list[tuple[int, float, float]]]) -> int:
    overlaps = 0
    for runs in attempts.values():
        runs.sort()
        for (_, _, end), (_, next_start, _) in pairwise(runs):
            overlaps += next_start < end
    assert overlaps == 0
    return sum(len(runs) for runs in attempts.values())


def assert_histories_in_order(events: list[dict]) -> None:
    ids = [int(e["id"]) for e in events]
    assert ids == sorted(ids) and len(ids) == len(set(ids)), "events out of order or repeated"
    finished: set[str] = set()
    for event in events:
        job = event["data"]["jobId"]
        assert job not in finished, f"an event after {job}'s terminal event"
        if event["event"] in {"content_job.done", "content_job.failed", "content_job.cancelled"}:
            finished.add(job)


@contextmanager
def feed(node: ServeProcess, company: str, until_done: int) -> Iterator[list[dict]]:
    """Every event of the company's feed, from its first, read live in a thread until
    `until_done` jobs have ended (or the block is left)."""
    events: list[dict] = []
    stop = threading.Event()

    def read() -> None:
        done = 0
        with (
            node_client(node) as client,
            client.stream(
                "GET",
                f"/api/companies/{company}/events",
                headers={"Last-Event-ID": "0"},
                timeout=httpx.Timeout(10, read=30),
            ) as response,
        ):
            current: dict = {}
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("id: "):
                    current["id"] = line[4:]
                elif line.startswith("event: "):
                    current["event"] = line[7:]
                elif line.startswith("data: "):
                    current["data"] = json.loads(line[6:])
                elif line == "" and "data" in current:
                    events.append(current)
                    done += current["event"] in {"content_job.done", "content_job.failed"}
                    current = {}
                    if done >= until_done:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield events
        reader.join(timeout=60)
        assert not reader.is_alive(), f"the feed stopped at {len(events)} events"
    finally:
        stop.set()


def kill(node: ServeProcess) -> float:
    os.kill(node.proc.pid, signal.SIGKILL)
    assert node.proc.wait(timeout=10) == -signal.SIGKILL
    return time.time()
