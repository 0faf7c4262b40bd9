"""Fair share between companies: one company's backlog must not queue another's jobs.

For each store (embedded SQLite, PostgreSQL), on a fresh database: a node with
--workers workers (8); company A submits --backlog jobs (2,000) of --job-ms ms (50)
each in submit_many calls of 500, then company B submits --b-jobs jobs (10) one by
one. Prints each B job's delay from before its submit call to its `running` event
reaching a subscriber, their max and p50, when A's backlog finished, and whether
every B job started before A's last. Before the fair claim B's jobs waited for A's
whole backlog (2,000 x 50 ms / 8 workers: about 12.5 s).

    .venv/bin/python bench/fair_share.py [--only sqlite,pg] [--backlog 2000] [--workers 8]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import benchkit
import trio

import callboard
from callboard import JobContext, JobSpec, JobStatus


@contextmanager
def database(store: str, admin_url: str, tmp: Path) -> Iterator[str]:
    if store == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    with benchkit.fresh_database(admin_url, "callboard_fair") as url:
        yield url


async def one_run(url: str, args: argparse.Namespace) -> None:
    board = callboard.Board(database_url=url, workers=args.workers)
    seconds = args.job_ms / 1000

    @board.handler("bench.sleep")
    async def sleep(ctx: JobContext) -> None:
        await trio.sleep(seconds)

    async with board.running() as rt:
        a = (await rt.create_company("a")).id
        b = (await rt.create_company("b")).id
        submitted: dict[str, float] = {}
        started: dict[str, float] = {}
        a_done: list[float] = []
        total = args.backlog + args.b_jobs
        async with rt.subscribe(buffer=8 * total) as events:
            begin = time.perf_counter()
            for offset in range(0, args.backlog, 500):
                size = min(500, args.backlog - offset)
                await rt.submit_many(a, [JobSpec("bench.sleep")] * size)
            a_submitted = time.perf_counter() - begin
            b_ids = []
            for _ in range(args.b_jobs):
                before = time.perf_counter()
                job = await rt.submit(b, "bench.sleep")
                submitted[job.id] = before
                b_ids.append(job.id)
            finished = 0
            async for event in events:
                now = time.perf_counter()
                if event.job.status is JobStatus.RUNNING and event.job_id in submitted:
                    started.setdefault(event.job_id, now)
                if event.terminal:
                    if event.job.status is not JobStatus.DONE:
                        raise SystemExit(f"job {event.job_id} ended {event.job.status}")
                    finished += 1
                    if event.job.company_id == a:
                        a_done.append(now)
                    if finished == total:
                        break
    delays = [(started[i] - submitted[i]) * 1000 for i in b_ids]
    for n, delay in enumerate(delays, 1):
        print(f"  B job {n:2d}: submit to start {delay:8.1f} ms")
    last_a = max(a_done) - begin
    print(
        f"  B: max {max(delays):.1f} ms, p50 {statistics.median(delays):.1f} ms; "
        f"A's {args.backlog} jobs submitted in {a_submitted:.2f} s, the last done at "
        f"{last_a:.2f} s; every B job started before A's last ended: "
        f"{max(started.values()) < max(a_done)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sqlite,pg")
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--b-jobs", type=int, default=10)
    parser.add_argument("--job-ms", type=float, default=50)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pg", default=benchkit.PG_ADMIN)
    args = parser.parse_args()
    for store in args.only.split(","):
        print(
            f"{store}: {args.workers} workers, "
            f"A {args.backlog} x {args.job_ms:g} ms, B {args.b_jobs}"
        )
        with (
            tempfile.TemporaryDirectory() as tmp_name,
            database(store, args.pg, Path(tmp_name)) as url,
        ):
            trio.run(one_run, url, args)
        sys.stdout.flush()


if __name__ == "__main__":
    main()
