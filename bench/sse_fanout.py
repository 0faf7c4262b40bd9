"""SSE fan-out of one `callboard serve` process: delivery delay, deliveries/s, RSS.

    .venv/bin/python bench/sse_fanout.py [--subscribers 1000] [--jobs-per-second 10]
        [--duration 10] [--clients 2] [--rounds 1] [--database URL]

A fresh server runs as a subprocess (`python -m callboard serve --bind 127.0.0.1:0`,
embedded SQLite in a new temporary directory unless `--database` is given). The
subscribers are raw non-blocking sockets driven by `selectors`, spread over
`--clients` client processes, so the client's CPU does not dominate (an httpx-sse
client costs more than the server). Each client opens its subscribers on the company
feed `GET /api/companies/{id}/events` in batches of 50 (a batch's first message
arrives before the next batch is sent, so the listen backlog never overflows).

Then `--jobs-per-second` noop jobs are submitted on schedule for `--duration`
seconds (3 events each: queued, running, done), and every subscriber must receive
every event of those jobs, in increasing id order.

Printed:
- `open s`: opening every subscriber until `/api/stats` counts them.
- `RSS per idle connection`: the server's RSS with the subscribers open (idle) minus
  its RSS before, divided by the subscribers.
- `delivery p50/p99/max ms`: the client's receive time (`time.time()` right after the
  `recv`) minus the event's `createdAt` (the server's commit time), for every event
  received by every subscriber. Same machine, same clock.
- `first arrival p50/p99 ms`: per event, its earliest arrival at any subscriber: the
  part of the delay before the fan-out (the store's commit, the publish); `fan-out
  alone p99`: each arrival minus its event's first arrival.
- `deliveries/s`: events received by all subscribers / the time from the first submit
  to the last event received; `asked` is subscribers * 3 * jobs-per-second.
- `delivered`: received / expected, plus events out of order or repeated and streams
  that ended early.
- `server CPU`: the server's CPU time over that same span (% of one core); the
  clients' CPU too.

`--jobs-per-second 0` only holds the connections open and prints the RSS figures (for
10,000 idle connections: `--subscribers 10000 --jobs-per-second 0 --clients 4`).
The open-files limit is raised to its hard limit here (the server inherits it).
"""

from __future__ import annotations

import argparse
import array
import concurrent.futures
import contextlib
import json
import re
import resource
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import benchkit
import httpx

BATCH = 50
SUBMITTERS = 8  # threads: submits go out on schedule even while answers are slow
EVENTS_PER_JOB = 3
DELIVERY_DEADLINE = 30.0  # seconds after the last submit
# One event: its id line, then the first createdAt of its data (the event's own; the
# job's nested createdAt comes later in the object).
EVENT = re.compile(rb'id: (\d+)\nevent: [^\n]*\ndata: \{[^\n]*?"createdAt":"([^"]+)"')


# --- the client process ---------------------------------------------------------------


