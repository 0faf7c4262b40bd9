"""How fast the dashboard's event model applies events, and whether the whole app
(model + coalesced redraws, headless) keeps up with a 500 events/s feed for 30 s.

    .venv/bin/python bench/dashboard_events.py [--seconds 30] [--rate 500]

The feed is a stand-in for the client with the same methods the app calls, replaying
synthetic job events at a fixed pace on the app's own event loop, over a table already
holding 10,000 jobs: so "behind" measures the app, not a server.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from callboard.client import Job, JobEvent, StreamState
from callboard.jobs import EventType, JobStatus, Progress
from callboard.tui import DashboardApp, DashboardModel

T0 = datetime.now(UTC) - timedelta(hours=1)
STEPS = ("queued", "running", "progress", "progress", "done")


def make_job(n: int) -> Job:
    return Job(
        id=f"{n:08x}-0000-4000-8000-{n:012x}",
        company_id="00000000-0000-4000-8000-00000000c0de",
        job_type="demo.sleep",
        status=JobStatus.QUEUED,
        priority=0,
        input={"seconds": 1},
        progress=Progress(),
        attempt=1,
        max_attempts=1,
        timeout_seconds=None,
        run_at=T0,
        result_asset_id=None,
        error_message=None,
        source_task_id=None,
        idempotency_key=None,
        created_at=T0 + timedelta(milliseconds=n),
        started_at=None,
        finished_at=None,
        updated_at=T0 + timedelta(milliseconds=n),
    )


def events(count: int, first_job: int = 0) -> list[JobEvent]:
    """`count` events: each job goes queued, running, progress x2, done."""
    out: list[JobEvent] = []
    n = 0
    while len(out) < count:
        job = make_job(first_job + n)
        for step, kind in enumerate(STEPS):
            status = {"queued": "queued", "done": "done"}.get(kind, "running")
            job = replace(
                job,
                status=JobStatus(status),
                progress=Progress(min(100, step * 25), kind),
                updated_at=job.updated_at + timedelta(milliseconds=step + 1),
            )
            etype = EventType(f"content_job.{kind}")
            out.append(JobEvent(len(out) + 1, etype, job.id, job.company_id, job.updated_at, job))
        n += 1
    return out[:count]


def bench_model(count: int = 200_000) -> float:
    feed = events(count)
    model = DashboardModel()
    start = time.perf_counter()
    for event in feed:
        model.apply(event)
        if model.applied % 125 == 0:  # the screen takes changes 4 times a second
            model.take_changes()
    return count / (time.perf_counter() - start)


class PacedFeed:
    """The client methods the app uses, with a feed paced at `rate` events/s."""

    def __init__(self, rate: int, seconds: float, preload: int) -> None:
        self.url = f"bench://{rate}-events-per-second"
        self.rate = rate
        # Three times what the run needs, so a slow app is measured behind, not caught up.
        self.feed = events(int(rate * seconds * 3), first_job=preload)
        self.preload = [make_job(n) for n in reversed(range(preload))]
        self.started: float | None = None
        self.sent = 0

    def expected(self) -> int:
        if self.started is None:
            return 0
        return min(len(self.feed), int((time.monotonic() - self.started) * self.rate))

    def events(self, *, on_state: Any, **_: Any) -> _Stream:
        return _Stream(self, on_state)

    async def companies(self) -> list[dict[str, Any]]:
        return [{"id": "00000000-0000-4000-8000-00000000c0de", "name": "bench"}]

    async def stats(self) -> dict[str, Any]:
        return {"counts": {}, "workers": []}

    async def _list(self) -> AsyncIterator[Job]:
        for job in self.preload:
            yield job

    def list(self, **_: Any) -> AsyncIterator[Job]:
        return self._list()

    async def aclose(self) -> None:
        pass


class _Stream:
    def __init__(self, feed: PacedFeed, on_state: Any) -> None:
        self._feed = feed
        self._on_state = on_state

    async def __aenter__(self) -> _Stream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> JobEvent:
        feed = self._feed
        if feed.started is None:
            self._on_state(StreamState("connected"))
            feed.started = time.monotonic()
        while feed.sent >= feed.expected():
            if feed.sent >= len(feed.feed):
                await asyncio.sleep(3600)
            await asyncio.sleep(0.005)
        event = feed.feed[feed.sent]
        feed.sent += 1
        return event


async def bench_app(rate: int, seconds: float, preload: int) -> tuple[int, int, int, int]:
    feed = PacedFeed(rate, seconds, preload)
    app = DashboardApp(feed)  # type: ignore[arg-type]
    async with app.run_test(size=(160, 45)) as pilot:
        while feed.started is None:
            await pilot.pause(0.05)
        worst = 0
        end = feed.started + seconds
        while time.monotonic() < end:
            await pilot.pause(0.5)
            worst = max(worst, feed.expected() - app.model.applied)
        behind = feed.expected() - app.model.applied
        rows = app.main.query_one("JobTable").row_count
        applied = app.model.applied
    return behind, worst, rows, applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--preload", type=int, default=10_000)
    args = parser.parse_args()
    print(f"event model: {bench_model():,.0f} events/s applied (200,000 events, 10,000-job bound)")
    behind, worst, rows, applied = asyncio.run(bench_app(args.rate, args.seconds, args.preload))
    verdict = "keeps up" if behind <= args.rate // 2 else "falls behind"
    print(
        f"app at {args.rate} events/s for {args.seconds:g}s over {args.preload:,} preloaded jobs: "
        f"{behind} events behind at the end (worst {worst} at any half-second check), "
        f"{applied:,} applied, "
        f"{rows:,} table rows: {verdict}"
    )


if __name__ == "__main__":
    main()
