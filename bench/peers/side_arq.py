"""arq's two sides (Redis).

The worker records a job in arq's `after_job_end` hook, which arq calls "after the job
has ended and its result has been recorded" (after `finish_job` wrote the result and
removed the job from the queue). arq does not pass the outcome to that hook, so every
job is recorded as a success (noop and a sleep never fail).
"""

from __future__ import annotations

import asyncio
import time
from argparse import Namespace
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from common import IO_SECONDS, Recorder, Submitted, schedule

ENQUEUE_AT_ONCE = 100


async def noop(ctx: dict[str, Any]) -> None:
    return None


async def io(ctx: dict[str, Any]) -> None:
    await asyncio.sleep(IO_SECONDS)


async def _work(args: Namespace) -> None:
    everything = asyncio.Event()
    rec = Recorder(args.expect, everything.set)

    async def after(ctx: dict[str, Any]) -> None:
        rec.record(ctx["job_id"])

    rec.begin()
    worker = Worker(
        functions=[noop, io],
        redis_settings=RedisSettings.from_dsn(args.db),
        max_jobs=args.workers,
        after_job_end=after,
        handle_signals=False,
    )
    task = asyncio.create_task(worker.async_run())
    rec.started()
    timed_out = False
    try:
        await asyncio.wait_for(everything.wait(), args.deadline)
    except TimeoutError:
        timed_out = True
    rec.dump(args.out, timed_out)
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    await worker.close()


async def _produce(args: Namespace) -> None:
    sub = Submitted(args.warmup)
    pool = await create_pool(RedisSettings.from_dsn(args.db))
    print("connected", flush=True)
    if args.mode == "batch":
        left = args.count
        while left:
            n = min(ENQUEUE_AT_ONCE, left)
            t = time.time()
            for job in await asyncio.gather(*(pool.enqueue_job(args.job) for _ in range(n))):
                assert job is not None
                sub.add(job.job_id, t)
            left -= n
    else:

        async def one(index: int) -> None:
            t = time.time()
            job = await pool.enqueue_job(args.job)
            assert job is not None
            sub.add(job.job_id, t, warmup=index < args.warmup)

        pending = []
        for index, due in enumerate(schedule(args.warmup + args.count, args.rate, time.time())):
            await asyncio.sleep(max(0.0, due - time.time()))
            pending.append(asyncio.create_task(one(index)))
        await asyncio.gather(*pending)
    await pool.aclose()
    sub.dump(args.out)


def work(args: Namespace) -> None:
    asyncio.run(_work(args))


def produce(args: Namespace) -> None:
    asyncio.run(_produce(args))
