"""SAQ's two sides, on its PostgreSQL queue or its Redis queue (`Queue.from_url`).

The worker records a job in SAQ's `after_process` hook, which SAQ calls after
`job.finish(...)` has written the job's terminal status (autocommit on PostgreSQL);
the status recorded is the job's own (`complete` counts as success).
"""

from __future__ import annotations

import asyncio
from argparse import Namespace
from typing import Any

from common import IO_SECONDS, Recorder, Submitted, paced_asyncio, submit_batches, wait_and_dump
from saq import Queue, Worker
from saq.job import Status

ENQUEUE_AT_ONCE = 100


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def io(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(IO_SECONDS)


JOB_NAMES = {"noop": "noop", "io": "io"}


async def _work(args: Namespace) -> None:
    everything = asyncio.Event()
    rec = Recorder(args.expect, everything.set)

    async def after(ctx: dict[str, Any]) -> None:
        job = ctx.get("job")
        if job is not None and job.status in {Status.COMPLETE, Status.FAILED, Status.ABORTED}:
            rec.record(job.key, job.status == Status.COMPLETE, str(job.status))

    rec.begin()
    queue = Queue.from_url(args.db)
    await queue.connect()
    worker = Worker(queue, [noop, io], concurrency=args.workers, after_process=after)
    worker.SIGNALS = []
    task = asyncio.create_task(worker.start())
    rec.started()
    await wait_and_dump(rec, everything, args)
    await worker.stop()
    await task
    await queue.disconnect()


async def _produce(args: Namespace) -> None:
    name = JOB_NAMES[args.job]
    sub = Submitted(args.warmup)
    queue = Queue.from_url(args.db)
    await queue.connect()
    print("connected", flush=True)
    if args.mode == "batch":
        # SAQ has no batch enqueue: many single ones at once, on its connection pool.

        async def many(n: int) -> list[str]:
            jobs = await asyncio.gather(*(queue.enqueue(name) for _ in range(n)))
            return [job.key for job in jobs]

        await submit_batches(sub, args.count, ENQUEUE_AT_ONCE, many)
    else:

        async def one() -> str:
            return (await queue.enqueue(name)).key

        await paced_asyncio(sub, args, one)
    await queue.disconnect()
    sub.dump(args.out)


def work(args: Namespace) -> None:
    asyncio.run(_work(args))


def produce(args: Namespace) -> None:
    asyncio.run(_produce(args))
