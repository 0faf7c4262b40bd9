"""Claims and lists with 0 finished jobs, then with N (default 5,000,000): the figures
that say whether a jobs table full of history slows the queue down.

On a fresh database (PostgreSQL: a new database next to --pg, dropped after; SQLite:
a file in a temporary directory) this script, through the store's own methods:

1. creates 10 companies and queues --queued noop jobs (created now);
2. measures (the "0 finished" row): --claims claims of one job each (each claimed
   job then completed, as a worker would), and --lists calls of each list: a company's
   newest page, every company's, queued jobs of every company, a company's queued or
   running jobs (two statuses merged), and failed jobs of every company;
3. closes the store and fills it with N finished jobs (done, failed, cancelled;
   created over the last 30 days, before the queued ones) straight in SQL:
   PostgreSQL `INSERT ... SELECT generate_series`, SQLite a recursive CTE, in chunks,
   then ANALYZE;
4. opens it again and measures the same (the "N finished" row);
5. times the retention's delete: --prune-batches batches of 1,000 of the oldest
   finished jobs (`prune_jobs`, as the reaper runs it).

Prints p50 and p95 in milliseconds for each operation and phase.

    .venv/bin/python bench/finished_jobs.py --store pg --finished 5000000
    .venv/bin/python bench/finished_jobs.py --store sqlite --finished 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchkit
import trio

from callboard.jobs import JobStatus, NewJob, new_id
from callboard.store import open_store

COMPANIES = 10
CHUNK = 500_000
LEASE = timedelta(seconds=30)

PG_FILL = """
INSERT INTO content_jobs (
    id, company_id, job_type, status, input, progress_percent, attempt, max_attempts,
    run_at, created_at, started_at, finished_at, updated_at, error_message
)
SELECT gen_random_uuid()::text, companies.ids[1 + i % cardinality(companies.ids)], 'noop',
       (ARRAY['done', 'done', 'done', 'failed', 'cancelled'])[1 + i % 5], '{}'::json, 100, 1,
       1, t, t, t, t + interval '1 second', t + interval '1 second',
       CASE WHEN i % 5 >= 3 THEN 'boom' END
FROM generate_series($1::bigint, $2::bigint) AS i,
     LATERAL (SELECT $4::timestamptz - interval '30 days'
                     + (i * interval '30 days' / $3::bigint) AS t) AS at,
     (SELECT array_agg(id ORDER BY id) AS ids FROM companies) AS companies
"""

SQLITE_FILL = """
WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last),
cos AS (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM companies),
rows AS (
    SELECT i, lower(hex(randomblob(16))) AS h,
           strftime('%Y-%m-%dT%H:%M:%S', :start + i * 2592000 / :total, 'unixepoch') AS t,
           strftime('%Y-%m-%dT%H:%M:%S', :start + i * 2592000 / :total + 1, 'unixepoch') AS f
    FROM n
)
INSERT INTO content_jobs (
    id, company_id, job_type, status, input, progress_percent, attempt, max_attempts,
    run_at, created_at, started_at, finished_at, updated_at, error_message
)
SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-' || substr(h, 13, 4) || '-'
           || substr(h, 17, 4) || '-' || substr(h, 21, 12),
       (SELECT id FROM cos WHERE k = i % :companies), 'noop',
       CASE i % 5 WHEN 3 THEN 'failed' WHEN 4 THEN 'cancelled' ELSE 'done' END, '{}', 100,
       1, 1, t || '.000000Z', t || '.000000Z', t || '.000000Z', f || '.000000Z',
       f || '.000000Z', CASE WHEN i % 5 >= 3 THEN 'boom' END
