"""End-to-end throughput of `noop` jobs on the embedded SQLite store.

Submits N noop jobs through the Python API (in batches, as a busy client would), waits
until every one is done, checks each has exactly queued -> running -> done, and prints
jobs/s from the first submit to the last completion. Runs several rounds, each on a
fresh database, and prints the median.

    .venv/bin/python bench/noop_throughput.py [--jobs 1000] [--rounds 5] [--workers 8] [--batch 100]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import trio

import callboard
from callboard import JobSpec, JobStatus


async def one_round(db: Path, jobs: int, workers: int, batch: int) -> float:
    board = callboard.Board(database_url=f"sqlite:///{db}", workers=workers)
    async with board.running() as rt:
        company = await rt.create_company("bench")
        ids: list[str] = []
        rate = await submit_and_finish(rt, company.id, jobs, batch, ids)
        await check_event_sequences(rt, ids)
    return rate


async def submit_and_finish(
    rt: callboard.RunningBoard, company_id: str, jobs: int, batch: int, ids: list[str]
) -> float:
    """Submit `jobs` noop jobs in submit_many calls of `batch` (their ids go to `ids`)
    and wait for every one to be done; jobs/s from the first submit to the last done
    event a subscriber saw."""
    async with rt.subscribe(company_id=company_id, buffer=4 * jobs) as events:
        start = time.perf_counter()
        for offset in range(0, jobs, batch):
            size = min(batch, jobs - offset)
            submitted = await rt.submit_many(company_id, [JobSpec("noop")] * size)
            ids.extend(job.id for job in submitted)
        finished = 0
        async for event in events:
            if event.terminal:
                if event.job.status is not JobStatus.DONE:
                    raise SystemExit(f"job {event.job_id} ended {event.job.status}")
                finished += 1
                if finished == jobs:
                    break
        return jobs / (time.perf_counter() - start)


async def check_event_sequences(rt: callboard.RunningBoard, ids: list[str]) -> None:
    """Every job has exactly queued -> running -> done in the store, and no other job
    has events; else the run is void (SystemExit)."""
    by_job: dict[str, list[str]] = defaultdict(list)
    after = 0
    while page := await rt.store.events_after(after, limit=5000):
        for event in page:
            by_job[event.job_id].append(str(event.type))
        after = page[-1].id
    expected = ["content_job.queued", "content_job.running", "content_job.done"]
    wrong = [j for j in ids if by_job[j] != expected]
    if wrong or len(by_job) != len(ids):
        example = by_job[wrong[0]] if wrong else sorted(set(by_job) - set(ids))[:1]
        raise SystemExit(f"{len(wrong)} jobs with unexpected events, e.g. {example}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100, help="jobs per submit_many call")
    args = parser.parse_args()
    rates = []
    for round_no in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            rate = trio.run(one_round, Path(tmp) / "cb.db", args.jobs, args.workers, args.batch)
        rates.append(rate)
        print(f"round {round_no}: {args.jobs} noop jobs, {rate:,.0f} jobs/s", flush=True)
    print(
        f"median {statistics.median(rates):,.0f} jobs/s end to end "
        f"(SQLite, {args.workers} workers, submit batches of {args.batch}, {args.rounds} rounds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
