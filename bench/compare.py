"""callboard beside its peers, on the same PostgreSQL, in one table anyone can re-run.

    .venv/bin/pip install -e '.[bench]'      # the peers: never runtime dependencies
    .venv/bin/python bench/compare.py [--rounds 3] [--quick] [--lock FILE] [--json FILE]
        [--systems callboard,saq-pg,procrastinate,saq-redis,arq]
        [--scenarios burst10,burst100,paced,io100,http]

Systems: callboard (PostgreSQL store), SAQ with its PostgreSQL queue, Procrastinate
(psycopg), and, when a Redis server answers at --redis (127.0.0.1:6379 by default),
SAQ with its Redis queue and arq. Every peer runs with its defaults except its
concurrency; what each one is given is in bench/peers/side_*.py.

Every measurement runs on a fresh store: a new PostgreSQL database created on --pg
and dropped afterwards (a Redis database index flushed before and after), so no run
inherits another's rows. The producer and the worker are two separate processes
(bench/peers/side.py); for callboard the producer is a node with no workers,
`Board(workers=0)`, submitting through `submit_many` (batches of 500) or `submit`,
and the worker a node `Board(workers=N)` on the same database.

WHAT "DONE" MEANS, the same for every system: the `time.time()` at which the worker
process itself learns that the job's terminal state has been stored, i.e. after the
commit, in the worker process:
- callboard: the node's broker publishes the job's terminal event (`content_job.done`);
  a commit's events reach the broker after the commit (`RunningBoard.observe_events`);
- SAQ: its `after_process` hook, which runs after `job.finish()` wrote the status;
- Procrastinate: the return of `job_manager.finish_job` (the statement that stores the
  terminal status; Procrastinate has no hook after it, so the worker wraps that call);
- arq: its `after_job_end` hook ("after the job has ended and results have been
  recorded").
A job whose stored status is not a success fails the measurement, as does a job
missing after --deadline seconds.

Scenarios (each figure is the median of --rounds rounds, with min-max):
- burst10 / burst100: --jobs noop jobs (5,000) are enqueued first, by a producer that
  then exits; then a worker process with 10 (100) workers starts. jobs/s = jobs /
  (last job done - worker start), where worker start is the `time.time()` just before
  the worker opens its connections (after its imports);
- paced: the worker (10 workers) runs first; once it says it is ready and 1 s has
  passed, the producer submits one noop job every 1/--rate s (100/s) for
  --paced-seconds (10 s), open loop (a slow submit does not delay the next), after
  one second of warm-up jobs that are not counted. Latency of a job = its done time
  (above) - the producer's `time.time()` just before its submit call; p50 and p99;
- io100: like burst100, with a job that waits 10 ms on a timer (trio.sleep /
  asyncio.sleep) instead of nothing;
- http (callboard only; the peers have no HTTP API of their own): `callboard serve
  --workers 0` on a fresh PostgreSQL database, loaded by wrk for --http-seconds:
  single submits `POST .../content-jobs {"jobType":"noop"}` from 50 connections
  (requests/s, p50, p99), then batches of 500 `POST .../content-jobs/batch` from 4
  connections (requests/s and jobs/s). Answers other than 202 are counted and shown.

Systems are alternated: every scenario of a round runs each system in turn, and the
order rotates from round to round, so the machine's noise hits all alike. With --lock
each measurement holds that file's lock (flock), so other benchmarks on the machine
can take turns between measurements but never run during one. The last columns
give callboard / peer of the medians: above 1 means callboard is faster for jobs/s,
and slower for a latency. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from benchkit import PG_ADMIN, Failed, Serve, fresh_database, nearest_rank, post_script, wrk

HERE = Path(__file__).resolve().parent
SIDE = HERE / "peers" / "side.py"
DASH = "\N{EN DASH}"
SETTLE = 1.0  # seconds between a worker saying ready and the paced producer starting


@dataclass(frozen=True)
class System:
    name: str
    label: str
    side: str  # the module family of bench/peers/side.py
    backend: str  # "pg" or "redis"


SYSTEMS = [
    System("callboard", "callboard", "callboard", "pg"),
    System("saq-pg", "SAQ-PG", "saq", "pg"),
    System("procrastinate", "Procrastinate", "procrastinate", "pg"),
    System("saq-redis", "SAQ-Redis", "saq", "redis"),
    System("arq", "arq", "arq", "redis"),
]
SCENARIOS = ["burst10", "burst100", "paced", "io100", "http"]


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str  # "/s" or "ms"


ROWS = [
    Row("burst10", "burst, 10 workers, jobs/s", "/s"),
    Row("burst100", "burst, 100 workers, jobs/s", "/s"),
    Row("paced_p50", "paced 100/s, submit to done p50, ms", "ms"),
    Row("paced_p99", "paced 100/s, submit to done p99, ms", "ms"),
    Row("io100", "10 ms I/O job, 100 workers, jobs/s", "/s"),
    Row("http_single_rps", "HTTP single submit, 50 clients, requests/s", "/s"),
    Row("http_single_p50", "HTTP single submit p50, ms", "ms"),
    Row("http_single_p99", "HTTP single submit p99, ms", "ms"),
    Row("http_batch_rps", "HTTP batch of 500, 4 clients, requests/s", "/s"),
    Row("http_batch_jobs", "HTTP batch of 500, jobs/s", "/s"),
]


# --- stores ------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_pg(admin_url: str, system: str) -> Iterator[str]:
    with fresh_database(admin_url, f"cb_compare_{system.replace('-', '_')}") as url:
        yield url


def redis_command(url: str, *words: str) -> str:
    """One command on a plain socket (RESP), after SELECTing the URL's database."""
    parts = urlsplit(url)
    db = (parts.path or "/0").lstrip("/") or "0"
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 2) as s:
        replies = []
        for command in (("SELECT", db), words):
            s.sendall(
                f"*{len(command)}\r\n".encode()
                + b"".join(f"${len(w)}\r\n{w}\r\n".encode() for w in command)
            )
            replies.append(s.recv(4096).decode(errors="replace").strip())
        return replies[-1]


