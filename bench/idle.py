"""What an idle node costs: `callboard serve` with no jobs, on SQLite and on PostgreSQL.

Starts the node as a child process (default 8 workers, the web server on a loopback
port), lets it settle for --settle seconds, then prints its resident memory (VmRSS)
and the CPU it used over --seconds seconds, as a share of one core. Each store runs
on a fresh database.

    flock /tmp/cb-bench.lock .venv/bin/python bench/idle.py [--seconds 20] [--settle 3]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--only sqlite,pg]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from store_nodes import database


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


def measure(url: str, tmp: Path, args: argparse.Namespace) -> tuple[float, float]:
    env = {**os.environ, "CALLBOARD_DATA_DIR": str(tmp / "node")}
    command = [sys.executable, "-m", "callboard", "serve", "--bind", "127.0.0.1:0"]
    command += ["--database", url, "--workers", str(args.workers)]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "serving the API on" in line:
                break
        else:
            raise SystemExit("the node did not start")
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        time.sleep(args.settle)
        before = cpu_seconds(proc.pid)
        time.sleep(args.seconds)
        used = cpu_seconds(proc.pid) - before
        return rss_mb(proc.pid), 100 * used / args.seconds
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--only", default="sqlite,pg")
    args = parser.parse_args()
    for setup in args.only.split(","):
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            with database(setup, args.pg, tmp) as url:
                rss, cpu = measure(url, tmp, args)
        print(
            f"idle node ({setup}, {args.workers} workers): RSS {rss:.1f} MB, "
            f"CPU {cpu:.2f}% of a core over {args.seconds:g} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