FROM rows
"""


def ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (
        f"p50 {statistics.median(ordered) * 1000:7.2f} ms  "
        f"p95 {benchkit.nearest_rank(ordered, 95) * 1000:7.2f} ms"
    )


async def timed(n: int, call: Callable[[], Awaitable[object]]) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def prepare(url: str, queued: int) -> None:
    now = datetime.now(UTC)
    async with open_store(url).opened() as store:
        companies = [await store.create_company(f"bench-{i}", now) for i in range(COMPANIES)]
        jobs = [
            NewJob(
                id=new_id(),
                company_id=companies[i % COMPANIES].id,
                job_type="noop",
                input={},
                priority=0,
                max_attempts=1,
                timeout_seconds=None,
                run_at=now,
                source_task_id=None,
                idempotency_key=None,
            )
            for i in range(queued)
        ]
        for start in range(0, queued, 1000):
            await store.insert_jobs(jobs[start : start + 1000], now)


async def measure(url: str, label: str, args: argparse.Namespace) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}
    async with open_store(url).opened() as store:
        company = (await store.list_companies())[0].id

        async def claim_one() -> None:
            now = datetime.now(UTC)
            [(job, _)] = await store.claim(
                now=now,
                limit=1,
                type_caps={"noop": None},
                lease_owner="bench",
                lease_expires_at=now + LEASE,
            )
            claimed.append(job.id)

        claimed: list[str] = []
        figures["claim 1 job"] = []
        for _ in range(args.claims):
            figures["claim 1 job"] += await timed(1, claim_one)
            await store.complete(claimed[-1], "bench", datetime.now(UTC))
        lists: dict[str, Callable[[], Awaitable[object]]] = {
            "list a company's newest 50": lambda: store.list_jobs(company),
            "list every company's newest 50": lambda: store.list_jobs(None),
            "list queued (every company)": lambda: store.list_jobs(None, status=JobStatus.QUEUED),
            "list queued+running (a company)": lambda: store.list_jobs(
                company, status={JobStatus.QUEUED, JobStatus.RUNNING}
            ),
            "list failed (every company)": lambda: store.list_jobs(None, status=JobStatus.FAILED),
            "count queued due (front door)": lambda: store.count_queued(datetime.now(UTC), 2000),
        }
        for name, call in lists.items():
            await call()  # warm: the first call prepares the statement
            figures[name] = await timed(args.lists, call)
    for name, samples in figures.items():
        print(f"{label:<22} {name:<34} {ms(samples)}", flush=True)
    return figures


async def prune(url: str, args: argparse.Namespace) -> None:
    async with open_store(url).opened() as store:
        before = datetime.now(UTC) - timedelta(days=1)
        samples = []
        for _ in range(args.prune_batches):
            started = time.perf_counter()
            gone = await store.prune_jobs(before, 1000)
            samples.append(time.perf_counter() - started)
            if gone < 1000:
                break
        rate = 1000 * len(samples) / sum(samples)
        print(
            f"{'prune':<22} {'1,000 oldest finished (a batch)':<34} {ms(samples)}"
            f"  ({rate:,.0f} jobs/s)"
        )


async def fill_pg(url: str, total: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC) - timedelta(hours=1)
        # A bulk load builds the secondary indexes once, after it, rather than row by
        # row: the same indexes in the end, in a fraction of the time.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'content_jobs' AND indexname <> 'content_jobs_pkey'"
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        for first in range(1, total + 1, CHUNK):
            last = min(total, first + CHUNK - 1)
            await conn.execute(PG_FILL, first, last, total, now)
            print(f"  filled {last:,} / {total:,}", file=sys.stderr, flush=True)
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for index in indexes:
            await conn.execute(index["indexdef"])
        print(f"  rebuilt {len(indexes)} indexes", file=sys.stderr, flush=True)
        await conn.execute("ANALYZE content_jobs")
    finally:
        await conn.close()


def fill_sqlite(path: Path, total: int) -> None:
    conn = sqlite3.connect(path)
    try:
        start = int((datetime.now(UTC) - timedelta(days=30, hours=1)).timestamp())
        # As on PostgreSQL: the secondary indexes are built once, after the load.
        indexes = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'content_jobs' AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for first in range(1, total + 1, CHUNK):
            last = min(total, first + CHUNK - 1)
            params = {
                "first": first,
                "last": last,
                "total": total,
                "start": start,
                "companies": COMPANIES,
            }
            with conn:
                conn.execute(SQLITE_FILL, params)
            print(f"  filled {last:,} / {total:,}", file=sys.stderr, flush=True)
        for _, sql in indexes:
            conn.execute(sql)
        print(f"  rebuilt {len(indexes)} indexes", file=sys.stderr, flush=True)
        conn.execute("ANALYZE")
        conn.commit()
    finally:
        conn.close()


def run(url: str, fill: Callable[[], None], args: argparse.Namespace) -> None:
    trio.run(prepare, url, args.queued)
    trio.run(measure, url, "0 finished", args)
    started = time.perf_counter()
    fill()
    print(
        f"  filled {args.finished:,} finished jobs in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    trio.run(measure, url, f"{args.finished:,} finished", args)
    trio.run(prune, url, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["pg", "sqlite"], default="pg")
    parser.add_argument("--pg", default=benchkit.PG_ADMIN, help="the maintenance database")
    parser.add_argument("--finished", type=int, default=5_000_000)
    parser.add_argument("--queued", type=int, default=2000)
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--lists", type=int, default=100)
    parser.add_argument("--prune-batches", type=int, default=20)
    args = parser.parse_args()
    if args.claims > args.queued:
        parser.error("--claims must be at most --queued")
    print(f"store {args.store}, {args.finished:,} finished jobs, {args.queued:,} queued")
    if args.store == "pg":
        with benchkit.fresh_database(args.pg, "callboard_bench_finished") as url:
            run(url, lambda: asyncio.run(fill_pg(url, args.finished)), args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.db"
            run(f"sqlite:///{path}", lambda: fill_sqlite(path, args.finished), args)


if __name__ == "__main__":
    main()