def redis_reachable(url: str) -> bool:
    try:
        return redis_command(url, "PING") == "+PONG"
    except OSError:
        return False


@contextlib.contextmanager
def fresh_redis(url: str) -> Iterator[str]:
    redis_command(url, "FLUSHDB")
    try:
        yield url
    finally:
        redis_command(url, "FLUSHDB")


@contextlib.contextmanager
def fresh_store(args: argparse.Namespace, system: System) -> Iterator[str]:
    if system.backend == "redis":
        with fresh_redis(args.redis) as url:
            yield url
        return
    with fresh_pg(args.pg, system.name) as url:
        # Schemas are made here, outside any timing (callboard and SAQ also make theirs
        # when they connect; doing it first keeps it out of a worker's start).
        side(args, "setup", system, url, [])
        yield url


@contextlib.contextmanager
def bench_lock(path: str | None) -> Iterator[None]:
    if not path:
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --- the two sides -----------------------------------------------------------------------


def _command(role: str, system: System, url: str, extra: list[str]) -> list[str]:
    return [sys.executable, str(SIDE), role, system.side, "--db", url, *extra]


def side(args: argparse.Namespace, role: str, system: System, url: str, extra: list[str]) -> None:
    """Run a producer (or a setup) to the end."""
    done = subprocess.run(
        _command(role, system, url, extra),
        capture_output=True,
        text=True,
        timeout=args.deadline + 30,
        check=False,
    )
    if done.returncode != 0:
        raise Failed(f"{system.name} {role} exited {done.returncode}:\n{done.stderr[-2000:]}")


class Worker:
    """A worker process; its stdout lines ("ready", "recorded") arrive on a queue."""

    def __init__(self, args: argparse.Namespace, system: System, url: str, extra: list[str]):
        self.deadline = args.deadline
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            _command("worker", system, url, [*extra, "--deadline", str(args.deadline)]),
            stdout=subprocess.PIPE,
            stderr=self.errors,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def wait_for(self, word: str, timeout: float) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, end - time.monotonic()))
            except queue.Empty:
                raise Failed(f"the worker did not say {word!r} in {timeout:.0f} s") from None
            if line == word:
                return
            if line is None:
                raise Failed(f"the worker exited before saying {word!r}: {self.stderr()}")

    def stderr(self) -> str:
        self.errors.seek(0)
        return self.errors.read()[-2000:]

    def finish(self) -> None:
        """Wait for the record, then for the exit (ended after 15 s: its record is
        written, and a peer's teardown is not what is measured)."""
        try:
            self.wait_for("recorded", self.deadline + 30)
        finally:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.errors.close()


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _check(worker: dict, produced: dict, expect: int) -> None:
    if worker["timed_out"]:
        raise Failed(f"only {len(worker['done'])} of {expect} jobs done before the deadline")
    if worker["failed"]:
        raise Failed(f"{len(worker['failed'])} jobs did not succeed: {worker['failed']}")
    missing = set(produced["submitted"]) - set(worker["done"])
    if missing or len(produced["submitted"]) != expect:
        raise Failed(f"{len(missing)} submitted jobs never recorded as done")


