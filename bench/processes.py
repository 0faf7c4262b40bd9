"""`callboard serve --processes N` on PostgreSQL: how HTTP submits and job throughput
grow from 1 process to 2 (or more), side by side in one run.

Each round, for every N in --processes (alternated, so the machine's noise hits all
alike), on a fresh PostgreSQL database and a fresh data dir:

1. start `python -m callboard serve --processes N --bind 127.0.0.1:0 --database URL`
   (default workers, 8 per process) and wait until every process serves;
2. create a company with the operator token;
3. `healthz req/s`: `wrk -t1 -c50 -d3s` on `/healthz` (no store behind it: how the
   HTTP front door alone grows with the processes);
4. submit: `wrk -t1 -c50 -d<--seconds>s --latency` POSTing `{"jobType":"noop"}` to
   `/api/companies/{id}/content-jobs` (a Lua script sets the method, body and token):
   - `submit req/s`, `p50/p99 ms`: wrk's own figures; `non-2xx`: answers other than 202;
   - `done/s under load`: jobs that reached `done` during the wrk run / its length
     (`counts.done` of `/api/stats`, read before and after), i.e. how much of what
     was accepted the nodes also ran while they were accepting;
   - `nodes CPU %`: user + system CPU of the whole process tree (parent and children)
     over the wrk run, in % of one core; `host CPU %`: the whole machine's busy CPU
     (PostgreSQL and wrk included) over the same time, 100 % per core;
5. drain: after wrk ends, the time until nothing is queued or running (capped at
   --drain seconds); `drain jobs/s` = the backlog left when wrk ended / that time: job
   throughput with no HTTP load; the CPU of the nodes and of the machine over it;
6. stop the server with SIGTERM (it must exit 0).

Then the median of each figure per N over the rounds, and the ratio N / first N.
Figures are printed, never asserted. Clients and servers share this machine (2 cores
here): wrk's own CPU competes with the nodes.

Command (from the repo root; wrap it in `flock /tmp/cb-bench.lock` on a shared box):

    .venv/bin/python bench/processes.py [--processes 1,2] [--rounds 3] [--seconds 8]
        [--drain 30] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ONE = re.compile(r"serving the API on (http://\S+)")
ALL = re.compile(r"all \d+ processes serve (http://\S+);")
LUA = """wrk.method = "POST"
wrk.body = '{"jobType":"noop"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
"""
HEALTHZ_SECONDS = 3
FIGURES = (
    "healthz req/s",
    "req/s",
    "p50 ms",
    "p99 ms",
    "non-2xx",
    "done/s load",
    "nodes CPU %",
    "host CPU %",
    "drain jobs/s",
    "drain nodes CPU %",
    "drain host CPU %",
)


# --- the database and the server ---------------------------------------------------


async def _admin(url: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"callboard_bench_procs_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Server:
    """`callboard serve --processes N`; its output (the children's too) is drained by a
    thread, or a full pipe would block the nodes once access logs fill it."""

    def __init__(self, processes: int, url: str, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.tail: collections.deque[str] = collections.deque(maxlen=100)
        self.url: str | None = None
        self._ready = ONE if processes == 1 else ALL
        self._found = threading.Event()
        env = {**os.environ, "CALLBOARD_DATA_DIR": str(data_dir)}
        command = [sys.executable, "-m", "callboard", "serve", "--bind", "127.0.0.1:0"]
        command += ["--processes", str(processes), "--database", url]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=data_dir.parent,
            process_group=0,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.tail.append(line.rstrip("\n"))
            found = self._ready.search(line)
            if found and self.url is None:
                self.url = found.group(1)
                self._found.set()
        self._found.set()

    def wait_started(self) -> str:
        self._found.wait(60)
        if self.url is None:
            self.stop()
            raise SystemExit("serve did not start:\n" + "\n".join(self.tail))
        return self.url

    @property
    def token(self) -> str:
        return (self.data_dir / "operator.token").read_text().strip()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def cpu_seconds(self) -> float:
        """User + system CPU of the parent and its children (Linux /proc)."""
        total = 0.0
        for pid in [self.proc.pid, *_children(self.proc.pid)]:
            try:
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return total


def _children(pid: int) -> list[int]:
    """Children of every thread of `pid` (trio may spawn from a worker thread)."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def host_busy_seconds() -> float:
    """CPU seconds every core of the machine spent not idle (/proc/stat): PostgreSQL
    and wrk included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- one measurement ---------------------------------------------------------------


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, seconds: int, script: Path | None = None) -> dict[str, float]:
    command = ["wrk", "-t1", "-c50", f"-d{seconds}s", "--latency", url]
    if script is not None:
        command[-1:-1] = ["-s", str(script)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    figures = {"req/s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, name in (("50", "p50 ms"), ("99", "p99 ms")):
        figures[name] = _ms(re.search(rf"^\s+{pct}%\s+(\S+)", out, re.MULTILINE).group(1))  # type: ignore[union-attr]
    non = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    figures["non-2xx"] = float(non.group(1)) if non else 0.0
    return figures


def one_round(processes: int, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, fresh_database(args.pg) as url:
        server = Server(processes, url, Path(tmp) / "data")
        try:
            base = server.wait_started()
            http = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
            )
            with http:
                company = http.post("/api/companies", json={"name": "bench"}).json()["id"]

                def counts() -> dict[str, int]:
                    return http.get("/api/stats").json()["counts"]

                healthz = wrk(f"{base}/healthz", HEALTHZ_SECONDS)["req/s"]
                script = Path(tmp) / "submit.lua"
                script.write_text(LUA % server.token)
                done_before = counts()["done"]
                cpu_before, host_before = server.cpu_seconds(), host_busy_seconds()
                wall_before = time.perf_counter()
                submit_url = f"{base}/api/companies/{company}/content-jobs"
                figures = wrk(submit_url, args.seconds, script)
                figures["healthz req/s"] = healthz
                wall = time.perf_counter() - wall_before
                cpu = server.cpu_seconds() - cpu_before
                figures["host CPU %"] = 100 * (host_busy_seconds() - host_before) / wall
                after = counts()
                figures["done/s load"] = (after["done"] - done_before) / wall
                figures["nodes CPU %"] = 100 * cpu / wall
                backlog = after["queued"] + after["running"]
                cpu_before, host_before = server.cpu_seconds(), host_busy_seconds()
                start = time.perf_counter()
                deadline = start + args.drain
                while backlog and time.perf_counter() < deadline:
                    now = counts()
                    if now["queued"] + now["running"] == 0:
                        break
                    time.sleep(0.05)
                else:
                    now = counts()
                left = now["queued"] + now["running"]
                wall = time.perf_counter() - start
                figures["drain jobs/s"] = (backlog - left) / wall if backlog else float("nan")
                figures["drain nodes CPU %"] = 100 * (server.cpu_seconds() - cpu_before) / wall
                figures["drain host CPU %"] = 100 * (host_busy_seconds() - host_before) / wall
        finally:
            code = server.stop()
        if code != 0:
            raise SystemExit(f"serve exited {code}:\n" + "\n".join(server.tail))
        return figures


def show(label: str, figures: dict[str, float]) -> str:
    return f"{label:<14}" + "".join(f"{figures[name]:>18,.1f}" for name in FIGURES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8, help="length of each wrk run")
    parser.add_argument("--drain", type=float, default=30.0, help="most seconds to drain")
    parser.add_argument(
        "--pg",
        default=os.environ.get("CALLBOARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a maintenance database URL; a fresh database is made next to it each round",
    )  # fmt: skip
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    counts = [int(n) for n in args.processes.split(",")]
    print(f"{'':<14}" + "".join(f"{name:>18}" for name in FIGURES))
    results: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
    for round_no in range(1, args.rounds + 1):
        for n in counts if round_no % 2 else reversed(counts):
            figures = one_round(n, args)
            results[n].append(figures)
            print(show(f"r{round_no} {n} proc", figures), flush=True)
    print("medians:")
    medians = {
        n: {name: statistics.median(r[name] for r in runs) for name in FIGURES}
        for n, runs in results.items()
    }
    first = medians[counts[0]]
    for n in counts:
        print(show(f"{n} proc", medians[n]))
    for n in counts[1:]:
        ratios = {
            name: medians[n][name] / first[name] if first[name] else float("nan")
            for name in FIGURES
        }
        print(show(f"{n}/{counts[0]} ratio", ratios))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
