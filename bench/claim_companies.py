"""The PostgreSQL claim alone, by how many companies there are and how many have work.

The fair claim (`callboard_claim`) serves, among jobs of one priority, the company with
the fewest jobs running first, so its cost depends on the companies: this script
measures it with the companies as a multi-tenant service has them. For each scenario,
on a fresh database migrated by callboard: --jobs queued noop jobs spread over the
active companies, then two connections claim --batch jobs at a time and mark them done
until none is left (as two nodes' dispatchers would, without the rest of a node).
Each scenario is run with the fair claim and, side by side, with the claim callboard
had before fair share (first come, first served; kept here as the floor) on the same
database. Prints jobs claimed per second, medians of --rounds alternated rounds.

Connections are opened as callboard opens them (JIT off); `--jit on` shows what the
fair claim cost with PostgreSQL's default.

    .venv/bin/python bench/claim_companies.py [--rounds 3] [--jobs 10000] [--batch 128]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--jit off]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import benchkit

#: (companies in the table, companies with queued jobs)
SCENARIOS = [(1, 1), (1000, 1), (10, 10), (1000, 1000)]

#: The types a node with the built-in handlers claims.
TYPES = ["noop", "demo.sleep", "demo.render", "demo.fail", "demo.progress", "demo.echo"]

FAIR = """
SELECT (c.job).*, c.payload, c.event_id
FROM callboard_claim($1::text[], $2::integer[], $3::integer, $4, $5, $6) AS c
ORDER BY c.event_id
"""

#: The claim before fair share: each type's first jobs in claim order, whoever's.
FIRST_COME = """
WITH caps AS (
    SELECT * FROM unnest($1::text[], $2::integer[]) AS c (job_type, cap)
),
candidates AS (
    SELECT k.* FROM caps CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at, j.created_at, j.seq
        FROM content_jobs AS j
        WHERE j.job_type = caps.job_type AND j.status = 'queued' AND j.run_at <= $4
        ORDER BY j.priority DESC, j.run_at, j.created_at, j.seq
        LIMIT least(coalesce(caps.cap, $3), $3)
        FOR UPDATE SKIP LOCKED
    ) AS k
),
chosen AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, run_at, created_at, seq) AS event_ord
    FROM candidates
    ORDER BY priority DESC, run_at, created_at, seq
    LIMIT $3
),
changed AS (
    UPDATE content_jobs AS j
    SET status = 'running', attempt = j.attempt + 1, started_at = $4, finished_at = NULL,
        lease_owner = $5, lease_expires_at = $6, progress_percent = 0,
        progress_message = NULL, updated_at = $4
    FROM chosen
    WHERE j.id = chosen.id AND j.status = 'queued'
    RETURNING j.*, callboard_job_payload(j) AS payload, chosen.event_ord
),
appended AS (
    SELECT callboard_append_events(
        array_agg(id ORDER BY event_ord), array_agg(company_id ORDER BY event_ord),
        array_agg('content_job.running'::text ORDER BY event_ord),
        array_agg(payload ORDER BY event_ord), array_agg($4::timestamptz ORDER BY event_ord)
    ) AS last_id, count(*) AS n
    FROM changed
)
SELECT changed.*, appended.last_id - appended.n + row_number() OVER (ORDER BY changed.event_ord)
FROM changed, appended
ORDER BY changed.event_ord
"""


async def connect(url: str, jit: str) -> asyncpg.Connection:
    return await asyncpg.connect(url, server_settings={"application_name": "bench", "jit": jit})


async def fill(conn: asyncpg.Connection, jobs: int, active: int) -> None:
    await conn.execute("DELETE FROM content_job_events")
    await conn.execute("DELETE FROM content_jobs")
    await conn.execute(
        """
        INSERT INTO content_jobs (id, company_id, job_type, status, input, run_at,
                                  created_at, updated_at)
        SELECT 'job-' || g, 'co-' || (g % $2), 'noop', 'queued', '{}', $3, $3, $3
        FROM generate_series(1, $1) AS g
        """,
        jobs,
        active,
        datetime.now(UTC),
    )
    await conn.execute("VACUUM ANALYZE content_jobs")


async def drain(url: str, sql: str, owner: str, batch: int, jit: str) -> int:
    conn = await connect(url, jit)
    try:
        claim = await conn.prepare(sql)
        taken = 0
        while True:
            now = datetime.now(UTC)
            rows = await claim.fetch(
                TYPES, [None] * len(TYPES), batch, now, owner, now + timedelta(seconds=30)
            )
            if not rows:
                return taken
            await conn.execute(
                "UPDATE content_jobs SET status = 'done', finished_at = now() "
                "WHERE id = ANY($1::text[])",
                [row["id"] for row in rows],
            )
            taken += len(rows)
    finally:
        await conn.close()


async def one_run(url: str, sql: str, args: argparse.Namespace, active: int) -> float:
    admin = await connect(url, args.jit)
    try:
        await fill(admin, args.jobs, active)
    finally:
        await admin.close()
    started = time.perf_counter()
    counts = await asyncio.gather(
        *(drain(url, sql, f"node-{n}", args.batch, args.jit) for n in range(2))
    )
    elapsed = time.perf_counter() - started
    if sum(counts) != args.jobs:
        raise SystemExit(f"claimed {sum(counts)} of {args.jobs} jobs")
    return args.jobs / elapsed


async def scenario(url: str, args: argparse.Namespace, companies: int, active: int) -> None:
    admin = await connect(url, args.jit)
    try:
        await admin.execute("DELETE FROM companies")
        await admin.execute(
            "INSERT INTO companies (id, name, created_at) "
            "SELECT 'co-' || g, 'co-' || g, now() FROM generate_series(0, $1 - 1) AS g",
            companies,
        )
        await admin.execute("ANALYZE companies")
    finally:
        await admin.close()
    rates: dict[str, list[float]] = {"fair": [], "first come": []}
    for _ in range(args.rounds):
        for name, sql in (("fair", FAIR), ("first come", FIRST_COME)):
            rates[name].append(await one_run(url, sql, args, active))
    fair, floor = (statistics.median(rates[k]) for k in ("fair", "first come"))
    print(
        f"{companies:>6,} companies, {active:>5,} with jobs: fair {fair:>8,.0f} jobs/s  "
        f"first come {floor:>8,.0f} jobs/s  fair / first come {fair / floor:.2f}"
        f"   (fair {min(rates['fair']):,.0f}-{max(rates['fair']):,.0f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--pg", default=benchkit.PG_ADMIN)
    parser.add_argument("--jit", choices=["on", "off"], default="off")
    args = parser.parse_args()
    with benchkit.fresh_database(args.pg, "callboard_claim_bench") as url:
        subprocess.run(
            [sys.executable, "-m", "callboard", "migrate", "--database", url],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        for companies, active in SCENARIOS:
            asyncio.run(scenario(url, args, companies, active))


if __name__ == "__main__":
    main()