class Sub:
    __slots__ = ("buf", "count", "ended", "headers_done", "last_id", "opened", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.headers_done = False
        self.opened = False  # the first message (`id: N`) arrived
        self.count = 0
        self.last_id = -1
        self.ended = False


def client_main(host: str, port: int, path: str, token: str, count: int, out: str) -> None:
    """Open `count` subscribers, report OPEN, then read until told STOP on stdin."""
    sel = selectors.DefaultSelector()
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    latencies = array.array("d")
    event_ids = array.array("q")
    parsed: dict[bytes, float] = {}
    disorder = 0
    reads = 0
    first_recv = last_recv = 0.0
    subs: list[Sub] = []

    def on_readable(sub: Sub) -> None:
        nonlocal disorder, first_recv, last_recv, reads
        try:
            data = sub.sock.recv(262144)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        now = time.time()
        reads += 1
        if not data:
            sub.ended = True
            sel.unregister(sub.sock)
            return
        buf = sub.buf + data
        if not sub.headers_done:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                sub.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"subscriber refused: {buf[:200]!r}")
            sub.headers_done = True
            buf = buf[end + 4 :]
        cut = buf.rfind(b"\n\n")
        if cut < 0:
            sub.buf = buf
            return
        sub.buf = buf[cut + 2 :]
        whole = buf[: cut + 2]
        if not sub.opened and b"id: " in whole:
            sub.opened = True
        for match in EVENT.finditer(whole):
            event_id = int(match.group(1))
            if event_id <= sub.last_id:
                disorder += 1
                continue
            sub.last_id = event_id
            sub.count += 1
            stamp = match.group(2)
            created = parsed.get(stamp)
            if created is None:
                created = parsed[stamp] = datetime.fromisoformat(stamp.decode()).timestamp()
            latencies.append(now - created)
            event_ids.append(event_id)
            if not first_recv:
                first_recv = now
            last_recv = now

    def pump(timeout: float) -> list[str]:
        lines = []
        for key, _ in sel.select(timeout):
            if key.data is None:
                line = sys.stdin.readline()
                lines.append(line.strip() if line else "STOP")
            else:
                on_readable(key.data)
        return lines

    sel.register(sys.stdin, selectors.EVENT_READ, None)
    for start in range(0, count, BATCH):
        batch = []
        for _ in range(min(BATCH, count - start)):
            sock = socket.create_connection((host, port))
            sock.sendall(request)
            sock.setblocking(False)
            sub = Sub(sock)
            sel.register(sock, selectors.EVENT_READ, sub)
            batch.append(sub)
        while not all(s.opened or s.ended for s in batch):
            pump(1.0)
        subs.extend(batch)
    print("OPEN", flush=True)
    expect = None
    while True:
        commands = pump(0.2)
        if "STOP" in commands:
            break
        for command in commands:
            if command.startswith("EXPECT"):
                expect = int(command.split()[1])
        if expect is not None and all(s.count >= expect or s.ended for s in subs):
            print("DONE", flush=True)
            expect = None
    with open(out, "wb") as file:
        latencies.tofile(file)
    with open(out + ".ids", "wb") as file:
        event_ids.tofile(file)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    summary = {
        "delivered": sum(s.count for s in subs),
        "complete": [s.count for s in subs],
        "disorder": disorder,
        "reads": reads,
        "ended": sum(s.ended for s in subs),
        "first": first_recv,
        "last": last_recv,
        "cpu": usage.ru_utime + usage.ru_stime,
    }
    print("RESULT " + json.dumps(summary), flush=True)
    for sub in subs:
        sub.sock.close()


# --- the server -------------------------------------------------------------------------


# --- one round ----------------------------------------------------------------------------


def read_line(proc: subprocess.Popen[str], want: str) -> str:
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"a client process ended before {want}")
        if line.startswith(want):
            return line


def subscribers_seen(api: httpx.Client) -> int:
    return int(api.get("/api/stats").json()["events"]["subscribers"])


