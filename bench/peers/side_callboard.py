"""callboard's two sides: a worker node `Board(workers=N)`, and a producer node
`Board(workers=0)` submitting through the Python API (`submit_many` in batches, or one
`submit` at a time on a schedule). Both on the same PostgreSQL database.

The worker records a job when its node publishes the job's `content_job.done` (or
another terminal) event: the store hands a commit's events to the node's broker after
the commit, so that is the moment this process knows the terminal state is stored.
"""

from __future__ import annotations

import tempfile
import time
from argparse import Namespace

import trio
from common import IO_SECONDS, Recorder, Submitted, schedule, submit_batches

import callboard
from callboard.jobs import TERMINAL_EVENTS, EventType, JobEvent, JobSpec

JOB_TYPES = {"noop": "noop", "io": "bench.io"}


def board(args: Namespace, workers: int, storage: str) -> callboard.Board:
    b = callboard.Board(database_url=args.db, workers=workers, storage_dir=storage)

    @b.handler("bench.io")
    async def io(ctx: callboard.JobContext) -> None:
        await trio.sleep(IO_SECONDS)

    return b


async def _work(args: Namespace) -> None:
    everything = trio.Event()
    rec = Recorder(args.expect, everything.set)
    timed_out = True

    def observe(event: object) -> None:
        if isinstance(event, JobEvent) and event.type in TERMINAL_EVENTS:
            rec.record(event.job_id, event.type == EventType.DONE, str(event.type))

    with tempfile.TemporaryDirectory() as storage:
        rec.begin()
        async with board(args, args.workers, storage).running() as rt:
            rt.observe_events(observe)
            rec.started()
            with trio.move_on_after(args.deadline):
                await everything.wait()
                timed_out = False
            rec.dump(args.out, timed_out)


async def _produce(args: Namespace) -> None:
    job_type = JOB_TYPES[args.job]
    sub = Submitted(args.warmup)
    with tempfile.TemporaryDirectory() as storage:
        async with board(args, 0, storage).running() as rt:
            company = await rt.create_company("bench")
            print("connected", flush=True)
            if args.mode == "batch":

                async def many(n: int) -> list[str]:
                    jobs = await rt.submit_many(company.id, [JobSpec(job_type)] * n)
                    return [job.id for job in jobs]

                await submit_batches(sub, args.count, args.batch, many)
            else:

                async def one(index: int) -> None:
                    t = time.time()
                    job = await rt.submit(company.id, job_type)
                    sub.add(job.id, t, warmup=index < args.warmup)

                total = args.warmup + args.count
                async with trio.open_nursery() as nursery:
                    for index, due in enumerate(schedule(total, args.rate, time.time())):
                        await trio.sleep(max(0.0, due - time.time()))
                        nursery.start_soon(one, index)
    sub.dump(args.out)


def work(args: Namespace) -> None:
    trio.run(_work, args)


def produce(args: Namespace) -> None:
    trio.run(_produce, args)
