"""arq's two sides (Redis).

The worker records a job in arq's `after_job_end` hook, which arq calls "after the job
has ended and its result has been recorded" (after `finish_job` wrote the result and
removed the job from the queue). arq does not pass the outcome to that hook, so every
job is recorded as a success (noop and a sleep never fail).
"""

from __future__ import annotations

import asyncio
from argparse import Namespace
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker
from common import (
    IO_SECONDS,
    Recorder,
    Submitted,
    cancel,
    paced_asyncio,
    submit_batches,
    wait_and_dump,
)

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
    await wait_and_dump(rec, everything, args)
    await cancel(task)
    await worker.close()


async def _produce(args: Namespace) -> None:
    sub = Submitted(args.warmup)
    pool = await create_pool(RedisSettings.from_dsn(args.db))
    print("connected", flush=True)
    if args.mode == "batch":

        async def many(n: int) -> list[str]:
            jobs = await asyncio.gather(*(pool.enqueue_job(args.job) for _ in range(n)))
            assert all(job is not None for job in jobs)
            return [job.job_id for job in jobs]  # type: ignore[union-attr]

        await submit_batches(sub, args.count, ENQUEUE_AT_ONCE, many)
    else:

        async def one() -> str:
            job = await pool.enqueue_job(args.job)
            assert job is not None
            return job.job_id

        await paced_asyncio(sub, args, one)
    await pool.aclose()
    sub.dump(args.out)


def work(args: Namespace) -> None:
    asyncio.run(_work(args))


def produce(args: Namespace) -> None:
    asyncio.run(_produce(args))
