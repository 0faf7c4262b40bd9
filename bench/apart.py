"""API and workers apart on PostgreSQL: a producer process submits, a worker node runs.

The producer is this process (`Board(workers=0)`: it accepts and stores, runs
nothing); the worker node is a child process of this script (`Board(workers=N)`,
no web server) on the same fresh database. A job counts as done when the worker
process has committed its terminal state: the worker node subscribes to its own
events, which its store publishes right after each commit, and reports each
terminal event's wall-clock time (`time.time()`, one machine, one clock) on its
stdout. For each worker count (--workers, default 10 and 100):

- burst: --jobs noop jobs (default 5,000) submitted with submit_many in batches of
  --batch (500); jobs/s from before the first submit to the last commit of `done`;
- paced: --paced jobs (default 1,000) submitted one `submit` at a time at --rate
  per second (100); each job's latency from before its submit call to the commit
  of its `done`: p50 and p99.

Every job must end done with exactly queued -> running -> done, or the run fails.
Each round runs on a fresh database; the last lines are the medians of the rounds.
`--profile DIR` records the worker node with py-spy (`-f raw`) during the run.
`--activity` samples `pg_stat_activity` every 5 ms during each burst (from a thread
of this process, on a connection of its own) and prints how many of the bench's
database sessions were, on average, in each state: running a statement, waiting for
the WAL to reach the disk, waiting for a lock. It shows whether PostgreSQL (or the
lock that keeps event ids gapless) is what the burst waits on.

    flock /tmp/cb-bench.lock .venv/bin/python bench/apart.py [--rounds 3]
        [--workers 10,100] [--jobs 5000] [--paced 1000] [--only burst,paced]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--profile DIR] [--activity]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import benchkit
import trio
from noop_throughput import check_event_sequences
from store_nodes import database

import callboard
from callboard import JobSpec
from callboard.store import open_store
from callboard.store.queries import load_queries


async def _migrate(url: str) -> None:
    async with open_store(url).opened():  # type: ignore[attr-defined]
        pass


# --- the worker node (a child process) -----------------------------------------------


async def worker_node(url: str, workers: int) -> None:
    board = callboard.Board(database_url=url, workers=workers)
    out: list[str] = []
    written = trio.Event()

    async def flush() -> None:
        nonlocal written
        while True:
            await written.wait()
            written = trio.Event()
            await trio.sleep(0.005)  # a few lines per write
            lines, out[:] = "".join(out), []
            sys.stdout.write(lines)
            sys.stdout.flush()

    async with board.running() as rt, trio.open_nursery() as nursery:
        nursery.start_soon(flush)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with rt.subscribe(buffer=100_000) as events:
                print(f"ready {os.getpid()}", flush=True)

                async def stop() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()

                nursery.start_soon(stop)
                nursery.start_soon(report_at_exit, rt)
                async for event in events:
                    if event.job.terminal:
                        out.append(f"{event.job_id} {time.time():.6f} {event.job.status}\n")
                        written.set()


async def report_at_exit(rt: callboard.RunningBoard) -> None:
    """The worker node's claim and completion batching, on stderr when it stops."""
    try:
        await trio.sleep_forever()
    finally:
        d = rt.statistics().dispatcher
        completions = getattr(rt.store, "_completions", None)
        batches = (
            ""
            if completions is None
            else (f", {completions.completions} completions in {completions.batches} batches")
        )
        print(
            f"worker node: {d.dispatched} jobs in {d.claims} claims{batches}",
            file=sys.stderr,
            flush=True,
        )


# --- the producer ----------------------------------------------------------------------


class WorkerProcess:
    def __init__(self, url: str, workers: int) -> None:
        self.done: dict[str, float] = {}
        self.failed: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker-node", url, str(workers)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            raise SystemExit(f"the worker node did not start: {line!r}")
        self.pid = int(line.split()[1])
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            job_id, at, status = line.split()
            self.done[job_id] = float(at)
            if status != "done":
                self.failed.append(job_id)

    def cpu_seconds(self) -> float:
        return benchkit.cpu_seconds(self.pid)

    def stop(self) -> None:
        benchkit.stop(self.proc)


