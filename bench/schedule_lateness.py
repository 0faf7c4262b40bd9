"""How late a schedule's job is made: N schedules of `every 1 s` on one node (SQLite
and PostgreSQL), and on PostgreSQL also two nodes racing for every tick; prints the
jobs made, ticks missed or doubled, and the lateness (job created_at - scheduledFor).

    flock /tmp/cb-bench.lock .venv/bin/python bench/schedule_lateness.py [--schedules 50]
        [--seconds 10] [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--only sqlite,pg]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

import trio
from store_nodes import database

import callboard


async def one(url: str, tmp: Path, nodes: int, args: argparse.Namespace) -> str:
    async with AsyncExitStack() as stack:
        rts = []
        for i in range(nodes):
            board = callboard.Board(database_url=url, workers=4, storage_dir=tmp / f"n{i}")
            rts.append(await stack.enter_async_context(board.running()))
        rt = rts[0]
        company = await rt.create_company("bench")
        for i in range(args.schedules):
            await rt.create_schedule(company.id, f"s{i}", "noop", every=1)
        await trio.sleep(args.seconds)
        jobs = []
        cursor = None
        while True:
            page = await rt.list(company.id, limit=500, cursor=cursor)
            jobs.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    late = sorted((j.created_at - j.scheduled_for).total_seconds() * 1000 for j in jobs)
    keys = [(j.schedule_id, j.scheduled_for) for j in jobs]
    by_schedule: dict[str, list] = {}
    for schedule_id, tick in keys:
        by_schedule.setdefault(schedule_id, []).append(tick)
    missed = sum(
        round((max(t) - min(t)).total_seconds()) + 1 - len(t) for t in by_schedule.values()
    )
    return (
        f"{len(jobs)} jobs, {len(keys) - len(set(keys))} doubled, {missed} missed; lateness "
        f"median {statistics.median(late):.1f} ms, p99 {late[int(len(late) * 0.99)]:.1f} ms, "
        f"max {late[-1]:.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--only", default="sqlite,pg")
    args = parser.parse_args()
    only = set(args.only.split(","))
    runs = [("sqlite", "sqlite", 1), ("pg", "postgres", 1), ("pg", "postgres", 2)]
    for key, setup, nodes in runs:
        if key not in only:
            continue
        with tempfile.TemporaryDirectory() as tmp, database(setup, args.pg, Path(tmp)) as url:
            result = trio.run(one, url, Path(tmp), nodes, args)
        print(f"{setup:8} {nodes} node(s), {args.schedules} schedules every 1 s: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
