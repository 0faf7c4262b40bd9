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
import contextlib
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import benchkit
import httpx

ALL = re.compile(r"all \d+ processes serve (http://\S+);")
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


# --- the server ----------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its children (Linux /proc)."""
    total = 0.0
    for one in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            total += benchkit.cpu_seconds(one)
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


def wrk(url: str, seconds: int, script: Path | None = None) -> dict[str, float]:
    run = benchkit.wrk(url, seconds, script)
    return {"req/s": run.rps, "p50 ms": run.p50, "p99 ms": run.p99, "non-2xx": run.non2xx}


def one_round(processes: int, args: argparse.Namespace) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        benchkit.fresh_database(args.pg, "callboard_bench_procs") as url,
    ):
        server = benchkit.Serve(
            Path(tmp) / "data",
            ["--processes", str(processes), "--database", url],
            ready=benchkit.SERVING if processes == 1 else ALL,
            group=True,
        )
        try:
            base = server.wait_started(60)
            http = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
            )
            with http:
                company = http.post("/api/companies", json={"name": "bench"}).json()["id"]

                def counts() -> dict[str, int]:
                    return http.get("/api/stats").json()["counts"]

                healthz = wrk(f"{base}/healthz", HEALTHZ_SECONDS)["req/s"]
                script = benchkit.post_script(
                    Path(tmp) / "submit.lua", '{"jobType":"noop"}', server.token
                )
                done_before = counts()["done"]
                cpu_before, host_before = tree_cpu_seconds(server.pid), host_busy_seconds()
                wall_before = time.perf_counter()
                submit_url = f"{base}/api/companies/{company}/content-jobs"
                figures = wrk(submit_url, args.seconds, script)
                figures["healthz req/s"] = healthz
                wall = time.perf_counter() - wall_before
                cpu = tree_cpu_seconds(server.pid) - cpu_before
                figures["host CPU %"] = 100 * (host_busy_seconds() - host_before) / wall
                after = counts()
                figures["done/s load"] = (after["done"] - done_before) / wall
                figures["nodes CPU %"] = 100 * cpu / wall
                backlog = after["queued"] + after["running"]
                cpu_before, host_before = tree_cpu_seconds(server.pid), host_busy_seconds()
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
                figures["drain nodes CPU %"] = (
                    100 * (tree_cpu_seconds(server.pid) - cpu_before) / wall
                )
                figures["drain host CPU %"] = 100 * (host_busy_seconds() - host_before) / wall
        finally:
            code = server.stop(60)
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
        default=os.environ.get("CALLBOARD_BENCH_PG_URL", benchkit.PG_ADMIN),
        help="a maintenance database URL; a fresh database is made next to it each round",
    )
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
