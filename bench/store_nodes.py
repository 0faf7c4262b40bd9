"""noop jobs end to end on SQLite, on PostgreSQL with one node, and with two nodes.

For each setup, on a fresh database each round:

- batch: submit --jobs noop jobs (default 10,000) in submit_many calls of --batch,
  and time from the first submit to the last `done` event seen by a subscriber
  (on node A: with two nodes it sees node B's events through PostgreSQL);
- paced: submit one job every 1/--rate seconds (default 100/s) for --paced jobs and
  measure each job's submit-to-done latency (from before its submit call to its
  `done` event reaching the subscriber); p50 and p99, and how many of them started
  on submit (on an idle worker, without a claim: Dispatcher.start_now).

Node A runs in this process; node B (two-node setup) is a `callboard serve` child
process on the same database with the same number of workers. Every job must end
done with exactly queued -> running -> done, or the run fails. Prints one line per
round and the medians.

    .venv/bin/python bench/store_nodes.py [--rounds 3] [--jobs 10000] [--workers 128]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--only sqlite,pg1,pg2]
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
from noop_throughput import check_event_sequences, submit_and_finish

import callboard


@contextmanager
def database(setup: str, admin_url: str, tmp: Path) -> Iterator[str]:
    if setup == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    with benchkit.fresh_database(admin_url, "callboard_bench") as url:
        yield url


@contextmanager
def second_node(url: str, workers: int, tmp: Path) -> Iterator[None]:
    """`callboard serve` on the same database, until the block ends."""
    node = benchkit.Serve(tmp / "node-b", ["--database", url, "--workers", str(workers)])
    try:
        node.wait_started()
        yield
    finally:
        node.stop()


async def one_round(url: str, args: argparse.Namespace) -> tuple[float, float, float, int]:
    board = callboard.Board(database_url=url, workers=args.workers)
    async with board.running() as rt:
        company = await rt.get_company_by_name("bench") or await rt.create_company("bench")
        ids: list[str] = []
        rate = await submit_and_finish(rt, company.id, args.jobs, args.batch, ids)
        # Paced: latency.
        started_before = rt.statistics().dispatcher.started_on_submit
        submitted_at: dict[str, float] = {}
        latencies: list[float] = []
        async with rt.subscribe(company_id=company.id, buffer=4 * args.paced) as events:
            async with trio.open_nursery() as nursery:

                async def pace() -> None:
                    next_at = trio.current_time()
                    for _ in range(args.paced):
                        await trio.sleep_until(next_at)
                        before = time.perf_counter()
                        job = await rt.submit(company.id, "noop")
                        submitted_at[job.id] = before
                        ids.append(job.id)
                        next_at += 1 / args.rate

                nursery.start_soon(pace)
                async for event in events:
                    if event.terminal:
                        latencies.append(time.perf_counter() - submitted_at[event.job_id])
                        if len(latencies) == args.paced:
                            break
        started = rt.statistics().dispatcher.started_on_submit - started_before
        await check_event_sequences(rt, ids)
    latencies.sort()
    p50 = benchkit.floor_rank(latencies, 50) * 1000
    p99 = benchkit.floor_rank(latencies, 99) * 1000
    return rate, p50, p99, started


def run_setup(setup: str, args: argparse.Namespace) -> None:
    results = []
    for round_no in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            with database(setup, args.pg, tmp) as url:
                if setup == "pg2":
                    # Node A creates the schema first, so node B starts on it.
                    trio.run(_migrate, url)
                    with second_node(url, args.workers, tmp):
                        result = trio.run(one_round, url, args)
                else:
                    result = trio.run(one_round, url, args)
        results.append(result)
        rate, p50, p99, started = result
        print(
            f"{setup} round {round_no}: {rate:,.0f} jobs/s; paced {args.rate:g}/s: "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms ({started} of {args.paced} started on "
            "submit, without a claim)",
            flush=True,
        )
    rate = statistics.median(r[0] for r in results)
    p50 = statistics.median(r[1] for r in results)
    p99 = statistics.median(r[2] for r in results)
    label = {"sqlite": "SQLite, 1 node", "pg1": "PostgreSQL, 1 node", "pg2": "PostgreSQL, 2 nodes"}
    print(
        f"median {label[setup]}: {rate:,.0f} noop jobs/s ({args.jobs:,} submitted in batches "
        f"of {args.batch}); submit-to-done at {args.rate:g}/s p50 {p50:.1f} ms, "
        f"p99 {p99:.1f} ms ({args.workers} workers per node, {args.rounds} rounds)",
        flush=True,
    )


async def _migrate(url: str) -> None:
    from callboard.store import open_store

    async with open_store(url).opened():  # type: ignore[attr-defined]
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000, help="jobs per submit_many call")
    parser.add_argument("--paced", type=int, default=1_000, help="jobs of the paced run")
    parser.add_argument("--rate", type=float, default=100.0, help="paced submits per second")
    parser.add_argument("--workers", type=int, default=128, help="workers per node")
    parser.add_argument("--pg", default=benchkit.PG_ADMIN)
    parser.add_argument("--only", default="sqlite,pg1,pg2")
    args = parser.parse_args()
    for setup in args.only.split(","):
        if setup not in ("sqlite", "pg1", "pg2"):
            parser.error(f"--only: unknown setup {setup!r}")
        run_setup(setup, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