def one_round(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    extra = ["--database", args.database] if args.database else []
    server = benchkit.Serve(tmp / "data", extra)
    figures: dict[str, float] = {}
    clients: list[subprocess.Popen[str]] = []
    try:
        url = server.wait_started()
        host, port = url.removeprefix("http://").rsplit(":", 1)
        api = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {server.token}"}, timeout=30
        )
        company = api.post("/api/companies", json={"name": "fanout"}).json()["id"]
        baseline = subscribers_seen(api)
        time.sleep(0.5)
        rss_before = benchkit.rss_kib(server.pid)
        started = time.perf_counter()
        shares = [args.subscribers // args.clients] * args.clients
        shares[0] += args.subscribers - sum(shares)
        for n, share in enumerate(shares):
            clients.append(
                subprocess.Popen(
                    [sys.executable, __file__, "--client", host, port,
                     f"/api/companies/{company}/events", server.token, str(share),
                     str(tmp / f"lat{n}")],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                )
            )  # fmt: skip
        for client in clients:
            read_line(client, "OPEN")
        while subscribers_seen(api) < baseline + args.subscribers:
            time.sleep(0.05)
        figures["open_s"] = time.perf_counter() - started
        time.sleep(1.0)
        rss_open = benchkit.rss_kib(server.pid)
        figures["rss_kib"] = rss_open
        figures["rss_per_conn_kib"] = (rss_open - rss_before) / args.subscribers
        print(
            f"  open {args.subscribers} subscribers: {figures['open_s']:.2f} s; server RSS "
            f"{rss_before / 1024:.1f} -> {rss_open / 1024:.1f} MiB, "
            f"{figures['rss_per_conn_kib']:.1f} KiB per idle connection"
        )
        if args.jobs_per_second > 0:
            fanout(args, server, api, company, clients, figures, tmp)
        for client in clients:
            assert client.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                client.stdin.write("STOP\n")
                client.stdin.flush()
        for client in clients:
            client.wait(30)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
        server.stop()
    if server.error_count:
        print(f"  !! the server logged {server.error_count} error lines; last lines:")
        print("\n".join("     " + line for line in list(server.tail)[-10:]))
    return figures


def fanout(
    args: argparse.Namespace,
    server: benchkit.Serve,
    api: httpx.Client,
    company: str,
    clients: list[subprocess.Popen[str]],
    figures: dict[str, float],
    tmp: Path,
) -> None:
    jobs = round(args.jobs_per_second * args.duration)
    path = f"/api/companies/{company}/content-jobs"
    spy = None
    if args.py_spy:
        # Sample the server while it fans out (py-spy from PyPI; not a dependency).
        spy = subprocess.Popen(
            ["py-spy", "record", "-p", str(server.proc.pid), "-f", "raw", "-r", "200",
             "-o", args.py_spy],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)
    cpu0, wall0 = benchkit.cpu_seconds(server.pid), time.time()
    late: list[float] = []

    def submit(n: int) -> None:
        # On schedule whatever the answers' latency: a slow server must not slow the load.
        delay = wall0 + n / args.jobs_per_second - time.time()
        if delay > 0:
            time.sleep(delay)
        else:
            late.append(-delay)
        resp = api.post(path, json={"jobType": "noop"})
        if resp.status_code != 202:
            raise SystemExit(f"submit: {resp.status_code} {resp.text}")

    with concurrent.futures.ThreadPoolExecutor(SUBMITTERS) as pool:
        for future in [pool.submit(submit, n) for n in range(jobs)]:
            future.result()
    submitted = time.time()
    if late:
        print(f"  !! {len(late)} submits went out late (worst {max(late) * 1000:.0f} ms)")
    expect = jobs * EVENTS_PER_JOB
    for client in clients:
        assert client.stdin is not None
        client.stdin.write(f"EXPECT {expect}\n")
        client.stdin.flush()
    done = threading.Event()
    pending = [len(clients)]

    def wait_done(client: subprocess.Popen[str]) -> None:
        with contextlib.suppress(SystemExit):
            read_line(client, "DONE")
        pending[0] -= 1
        if pending[0] == 0:
            done.set()

    for client in clients:
        threading.Thread(target=wait_done, args=(client,), daemon=True).start()
    done.wait(DELIVERY_DEADLINE)
    cpu1 = benchkit.cpu_seconds(server.pid)
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    for client in clients:
        assert client.stdin is not None
        client.stdin.write("STOP\n")
        client.stdin.flush()
    results = [json.loads(read_line(c, "RESULT").split(" ", 1)[1]) for c in clients]
    latencies: list[float] = []
    spread: list[tuple[int, float]] = []
    first: dict[int, float] = {}  # event id -> its earliest arrival at any subscriber
    for n in range(len(clients)):
        values, event_ids = array.array("d"), array.array("q")
        values.frombytes((tmp / f"lat{n}").read_bytes())
        event_ids.frombytes((tmp / f"lat{n}.ids").read_bytes())
        latencies.extend(v * 1000 for v in values)
        spread.extend((i, v * 1000) for i, v in zip(event_ids, values, strict=True))
        for event_id, value in zip(event_ids, values, strict=True):
            if value * 1000 < first.get(event_id, float("inf")):
                first[event_id] = value * 1000
    delivered = sum(r["delivered"] for r in results)
    last = max(r["last"] for r in results)
    span = max(last - wall0, 1e-9)
    wall = max(last, submitted) - wall0
    complete = sum(1 for r in results for c in r["complete"] if c >= expect)
    figures.update(
        spread_p99=benchkit.nearest_rank([v - first[i] for i, v in spread], 99),
        first_p50=benchkit.nearest_rank(list(first.values()), 50),
        first_p99=benchkit.nearest_rank(list(first.values()), 99),
        p50=benchkit.nearest_rank(latencies, 50),
        p99=benchkit.nearest_rank(latencies, 99),
        max=max(latencies, default=float("nan")),
        rate=delivered / span,
        delivered_pct=100 * delivered / (expect * args.subscribers),
        server_cpu=100 * (cpu1 - cpu0) / wall,
        client_cpu=100 * sum(r["cpu"] for r in results) / wall,
    )
    asked = args.subscribers * EVENTS_PER_JOB * args.jobs_per_second
    print(
        f"  fan-out: {jobs} jobs at {args.jobs_per_second}/s; delivery p50 {figures['p50']:.1f}"
        f" ms, p99 {figures['p99']:.1f} ms, max {figures['max']:.1f} ms"
    )
    print(
        f"  first arrival of each event (commit and publish, before the fan-out): p50 "
        f"{figures['first_p50']:.1f} ms, p99 {figures['first_p99']:.1f} ms; the fan-out "
        f"alone (arrival minus the event's first arrival) p99 {figures['spread_p99']:.1f} ms"
    )
    print(
        f"  deliveries/s {figures['rate']:.0f} (asked {asked:.0f}); delivered "
        f"{delivered}/{expect * args.subscribers} ({figures['delivered_pct']:.2f} %), "
        f"{complete}/{args.subscribers} subscribers complete, "
        f"{sum(r['disorder'] for r in results)} out of order/repeated, "
        f"{sum(r['ended'] for r in results)} streams ended early; "
        f"{sum(r['reads'] for r in results) / span:.0f} socket reads/s by the clients"
    )
    print(
        f"  CPU over {wall:.1f} s: server {figures['server_cpu']:.0f} % of a core, "
        f"clients {figures['client_cpu']:.0f} %"
    )


FIGURES = [
    ("open s", "open_s", "{:.2f}"),
    ("RSS KiB/idle conn", "rss_per_conn_kib", "{:.1f}"),
    ("first arrival p50", "first_p50", "{:.1f}"),
    ("first arrival p99", "first_p99", "{:.1f}"),
    ("fan-out alone p99", "spread_p99", "{:.1f}"),
    ("delivery p50 ms", "p50", "{:.1f}"),
    ("delivery p99 ms", "p99", "{:.1f}"),
    ("delivery max ms", "max", "{:.1f}"),
    ("deliveries/s", "rate", "{:.0f}"),
    ("delivered %", "delivered_pct", "{:.2f}"),
    ("server CPU %", "server_cpu", "{:.0f}"),
    ("client CPU %", "client_cpu", "{:.0f}"),
]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        host, port, path, token, count, out = sys.argv[2:8]
        benchkit.raise_fd_limit()
        client_main(host, int(port), path, token, int(count), out)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--jobs-per-second", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of submits")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--rounds", type=int, default=1, help="rounds, each a fresh server")
    parser.add_argument("--tmp", help="where the server's data dir goes (e.g. /dev/shm)")
    parser.add_argument("--database", help="a PostgreSQL URL instead of embedded SQLite")
    parser.add_argument("--py-spy", metavar="FILE", help="profile the fan-out to FILE (raw)")
    args = parser.parse_args()
    soft, _ = benchkit.raise_fd_limit()
    print(
        f"SSE fan-out: {args.subscribers} subscribers over {args.clients} client processes, "
        f"{args.jobs_per_second} noop jobs/s for {args.duration} s, "
        f"{'PostgreSQL' if args.database else 'embedded SQLite'}, open files {soft}"
    )
    rounds = []
    for number in range(1, args.rounds + 1):
        print(f"round {number}:")
        with tempfile.TemporaryDirectory(prefix="callboard-sse-", dir=args.tmp) as tmp:
            rounds.append(one_round(args, Path(tmp)))
    if len(rounds) > 1:
        print(f"median of {len(rounds)} rounds:")
        for label, key, fmt in FIGURES:
            values = [r[key] for r in rounds if key in r]
            if values:
                each = ", ".join(fmt.format(v) for v in values)
                print(f"  {label:<18} {fmt.format(statistics.median(values)):>9}  ({each})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
