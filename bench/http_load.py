"""HTTP load on a real `callboard serve`: job submission, then SSE fan-out.

Each round starts a fresh server as a subprocess (`python -m callboard serve --bind
127.0.0.1:0`, `CALLBOARD_DATA_DIR` in a new temporary directory, embedded SQLite),
creates a company with the operator token, and measures two things:

1. Submit: `--concurrency` client tasks, each with its OWN `httpx.AsyncClient` (so one
   keep-alive connection per client), send `POST /api/companies/{id}/content-jobs
   {"jobType": "noop"}` back to back until `--requests` requests were sent in total.
   Every answer must be 202 (others are counted and shown).
   - `submit req/s`: requests / wall time from the first send to the last answer.
   - `submit p50/p99/max ms`: latency of one request (send to answer, client side).
   Then the benchmark waits until the server has run all those noop jobs (so their
   events do not flow into the fan-out phase) and prints how long that took.

2. SSE fan-out: `--subscribers` subscribers on the company feed
   `GET /api/companies/{id}/events` (httpx_sse.aconnect_sse, one shared
   `httpx.AsyncClient` with a pool of subscribers + 10 connections, read timeout None),
   opened in batches of 50 (each batch's response headers arrive before the next batch
   starts, so the listen backlog is never flooded), until `GET /api/stats` reports
   `events.subscribers >= N`. Then `--jobs` noop jobs are submitted one by one, each
   100 ms after the previous submit's answer. Each job makes 3 events (queued,
   running, done), so every subscriber must receive 3 * jobs events of those jobs.
   - `open s`: time to open all subscribers and see them in /api/stats.
   - `delivery p50/p99/max ms`: for every event received by every subscriber,
     client receive time (`time.time()` when httpx-sse yields it) minus the event's
     `createdAt` (the server's commit time). Client and server run on the same
     machine, so the clocks are the same. It does not include how long the server
     took to commit the event in the first place (a busy server commits later).
   - `fan-out wall s`: first submit of the phase to the last event received by any
     subscriber; the line also shows events/s delivered, the submits' own latency
     during the fan-out, and the CPU used by server and clients.
   - `delivered`: events received (of those jobs) / expected (subscribers * 3 * jobs),
     and how many subscribers got all of them. Events arriving out of id order (or
     twice) and streams that ended early are counted separately.
   After the subscribers close, /api/stats must report the subscriber count back at
   its baseline (a leak would show here).

Clients and server share this machine (2 cores here): the figures include the
clients' own CPU use (1,000 SSE parsers compete with the server for the cores), so
read them as a lower bound of what the server alone can do.

`--rounds` rounds (each with a fresh server and data dir) run, each is printed, then
the median of each figure over the rounds. Figures are printed, never asserted.

Command (from the repo root):

    .venv/bin/python bench/http_load.py [--requests 5000] [--concurrency 50]
        [--subscribers 1000] [--jobs 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import benchkit
import httpx
import trio
from httpx_sse import aconnect_sse

SSE_BATCH = 50
JOB_SPACING = 0.1
EVENTS_PER_JOB = 3  # queued, running, done
DELIVERY_DEADLINE = 60.0  # seconds after the last job was submitted
API_TIMEOUT = httpx.Timeout(30.0)


# --- the server subprocess ---------------------------------------------------------

SERVER_ERRORS = re.compile(r' ERROR |Traceback|" 5\d\d ')


def stop_server(server: benchkit.Serve) -> tuple[float, int]:
    """SIGTERM, wait up to 30 s, then SIGKILL. Returns (seconds, exit code)."""
    start = time.monotonic()
    code = server.stop()
    return time.monotonic() - start, code


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of this process, or of `pid` from /proc (Linux)."""
    if pid is None:
        return time.process_time()
    try:
        return benchkit.cpu_seconds(pid)
    except OSError:
        return float("nan")


