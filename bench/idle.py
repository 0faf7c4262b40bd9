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
import sys
import tempfile
import time
from pathlib import Path

import benchkit
from store_nodes import database


def measure(url: str, tmp: Path, args: argparse.Namespace) -> tuple[float, float]:
    node = benchkit.Serve(tmp / "node", ["--database", url, "--workers", str(args.workers)])
    try:
        node.wait_started()
        time.sleep(args.settle)
        before = benchkit.cpu_seconds(node.pid)
        time.sleep(args.seconds)
        used = benchkit.cpu_seconds(node.pid) - before
        return benchkit.rss_kib(node.pid) / 1024, 100 * used / args.seconds
    finally:
        node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--pg", default=benchkit.PG_ADMIN)
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
