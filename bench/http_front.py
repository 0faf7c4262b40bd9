"""The front door: callboard's HTTP submit against the web framework's floor, with wrk.

Three servers, each a subprocess on a loopback port, measured by `wrk -t1 -c50` in
turns within each round (so the machine's noise hits all alike):

- `bare`: a bare Quart-Trio app on Hypercorn's trio worker with one JSON POST route
  (it parses the body and answers 202 with a small JSON object) and one GET route;
  what any app on this stack pays per request (bench/bare_app.py); and the same POST
  route in plain ASGI on the same server, the floor of callboard's submit routes
  (they are plain ASGI ahead of Quart: src/callboard/web/submits.py);
- `web-only`: `callboard serve --workers 0` on a fresh PostgreSQL database (another
  node would run the jobs): single submits `POST .../content-jobs {"jobType":"noop"}`,
  `GET /healthz`, and batch submits of 500 jobs (`POST .../content-jobs/batch`);
- `embedded`: `callboard serve` on the embedded SQLite store with its 8 workers, where
  one process accepts and runs: single submits for `--seconds`, then the jobs done and
  still queued are counted in its database the moment the load stops.

Printed per round, then the median of each figure over the rounds, and the ratios the
targets name (web-only submit / bare POST, p99 ratio, healthz / bare, embedded jobs
done per second / bare POST), and web-only submit against the plain-ASGI route (no
target: what callboard's own work costs beside its floor). Figures are printed, never
asserted.

Needs wrk (`apt-get install wrk`) and a PostgreSQL server (`--pg`).

    .venv/bin/python bench/http_front.py [--rounds 3] [--seconds 8]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import benchkit

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
BATCH = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def http(method: str, url: str, token: str, body: object | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


class Server:
    """A server that takes its bind address on the command line (bare_app.py)."""

    def __init__(self, args: list[str]) -> None:
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [a.replace("{port}", str(self.port)) for a in args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_listening(self.port, self.proc)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        benchkit.stop(self.proc, 20)


def lua_script(directory: Path, name: str, body: str, token: str | None) -> Path:
    path = directory / f"{name}.lua"
    (directory / f"{name}.body").write_text(body)
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"\n' if token else ""
    path.write_text(
        f'local f = io.open("{directory / (name + ".body")}")\n'
        "wrk.body = f:read('*a')\nf:close()\n"
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n' + auth
    )
    return path


def wrk(url: str, seconds: int, script: Path | None = None) -> dict[str, float]:
    run = benchkit.wrk(url, seconds, script)
    if run.socket_errors:
        print(f"  wrk: {run.socket_errors}", file=sys.stderr)
    return {"rps": run.rps, "p50": run.p50, "p99": run.p99, "non2xx": run.non2xx}


def one_round(work: Path, seconds: int, pg_admin: str) -> dict[str, float]:
    out: dict[str, float] = {}
    single = json.dumps({"jobType": "noop"})
    batch = json.dumps({"jobs": [{"jobType": "noop"}] * BATCH})

    bare = Server([PYTHON, str(HERE / "bare_app.py"), "127.0.0.1:{port}"])
    try:
        result = wrk(f"{bare.base}/submit", seconds, lua_script(work, "bare", single, None))
        out.update({"bare_rps": result["rps"], "bare_p99": result["p99"]})
        result = wrk(f"{bare.base}/asgi/submit", seconds, lua_script(work, "asgi", single, None))
        out.update({"asgi_rps": result["rps"], "asgi_p99": result["p99"]})
        out["bare_get_rps"] = wrk(f"{bare.base}/healthz", seconds)["rps"]
    finally:
        bare.stop()

    with benchkit.fresh_database(pg_admin, "callboard_front") as url:
        data_dir = work / f"web-{uuid.uuid4().hex[:6]}"
        node = benchkit.Serve(data_dir, ["--database", url, "--workers", "0"])
        try:
            base = node.wait_started()
            company = http("POST", f"{base}/api/companies", node.token, {"name": "acme"})["id"]
            jobs = f"{base}/api/companies/{company}/content-jobs"
            result = wrk(jobs, seconds, lua_script(work, "single", single, node.token))
            out.update({"web_rps": result["rps"], "web_p99": result["p99"]})
            out["web_non2xx"] = result["non2xx"]
            out["healthz_rps"] = wrk(f"{base}/healthz", seconds)["rps"]
            result = wrk(f"{jobs}/batch", seconds, lua_script(work, "batch", batch, node.token))
            out["batch_jobs_s"] = result["rps"] * BATCH
            out["batch_p99"] = result["p99"]
        finally:
            node.stop()

    data_dir = work / f"embedded-{uuid.uuid4().hex[:6]}"
    node = benchkit.Serve(data_dir)
    try:
        base = node.wait_started()
        company = http("POST", f"{base}/api/companies", node.token, {"name": "acme"})["id"]
        jobs = f"{base}/api/companies/{company}/content-jobs"
        result = wrk(jobs, seconds, lua_script(work, "single", single, node.token))
        counts = job_counts(data_dir / "callboard.db")
        accepted = sum(counts.values())
        out["emb_accept_rps"] = result["rps"]
        out["emb_done_s"] = counts.get("done", 0) / seconds
        out["emb_queued_pct"] = 100.0 * counts.get("queued", 0) / max(accepted, 1)
        out["emb_503"] = result["non2xx"]
    finally:
        node.stop()
    return out


def job_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute("SELECT status, count(*) FROM content_jobs GROUP BY status")
        return {status: count for status, count in rows}
    finally:
        conn.close()


ROWS = [
    ("bare POST req/s", "bare_rps", "{:,.0f}"),
    ("bare POST p99 ms", "bare_p99", "{:.1f}"),
    ("bare GET req/s", "bare_get_rps", "{:,.0f}"),
    ("bare plain-ASGI POST req/s", "asgi_rps", "{:,.0f}"),
    ("bare plain-ASGI POST p99 ms", "asgi_p99", "{:.1f}"),
    ("web-only submit req/s", "web_rps", "{:,.0f}"),
    ("web-only submit p99 ms", "web_p99", "{:.1f}"),
    ("web-only non-2xx", "web_non2xx", "{:.0f}"),
    ("web-only /healthz req/s", "healthz_rps", "{:,.0f}"),
    ("web-only batch jobs/s", "batch_jobs_s", "{:,.0f}"),
    ("web-only batch p99 ms", "batch_p99", "{:.1f}"),
    ("embedded accepted req/s", "emb_accept_rps", "{:,.0f}"),
    ("embedded done jobs/s", "emb_done_s", "{:,.0f}"),
    ("embedded queued at end %", "emb_queued_pct", "{:.1f}"),
    ("embedded answered 503", "emb_503", "{:.0f}"),
]


RATIOS = [
    ("web-only submit / bare POST", "web_rps", "bare_rps", ">= 0.85"),
    ("web-only submit p99 / bare POST p99", "web_p99", "bare_p99", "<= 1.25"),
    ("web-only /healthz / bare POST", "healthz_rps", "bare_rps", ">= 0.95"),
    ("embedded done jobs/s / bare POST", "emb_done_s", "bare_rps", ">= 0.5"),
    # No target: callboard's submit routes are plain ASGI, so this is their own floor.
    ("web-only submit / plain-ASGI POST", "web_rps", "asgi_rps", "none"),
    ("web-only p99 / plain-ASGI p99", "web_p99", "asgi_p99", "none"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--pg", default=benchkit.PG_ADMIN)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(args.rounds):
            figures = one_round(Path(tmp), args.seconds, args.pg)
            rounds.append(figures)
            print(f"round {index + 1}: " + ", ".join(f"{k}={v:,.1f}" for k, v in figures.items()))
    print(f"\nmedians of {len(rounds)} rounds (wrk -t1 -c50 -d{args.seconds:g}s):")
    for label, key, fmt in ROWS:
        values = [r[key] for r in rounds]
        spread = f"({fmt.format(min(values))}-{fmt.format(max(values))})"
        print(f"  {label:<28} {fmt.format(statistics.median(values)):>10}  {spread}")

    def ratio(a: str, b: str) -> float:
        return statistics.median(r[a] / r[b] for r in rounds)

    print("\nratios (median of the per-round ratios):")
    for label, a, b, target in RATIOS:
        print(f"  {label:<36} {ratio(a, b):.2f}  (target {target})")


if __name__ == "__main__":
    main()