class CpuMeter:
    """Client and server CPU seconds over a phase, to tell who used the cores."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.wall = time.perf_counter()
        self.client = cpu_seconds()
        self.server = cpu_seconds(server_pid)

    def report(self) -> str:
        wall = time.perf_counter() - self.wall
        client = cpu_seconds() - self.client
        server = cpu_seconds(self.pid) - self.server
        return (
            f"CPU over {wall:.1f} s: server {server:.1f} s ({100 * server / wall:.0f} % of a "
            f"core), clients {client:.1f} s ({100 * client / wall:.0f} %)"
        )


# --- figures -------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@dataclass
class Round:
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


FIGURES = [
    ("submit req/s", "submit_rps", "{:.0f}"),
    ("submit p50 ms", "submit_p50", "{:.1f}"),
    ("submit p99 ms", "submit_p99", "{:.1f}"),
    ("submit max ms", "submit_max", "{:.1f}"),
    ("backlog drain s", "drain_s", "{:.2f}"),
    ("sse open s", "open_s", "{:.2f}"),
    ("delivery p50 ms", "sse_p50", "{:.1f}"),
    ("delivery p99 ms", "sse_p99", "{:.1f}"),
    ("delivery max ms", "sse_max", "{:.1f}"),
    ("delivered %", "delivered_pct", "{:.2f}"),
    ("fan-out wall s", "fanout_s", "{:.2f}"),
    ("server stop s", "stop_s", "{:.2f}"),
]


# --- phase 1: submit -------------------------------------------------------------------


async def submit_phase(
    url: str, token: str, company: str, requests: int, concurrency: int, pid: int, r: Round
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/api/companies/{company}/content-jobs"
    body = {"jobType": "noop"}
    latencies: list[float] = []
    bad: collections.Counter[int] = collections.Counter()
    bad_examples: list[str] = []
    errors: list[str] = []
    sent = 0

    # One client (one keep-alive connection) per task, created before the clock starts.
    clients = [
        httpx.AsyncClient(base_url=url, headers=headers, timeout=API_TIMEOUT)
        for _ in range(concurrency)
    ]

    async def client_task(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while sent < requests:
            sent += 1
            t0 = time.perf_counter()
            try:
                resp = await client.post(path, json=body)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - t0)
            if resp.status_code != 202:
                bad[resp.status_code] += 1
                if len(bad_examples) < 3:
                    bad_examples.append(f"{resp.status_code} {resp.text[:200]}")

    try:
        meter = CpuMeter(pid)
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for client in clients:
                nursery.start_soon(client_task, client)
        elapsed = time.perf_counter() - start
        cpu = meter.report()
    finally:
        for client in clients:
            await client.aclose()

    ms = [x * 1000 for x in latencies]
    r.figures.update(
        submit_rps=len(latencies) / elapsed,
        submit_p50=pct(ms, 50),
        submit_p99=pct(ms, 99),
        submit_max=max(ms, default=float("nan")),
    )
    ok = len(latencies) - sum(bad.values())
    print(
        f"  submit: {len(latencies)} answers ({ok} x 202) in {elapsed:.2f} s with "
        f"{concurrency} clients: {r.figures['submit_rps']:.0f} req/s; latency p50 "
        f"{r.figures['submit_p50']:.1f} ms, p99 {r.figures['submit_p99']:.1f} ms, "
        f"max {r.figures['submit_max']:.1f} ms"
    )
    print(f"  submit: {cpu}")
    if bad or errors:
        note = f"submit: non-202 {dict(bad)} e.g. {bad_examples}; transport errors {len(errors)}"
        if errors:
            note += f" e.g. {errors[:3]}"
        r.notes.append(note)
        print("  !! " + note)


async def wait_drained(api: httpx.AsyncClient, total: int, r: Round) -> None:
    """Wait until the server ran every submitted job (their events would otherwise
    flow into the fan-out phase)."""
    start = time.perf_counter()
    deadline = start + 300
    while True:
        stats = (await api.get("/api/stats")).json()
        counts = stats["counts"]
        finished = counts.get("done", 0) + counts.get("failed", 0) + counts.get("cancelled", 0)
        if finished >= total and counts.get("queued", 0) == 0 and counts.get("running", 0) == 0:
            break
        if time.perf_counter() > deadline:
            r.notes.append(f"backlog not drained after 300 s: {counts}")
            break
        await trio.sleep(0.1)
    r.figures["drain_s"] = time.perf_counter() - start
    if counts.get("done", 0) != total:
        r.notes.append(f"after the submit phase, counts are {counts} (expected {total} done)")
    print(
        f"  backlog: all {total} noop jobs finished {r.figures['drain_s']:.2f} s after "
        f"the last submit answer (counts {counts})"
    )


# --- phase 2: SSE fan-out --------------------------------------------------------------


@dataclass
class FanOut:
    expected_per_sub: int
    job_ids: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)  # ms, one per received event
    per_sub: list[collections.Counter[str]] = field(default_factory=list)  # jobId -> events
    received: int = 0
    extra: int = 0  # events of other jobs (none expected: the backlog was drained)
    complete: int = 0  # subscribers that got every expected event of every job
    out_of_order: int = 0
    ended_early: int = 0
    failures: list[str] = field(default_factory=list)
    failure_count: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    subscribers: int = 0
    last_rx: float = 0.0  # perf_counter() of the last event any subscriber received
    settled: trio.Event = field(default_factory=trio.Event)  # every subscriber is done

    def subscriber_done(self) -> None:
        self.subscribers -= 1
        if self.subscribers == 0:
            self.settled.set()

    def fail(self, message: str) -> None:
        self.failure_count += 1
        if len(self.failures) < 5:
            self.failures.append(message)


def created_at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def subscriber(
    client: httpx.AsyncClient,
    path: str,
    state: FanOut,
    connected: trio.MemorySendChannel[None],
) -> None:
    got: collections.Counter[str] = collections.Counter()  # events by job id
    state.per_sub.append(got)
    last_id = -1
    signalled = False
    try:
        async with aconnect_sse(client, "GET", path) as source:
            state.statuses[source.response.status_code] += 1
            await connected.send(None)
            signalled = True
            if source.response.status_code != 200:
                state.fail(f"status {source.response.status_code}")
                return
            async with contextlib.aclosing(source.aiter_sse()) as events:
                async for sse in events:
                    if not sse.data:
                        continue  # the first message: retry: only
                    now = time.time()
                    data = json.loads(sse.data)
                    # Which job it is for is checked after the phase: the queued event
                    # can arrive before the submit's answer names the job.
                    state.latencies.append((now - created_at(data["createdAt"])) * 1000)
                    got[data.get("jobId")] += 1
                    state.last_rx = time.perf_counter()
                    event_id = int(sse.id) if sse.id else -1
                    if event_id <= last_id:
                        state.out_of_order += 1
                    last_id = event_id
                    if got.total() >= state.expected_per_sub:
                        return
            state.ended_early += 1  # the server ended the stream
    except Exception as exc:  # counted and shown, the round goes on
        state.fail(f"{type(exc).__name__}: {exc}")
    finally:
        state.subscriber_done()
        if not signalled:
            with trio.CancelScope(shield=True):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await connected.send(None)


async def broker_subscribers(api: httpx.AsyncClient) -> int:
    return int((await api.get("/api/stats")).json()["events"]["subscribers"])


async def fanout_phase(
    api: httpx.AsyncClient,
    url: str,
    token: str,
    company: str,
    subs: int,
    jobs: int,
    pid: int,
    r: Round,
) -> None:
    state = FanOut(expected_per_sub=EVENTS_PER_JOB * jobs, subscribers=subs)
    baseline = await broker_subscribers(api)
    path = f"/api/companies/{company}/events"
    limits = httpx.Limits(max_connections=subs + 10, max_keepalive_connections=subs + 10)
    async with (
        httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10, read=None),
            limits=limits,
        ) as sse_client,
        trio.open_nursery() as nursery,
    ):
        meter = CpuMeter(pid)
        start = time.perf_counter()
        opened = 0
        while opened < subs:
            batch = min(SSE_BATCH, subs - opened)
            send, receive = trio.open_memory_channel[None](batch)
            async with send, receive:
                for _ in range(batch):
                    nursery.start_soon(subscriber, sse_client, path, state, send.clone())
                for _ in range(batch):
                    await receive.receive()  # response headers in (or the attempt failed)
            opened += batch
        seen = await broker_subscribers(api)
        with trio.move_on_after(60):
            while seen - baseline < subs - state.failure_count:
                await trio.sleep(0.05)
                seen = await broker_subscribers(api)
        r.figures["open_s"] = time.perf_counter() - start
        print(
            f"  sse: {subs} subscribers opened in {r.figures['open_s']:.2f} s "
            f"(/api/stats events.subscribers {seen}, baseline {baseline}; "
            f"statuses {dict(state.statuses)}, failed {state.failure_count})"
        )
        print(f"  sse: opening: {meter.report()}")
        if seen - baseline < subs:
            r.notes.append(f"only {seen - baseline} of {subs} subscribers seen in /api/stats")

        # Submit the measured jobs, spaced out.
        meter = CpuMeter(pid)
        fanout_start = time.perf_counter()
        submit_ms: list[float] = []
        for _ in range(jobs):
            t0 = time.perf_counter()
            resp = await api.post(
                f"/api/companies/{company}/content-jobs", json={"jobType": "noop"}
            )
            submit_ms.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 202:
                r.notes.append(f"fan-out submit answered {resp.status_code}: {resp.text[:200]}")
            else:
                state.job_ids.add(resp.json()["jobId"])
            await trio.sleep(JOB_SPACING)
        # Subscribers return once they have every event; give stragglers a deadline.
        with trio.move_on_after(DELIVERY_DEADLINE) as waited:
            await state.settled.wait()
        if waited.cancelled_caught:
            r.notes.append(f"delivery deadline ({DELIVERY_DEADLINE:.0f} s) hit")
        nursery.cancel_scope.cancel()
        delivery_cpu = meter.report()

    expected = subs * EVENTS_PER_JOB * len(state.job_ids)
    for got in state.per_sub:
        mine = sum(n for job, n in got.items() if job in state.job_ids)
        state.received += mine
        state.extra += got.total() - mine
        if mine == state.expected_per_sub and len(got) == len(state.job_ids):
            state.complete += 1
    state.per_sub.clear()
    r.figures.update(
        sse_p50=pct(state.latencies, 50),
        sse_p99=pct(state.latencies, 99),
        sse_max=max(state.latencies, default=float("nan")),
        delivered_pct=100 * state.received / expected if expected else float("nan"),
        fanout_s=state.last_rx - fanout_start if state.last_rx else float("nan"),
    )
    print(
        f"  sse: {len(state.job_ids)} jobs, {JOB_SPACING * 1000:.0f} ms apart: delivered "
        f"{state.received}/{expected} events ({r.figures['delivered_pct']:.2f} %), "
        f"{state.complete}/{subs} subscribers got all {state.expected_per_sub}; "
        f"delivery latency p50 {r.figures['sse_p50']:.1f} ms, p99 "
        f"{r.figures['sse_p99']:.1f} ms, max {r.figures['sse_max']:.1f} ms"
    )
    print(
        f"  sse: first submit to last event received {r.figures['fanout_s']:.2f} s "
        f"({state.received / r.figures['fanout_s']:.0f} events/s delivered); the "
        f"{len(submit_ms)} submits during fan-out took p50 {pct(submit_ms, 50):.0f} ms, "
        f"max {max(submit_ms, default=float('nan')):.0f} ms (each waits {JOB_SPACING * 1000:.0f}"
        f" ms after the previous answer)"
    )
    print(f"  sse: submit to last delivery: {delivery_cpu}")
    if state.out_of_order or state.ended_early or state.failure_count or state.extra:
        note = (
            f"sse: events of other jobs {state.extra}, out of order/duplicate "
            f"{state.out_of_order}, streams ended early "
            f"{state.ended_early}, subscriber failures {state.failure_count} "
            f"e.g. {state.failures}"
        )
        r.notes.append(note)
        print("  !! " + note)
    state.latencies.clear()

    # Every subscription must be released once its client went away.
    with trio.move_on_after(10):
        while True:
            left = await broker_subscribers(api)
            if left <= baseline:
                break
            await trio.sleep(0.1)
    print(f"  sse: after closing, /api/stats events.subscribers {left} (baseline {baseline})")
    if left > baseline:
        r.notes.append(f"{left - baseline} subscribers still registered 10 s after closing")


# --- one round ---------------------------------------------------------------------------


async def one_round(args: argparse.Namespace, number: int) -> Round:
    r = Round()
    with tempfile.TemporaryDirectory(prefix="callboard-http-load-") as tmp:
        server = benchkit.Serve(Path(tmp) / "data", errors=SERVER_ERRORS, tail=200)
        try:
            url = await trio.to_thread.run_sync(server.wait_started)
            token = server.token
            print(f"round {number}: server {url} (pid {server.proc.pid})")
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=API_TIMEOUT
            ) as api:
                resp = await api.post("/api/companies", json={"name": f"bench-{number}"})
                if resp.status_code != 201:
                    raise SystemExit(f"create company: {resp.status_code} {resp.text}")
                company = resp.json()["id"]
                pid = server.proc.pid
                await submit_phase(url, token, company, args.requests, args.concurrency, pid, r)
                await wait_drained(api, args.requests, r)
                await fanout_phase(api, url, token, company, args.subscribers, args.jobs, pid, r)
        finally:
            stop_s, code = await trio.to_thread.run_sync(stop_server, server)
        r.figures["stop_s"] = stop_s
        print(f"  server stopped by SIGTERM in {stop_s:.2f} s, exit code {code}")
        if code != 0:
            r.notes.append(f"server exit code {code}; last lines:\n" + "\n".join(server.tail))
        if server.error_count:
            note = f"server logged {server.error_count} error/5xx lines, e.g. {server.errors}"
            r.notes.append(note)
            print("  !! " + note)
    return r


async def run(args: argparse.Namespace) -> None:
    rounds = []
    for number in range(1, args.rounds + 1):
        rounds.append(await one_round(args, number))
    print()
    print(f"median of {len(rounds)} rounds:")
    for label, key, fmt in FIGURES:
        values = [r.figures[key] for r in rounds if key in r.figures]
        each = ", ".join(fmt.format(v) for v in values)
        median = fmt.format(statistics.median(values)) if values else "-"
        print(f"  {label:<17} {median:>9}   (rounds: {each})")
    notes = [f"round {i}: {n}" for i, r in enumerate(rounds, 1) for n in r.notes]
    print("notes:" if notes else "notes: none (every answer 202, every event delivered)")
    for note in notes:
        print("  " + note)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="submit requests in total")
    parser.add_argument("--concurrency", type=int, default=50, help="concurrent submit clients")
    parser.add_argument("--subscribers", type=int, default=1000, help="SSE subscribers")
    parser.add_argument("--jobs", type=int, default=20, help="jobs submitted during fan-out")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on a fresh server")
    args = parser.parse_args()
    soft, hard = benchkit.raise_fd_limit()
    print(
        f"callboard HTTP load: {args.requests} submits by {args.concurrency} clients, "
        f"{args.subscribers} SSE subscribers x {args.jobs} jobs, {args.rounds} rounds"
    )
    print(
        f"NOTE: clients and server share this machine ({os.cpu_count()} cores); "
        f"RLIMIT_NOFILE {soft}/{hard}"
    )
    trio.run(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
