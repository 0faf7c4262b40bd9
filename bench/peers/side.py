"""One side of one measurement of bench/compare.py, in a process of its own.

    python bench/peers/side.py worker SYSTEM --db URL --workers N --job noop|io
        --expect N --out FILE
    python bench/peers/side.py producer SYSTEM --db URL --job noop|io --mode batch|paced
        --count N [--rate R --warmup N] --out FILE
    python bench/peers/side.py setup SYSTEM --db URL

SYSTEM is callboard, saq (PostgreSQL or Redis, from the URL), procrastinate or arq.
A worker prints `ready` once it takes jobs; a producer prints `connected` before its
first submit. Each writes its record (bench/peers/common.py) to FILE.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib

MODULES = {
    "callboard": "side_callboard",
    "saq": "side_saq",
    "procrastinate": "side_procrastinate",
    "arq": "side_arq",
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["worker", "producer", "setup"])
    parser.add_argument("system", choices=sorted(MODULES))
    parser.add_argument("--db", required=True)
    parser.add_argument("--job", choices=["noop", "io"], default="noop")
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--mode", choices=["batch", "paced"], default="batch")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    side = importlib.import_module(MODULES[args.system])
    if args.role == "setup":
        if hasattr(side, "setup"):
            asyncio.run(side.setup(args.db))
    elif args.role == "worker":
        side.work(args)
    else:
        side.produce(args)


if __name__ == "__main__":
    main()
