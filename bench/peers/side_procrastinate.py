"""Procrastinate's two sides (PsycopgConnector on PostgreSQL).

Procrastinate has no hook after a job's status is stored (its middlewares wrap the
task, and the status is written after them), so the worker wraps the app's
`job_manager.finish_job`, the call that writes the terminal status: the job is
recorded when that call returns (the statement has committed: the connector runs in
autocommit).
"""

from __future__ import annotations

import asyncio
from argparse import Namespace
from typing import Any

import procrastinate
from common import (
    IO_SECONDS,
    Recorder,
    Submitted,
    cancel,
    paced_asyncio,
    submit_batches,
    wait_and_dump,
)
from procrastinate.jobs import Status


def make_app(url: str) -> tuple[procrastinate.App, dict[str, Any]]:
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    @app.task(name="io")
    async def io() -> None:
        await asyncio.sleep(IO_SECONDS)

    return app, {"noop": noop, "io": io}


async def _work(args: Namespace) -> None:
    everything = asyncio.Event()
    rec = Recorder(args.expect, everything.set)
    rec.begin()
    app, _ = make_app(args.db)
    manager = app.job_manager
    finish_job = manager.finish_job

    async def finish_and_record(job: Any, status: Status, delete_job: bool) -> None:
        await finish_job(job=job, status=status, delete_job=delete_job)
        rec.record(job.id, status == Status.SUCCEEDED, str(status.value))

    manager.finish_job = finish_and_record  # type: ignore[method-assign]
    async with app.open_async():
        task = asyncio.create_task(
            app.run_worker_async(concurrency=args.workers, install_signal_handlers=False)
        )
        rec.started()
        await wait_and_dump(rec, everything, args)
        await cancel(task)


async def setup(url: str) -> None:
    """Procrastinate's schema is applied once per fresh database, outside any timing."""
    app, _ = make_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def _produce(args: Namespace) -> None:
    sub = Submitted(args.warmup)
    app, tasks = make_app(args.db)
    task = tasks[args.job]
    async with app.open_async():
        print("connected", flush=True)
        if args.mode == "batch":

            async def many(n: int) -> list[int]:
                return await task.batch_defer_async(*([{}] * n))

            await submit_batches(sub, args.count, args.batch, many)
        else:
            await paced_asyncio(sub, args, task.defer_async)
    sub.dump(args.out)


def work(args: Namespace) -> None:
    asyncio.run(_work(args))


def produce(args: Namespace) -> None:
    asyncio.run(_produce(args))
