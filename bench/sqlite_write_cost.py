"""What each per-job SQLite write costs, in CPU instructions counted by callgrind.

Instruction counts repeat exactly from run to run whatever else the machine does, so
a statement's cost can be compared across commits where timings would drown in this
machine's noise. For each kind of write the script runs itself under `valgrind
--tool=callgrind` twice, once with and once without that write done `--jobs` times
on a database with the store's schema (a job insert, an event insert, a claim in
batches of 8 with every job queued, a completion), and prints the difference per
write, and the sum a job's writes cost (it writes three events). The statements are
the store's own (`store/sqlite/sql/queries.sql`), run the way the store runs them:
a RETURNING row is fetched, and a transition without one is read back by key. Run it
with another commit's `src` on PYTHONPATH to compare.

Needs valgrind (`apt-get install valgrind`); takes about two minutes.

    .venv/bin/python bench/sqlite_write_cost.py [--jobs 2000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

STAGES = ("base", "insert_job", "insert_event", "claim", "complete")
NOW = "2030-01-01T00:00:00.000000Z"


def run_stages(upto: str, jobs: int) -> None:
    """The workload itself, up to and including `upto` (run under callgrind)."""
    from callboard.store.migrations import apply_sqlite
    from callboard.store.queries import load_queries

    q = load_queries("sqlite")
    path = Path(tempfile.mkdtemp()) / "cost.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    apply_sqlite(conn)
    conn.execute("INSERT INTO companies (id, name, created_at) VALUES ('c', 'c', ?)", (NOW,))
    ids = [f"job-{i:06d}" for i in range(jobs)]
    payload = json.dumps({"id": ids[0], "status": "queued", "input": {}, "pad": "x" * 500})
    level = STAGES.index(upto)

    def execute(name: str, params: dict) -> None:
        cursor = conn.execute(q[name], params)
        if "RETURNING" in q[name]:
            cursor.fetchall()
        elif name not in ("insert_job", "insert_event") and cursor.rowcount:
            conn.execute(q["get_job"], {"id": params["id"]}).fetchone()

    def stage(n: int, fn) -> None:
        if level >= n:
            conn.execute("BEGIN IMMEDIATE")
            fn()
            conn.execute("COMMIT")

    job = {"company_id": "c", "job_type": "noop", "priority": 0, "input": "{}"}
    job |= {"max_attempts": 1, "timeout_seconds": None, "run_at": NOW, "created_at": NOW}
    job |= {"source_task_id": None, "idempotency_key": None}
    event = {"company_id": "c", "type": "queued", "payload": payload, "created_at": NOW}
    lease = {"now": NOW, "lease_owner": "w", "lease_expires_at": NOW}
    stage(1, lambda: [execute("insert_job", {**job, "id": i}) for i in ids])
    stage(2, lambda: [execute("insert_event", {**event, "job_id": i}) for i in ids])
    stage(
        3,
        lambda: [
            execute("claim", {**lease, "ids": json.dumps(ids[s : s + 8])})
            for s in range(0, jobs, 8)
        ],
    )
    done = {"lease_owner": "w", "result_asset_id": None, "result": None, "now": NOW}
    stage(4, lambda: [execute("complete", {**done, "id": i}) for i in ids])
    conn.close()


def instructions(upto: str, jobs: int) -> int:
    with tempfile.TemporaryDirectory() as out:
        result = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}/cg.out",
                sys.executable,
                __file__,
                "--stage",
                upto,
                "--jobs",
                str(jobs),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    match = re.search(r"Collected : (\d+)", result.stderr)
    if match is None:
        raise SystemExit(f"no instruction count from valgrind:\n{result.stderr[-2000:]}")
    return int(match[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        run_stages(args.stage, args.jobs)
        return
    import callboard

    print(f"callboard from {os.path.dirname(callboard.__file__)}, sqlite {sqlite3.sqlite_version}")
    counts = {stage: instructions(stage, args.jobs) for stage in STAGES}
    total = 0
    for before, stage in itertools.pairwise(STAGES):
        per_write = (counts[stage] - counts[before]) / args.jobs
        total += per_write * (3 if stage == "insert_event" else 1)
        print(f"  {stage:<14} {per_write / 1000:8.0f} k instructions per job")
    # A job that runs once writes three events: queued, running, done.
    label = "a job's writes"
    print(f"  {label:<14} {total / 1000:8.0f} k instructions (three events)")


if __name__ == "__main__":
    main()