# --- scenarios ---------------------------------------------------------------------------


def burst(
    args: argparse.Namespace, system: System, url: str, workers: int, job: str
) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        p, w = Path(tmp) / "p.json", Path(tmp) / "w.json"
        common = ["--job", job, "--out"]
        side(args, "producer", system, url, [*common, str(p), "--count", str(args.jobs)])
        worker = Worker(
            args,
            system,
            url,
            [*common, str(w), "--workers", str(workers), "--expect", str(args.jobs)],
        )
        worker.finish()
        rec, produced = _load(w), _load(p)
    _check(rec, produced, args.jobs)
    seconds = max(rec["done"].values()) - rec["t_start"]
    note = (
        f"start {1000 * (rec['t_ready'] - rec['t_start']):.0f} ms, "
        f"worker CPU {1000 * rec['cpu'] / args.jobs:.2f} ms/job"
    )
    return args.jobs / seconds, note


def paced(args: argparse.Namespace, system: System, url: str) -> tuple[float, float, str]:
    count = round(args.rate * args.paced_seconds)
    warmup = round(args.rate)  # one second
    with tempfile.TemporaryDirectory() as tmp:
        p, w = Path(tmp) / "p.json", Path(tmp) / "w.json"
        worker = Worker(
            args,
            system,
            url,
            ["--out", str(w), "--workers", "10", "--expect", str(count + warmup)],
        )
        try:
            worker.wait_for("ready", 60)
            time.sleep(SETTLE)
            side(
                args,
                "producer",
                system,
                url,
                [
                    *("--out", str(p), "--mode", "paced", "--count", str(count)),
                    *("--warmup", str(warmup), "--rate", str(args.rate)),
                ],
            )
        finally:
            worker.finish()
        rec, produced = _load(w), _load(p)
    _check(rec, produced, count + warmup)
    skip = set(produced["warmup"])
    latencies = sorted(
        1000 * (rec["done"][job] - t) for job, t in produced["submitted"].items() if job not in skip
    )
    return nearest_rank(latencies, 50), nearest_rank(latencies, 99), f"max {latencies[-1]:.1f} ms"


# --- callboard over HTTP -----------------------------------------------------------------