def postgres_cpu_seconds() -> float:
    """CPU time of every postgres process on this machine (the database's share)."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(" (")[2].rpartition(")")
        if name.startswith("postgres"):
            fields = rest.split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _query_name(text: str) -> str:
    """The store's name for a statement pg_stat_activity shows (it may cut the text)."""
    head = text.strip()[:200]
    for name, sql in load_queries("postgres").items():
        if sql[:200] == head:
            return name
    return " ".join(head.split())[:40]


class ActivitySampler:
    """What the bench database's sessions are doing, sampled from a thread with plain
    asyncio: the mean number of sessions per (statement, wait) pair."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._database = urlsplit(url).path.lstrip("/")
        self._stop = threading.Event()
        self.samples = 0
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()))

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    async def _sample(self) -> None:
        conn = await asyncpg.connect(self._url, timeout=10)
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'on CPU') AS wait,"
                    " query AS statement FROM pg_stat_activity"
                    " WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()",
                    self._database,
                )
                self.samples += 1
                for row in rows:
                    self.counts[(_query_name(row["statement"]), row["wait"])] += 1
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    def report(self) -> str:
        n = max(1, self.samples)
        busy = sum(self.counts.values()) / n
        lines = [f"  PostgreSQL sessions active on average: {busy:.2f} ({self.samples} samples)"]
        for (statement, wait), count in self.counts.most_common(8):
            lines.append(f"    {count / n:5.3f}  {wait:<24} {statement}")
        return "\n".join(lines)


async def wait_done(worker: WorkerProcess, ids: list[str], seconds: float = 120) -> float:
    with trio.fail_after(seconds):
        # The reader thread fills `worker.done`: polled, so it needs no trio token.
        while not all(i in worker.done for i in ids):  # noqa: ASYNC110
            await trio.sleep(0.01)
    if worker.failed:
        raise SystemExit(f"{len(worker.failed)} jobs did not end done, e.g. {worker.failed[0]}")
    return max(worker.done[i] for i in ids)


async def produce(url: str, worker: WorkerProcess, args: argparse.Namespace) -> dict[str, float]:
    board = callboard.Board(database_url=url, workers=0)
    results: dict[str, float] = {}
    async with board.running() as rt:
        company = await rt.get_company_by_name("bench") or await rt.create_company("bench")
        ids: list[str] = []
        # Warm both processes' connections up before measuring.
        warm = [j.id for j in await rt.submit_many(company.id, [JobSpec("noop")] * 20)]
        ids += warm
        await wait_done(worker, warm)
        if "burst" in args.only:
            cpu = worker.cpu_seconds()
            own_cpu, pg_cpu = time.process_time(), postgres_cpu_seconds()
            sampler = ActivitySampler(url) if args.activity else nullcontext()
            with sampler:
                start = time.time()
                burst: list[str] = []
                for offset in range(0, args.jobs, args.batch):
                    size = min(args.batch, args.jobs - offset)
                    jobs = await rt.submit_many(company.id, [JobSpec("noop")] * size)
                    burst += [j.id for j in jobs]
                submitted_by = time.time()
                last = await wait_done(worker, burst)
            if isinstance(sampler, ActivitySampler):
                print(sampler.report(), flush=True)
            results["burst"] = args.jobs / (last - start)
            results["burst_cpu"] = worker.cpu_seconds() - cpu
            results["burst_producer_cpu"] = time.process_time() - own_cpu
            results["burst_pg_cpu"] = postgres_cpu_seconds() - pg_cpu
            results["burst_seconds"] = last - start
            results["burst_submit_seconds"] = submitted_by - start
            ids += burst
        if "paced" in args.only:
            submitted: dict[str, float] = {}
            next_at = trio.current_time()
            for _ in range(args.paced):
                await trio.sleep_until(next_at)
                before = time.time()
                job = await rt.submit(company.id, "noop")
                submitted[job.id] = before
                next_at += 1 / args.rate
            await wait_done(worker, list(submitted))
            latencies = sorted(worker.done[i] - at for i, at in submitted.items())
            results["p50"] = benchkit.floor_rank(latencies, 50) * 1000
            results["p99"] = benchkit.floor_rank(latencies, 99) * 1000
            ids += list(submitted)
            results.update(await breakdown(rt, worker, submitted))
        await check_event_sequences(rt, ids)
    return results


async def breakdown(
    rt: callboard.RunningBoard, worker: WorkerProcess, submitted: dict[str, float]
) -> dict[str, float]:
    """Where a paced job's latency goes, medians in ms, from the events' createdAt (each
    is the writer's clock just before its statement): submit to the worker's claim,
    claim to the worker's done write, and that write to its commit."""
    at: dict[tuple[str, str], float] = {}
    after = 0
    while page := await rt.store.events_after(after, limit=5000):
        for event in page:
            if event.job_id in submitted:
                at[(event.job_id, str(event.type))] = event.created_at.timestamp()
        after = page[-1].id
    parts: dict[str, list[float]] = {"to_claim": [], "claim_to_done": [], "done_commit": []}
    for job_id, before in submitted.items():
        running = at[(job_id, "content_job.running")]
        done = at[(job_id, "content_job.done")]
        parts["to_claim"].append(running - before)
        parts["claim_to_done"].append(done - running)
        parts["done_commit"].append(worker.done[job_id] - done)
    return {k: statistics.median(v) * 1000 for k, v in parts.items()}


@contextmanager
def profiled(pid: int, out: Path | None) -> Iterator[None]:
    if out is None:
        yield
        return
    spy_bin = str(Path(sys.executable).with_name("py-spy"))
    spy = subprocess.Popen(
        [spy_bin, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "-r", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=30)


def one_round(workers: int, args: argparse.Namespace, round_no: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, database("pg", args.pg, Path(tmp)) as url:
        trio.run(_migrate, url)
        worker = WorkerProcess(url, workers)
        try:
            out = None
            if args.profile is not None:
                out = Path(args.profile) / f"worker-{workers}-round{round_no}.txt"
            with profiled(worker.pid, out):
                return trio.run(produce, url, worker, args)
        finally:
            worker.stop()


def describe(workers: int, r: dict[str, float], args: argparse.Namespace) -> str:
    parts = []
    if "burst" in r:
        parts.append(
            f"burst {args.jobs:,}: {r['burst']:,.0f} jobs/s "
            f"in {r['burst_seconds']:.2f} s, submitted in {r['burst_submit_seconds']:.2f} s "
            f"(CPU s: worker node {r['burst_cpu']:.2f}, "
            f"producer {r['burst_producer_cpu']:.2f}, PostgreSQL {r['burst_pg_cpu']:.2f})"
        )
    if "p50" in r:
        parts.append(
            f"paced {args.rate:g}/s: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms "
            f"(medians: submit to claim {r['to_claim']:.1f}, claim to done "
            f"{r['claim_to_done']:.1f}, done to its commit {r['done_commit']:.1f})"
        )
    return f"{workers} workers: " + "; ".join(parts)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker-node":
        trio.run(worker_node, sys.argv[2], int(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", default="10,100")
    parser.add_argument("--jobs", type=int, default=5_000)
    parser.add_argument("--batch", type=int, default=500, help="jobs per submit_many call")
    parser.add_argument("--paced", type=int, default=1_000, help="jobs of the paced run")
    parser.add_argument("--rate", type=float, default=100.0, help="paced submits per second")
    parser.add_argument("--only", default="burst,paced")
    parser.add_argument("--pg", default=benchkit.PG_ADMIN)
    parser.add_argument("--profile", default=None, help="py-spy raw profiles into this dir")
    parser.add_argument(
        "--activity", action="store_true", help="sample pg_stat_activity during each burst"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    for round_no in range(1, args.rounds + 1):
        for workers in counts:
            r = one_round(workers, args, round_no)
            results[workers].append(r)
            print(f"round {round_no}, {describe(workers, r, args)}", flush=True)
    for workers in counts:
        rounds = results[workers]
        median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(f"median of {len(rounds)}, {describe(workers, median, args)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