def http(args: argparse.Namespace, url: str) -> tuple[dict[str, float], str]:
    with tempfile.TemporaryDirectory() as tmp:
        server = Serve(Path(tmp) / "data", ["--workers", "0", "--database", url])
        try:
            base = server.wait_started(fail=Failed)
            token = server.token
            answer = httpx.post(
                f"{base}/api/companies",
                json={"name": "bench"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            answer.raise_for_status()
            jobs = f"{base}/api/companies/{answer.json()['id']}/content-jobs"
            single = post_script(Path(tmp) / "single.lua", '{"jobType":"noop"}', token)
            body = json.dumps({"jobs": [{"jobType": "noop"}] * args.batch}, separators=(",", ":"))
            batch = post_script(Path(tmp) / "batch.lua", body, token)
            timeout = args.http_seconds + 60
            one = wrk(jobs, args.http_seconds, single, 50, timeout)
            many = wrk(jobs + "/batch", args.http_seconds, batch, 4, timeout)
        finally:
            server.stop()
    figures = {
        "http_single_rps": one.rps,
        "http_single_p50": one.p50,
        "http_single_p99": one.p99,
        "http_batch_rps": many.rps,
        "http_batch_jobs": many.rps * args.batch,
    }
    note = f"non-202 answers: single {one.non2xx:.0f}, batch {many.non2xx:.0f}"
    return figures, note


# --- rounds and the table ----------------------------------------------------------------


def measure(
    args: argparse.Namespace, scenario: str, system: System, results: dict[tuple[str, str], list]
) -> None:
    started = time.monotonic()
    try:
        with fresh_store(args, system) as url, bench_lock(args.lock):
            if scenario in ("burst10", "burst100", "io100"):
                workers = 10 if scenario == "burst10" else 100
                rate, note = burst(
                    args, system, url, workers, "io" if scenario == "io100" else "noop"
                )
                figures = {scenario: rate}
            elif scenario == "paced":
                p50, p99, note = paced(args, system, url)
                figures = {"paced_p50": p50, "paced_p99": p99}
            else:
                figures, note = http(args, url)
    except (Failed, subprocess.SubprocessError) as exc:
        print(f"  {scenario:9} {system.name:14} FAILED: {exc}", flush=True)
        return
    for key, value in figures.items():
        results[(key, system.name)].append(value)
    save(args.json, results)
    units = {row.key: row.unit for row in ROWS}
    shown = ", ".join(f"{k} {fmt(v, units[k])}" for k, v in figures.items())
    print(
        f"  {scenario:9} {system.name:14} {shown}  ({note}; {time.monotonic() - started:.1f} s)",
        flush=True,
    )


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.1f}"
    return f"{value:,.0f}"


def cell(values: list[float], unit: str, rounds: int) -> str:
    if not values:
        return "n/a"
    median = fmt(statistics.median(values), unit)
    # A round whose measurement failed or never ran (Ctrl-C) is left out: say so.
    short = f" [{len(values)} of {rounds}]" if len(values) < rounds else ""
    if len(values) == 1:
        return median + short
    return f"{median} ({fmt(min(values), unit)}{DASH}{fmt(max(values), unit)}){short}"


def table(results: dict[tuple[str, str], list], systems: list[System]) -> str:
    peers = [s for s in systems if s.name != "callboard"]
    rounds = max((len(v) for v in results.values()), default=0)
    head = [f"figure (median of {rounds} rounds, min{DASH}max)", "callboard"]
    for peer in peers:
        head += [peer.label, f"callboard / {peer.label}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        ours = results.get((row.key, "callboard"), [])
        if not ours and not any(results.get((row.key, p.name)) for p in peers):
            continue
        cells = [row.label, cell(ours, row.unit, rounds)]
        for peer in peers:
            theirs = results.get((row.key, peer.name), [])
            ratio = DASH
            if ours and theirs:
                ratio = f"{statistics.median(ours) / statistics.median(theirs):.2f}x"
            cells += [cell(theirs, row.unit, rounds) if theirs else DASH, ratio]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=5000, help="jobs of a burst (and io100)")
    parser.add_argument("--rate", type=float, default=100.0, help="paced submits per second")
    parser.add_argument("--paced-seconds", type=float, default=10.0)
    parser.add_argument("--http-seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=500, help="jobs per HTTP batch")
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds per worker run")
    parser.add_argument("--pg", default=PG_ADMIN)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--systems", default="", help="comma-separated; default: all reachable")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--lock", default=None, help="flock this file around each measurement")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    parser.add_argument(
        "--quick", action="store_true", help="1 round, 1,000 jobs, 3 s phases: a smoke run"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.jobs, args.paced_seconds, args.http_seconds = 1, 1000, 3.0, 3.0
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    systems = [s for s in SYSTEMS if not names or s.name in names]
    if not names and not redis_reachable(args.redis):
        print(f"no Redis at {args.redis}: SAQ-Redis and arq left out")
        systems = [s for s in systems if s.backend != "redis"]
    scenarios = [s for s in args.scenarios.split(",") if s]
    if "http" in scenarios and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk): the HTTP rows are left out")
        scenarios.remove("http")
    print(f"systems: {', '.join(s.name for s in systems)}; scenarios: {', '.join(scenarios)}")
    results: dict[tuple[str, str], list] = defaultdict(list)
    started = time.monotonic()
    try:
        for number in range(args.rounds):
            print(f"round {number + 1} of {args.rounds}", flush=True)
            for scenario in scenarios:
                if scenario == "http":
                    if any(s.name == "callboard" for s in systems):
                        measure(args, scenario, SYSTEMS[0], results)
                    continue
                shift = number % len(systems)
                for system in systems[shift:] + systems[:shift]:
                    measure(args, scenario, system, results)
    except KeyboardInterrupt:
        print("\ninterrupted: the table of what was measured so far")
    print(f"\n{time.monotonic() - started:.0f} s in all\n")
    print(table(results, systems))
    save(args.json, results)
    return 0


def save(path: str | None, results: dict[tuple[str, str], list]) -> None:
    """Every figure so far, rewritten after each measurement (a long run can be cut)."""
    if path:
        data = {f"{k}/{s}": v for (k, s), v in sorted(results.items())}
        Path(path).write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    sys.exit(main())
