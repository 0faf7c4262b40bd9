"""`callboard serve` and `callboard migrate`: the commands that run a node or its store.

This is the only command module that imports the runtime (the board, the store, the
web server); `cli.main` imports it only when one of these two commands is asked for.
`serve` stops gracefully on Ctrl-C or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

import trio

from ..board import Board
from ..config import SettingError, Settings, load_settings, redact_url
from ..errors import CallboardError, Lagged
from ..jobs import JobEvent, JobSpec
from ..running_board import RunningBoard
from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

log = logging.getLogger("callboard.cli")


def settings_from(args: argparse.Namespace) -> Settings:
    keys = (
        "data_dir",
        "database_url",
        "database_pool_size",
        "migrate",
        "storage_dir",
        "workers",
        "lease_seconds",
        "handlers",
        "bind",
    )
    return load_settings({k: getattr(args, k, None) for k in keys})


def describe(event: JobEvent) -> str:
    job = event.job
    text = f"#{event.id} {event.type} job={job.id} type={job.job_type} attempt={job.attempt}"
    if job.progress.percent or job.progress.message:
        text += f" progress={job.progress.percent}%"
        if job.progress.message:
            text += f" ({job.progress.message})"
    if job.error_message and event.type != "content_job.done":
        text += f" error={job.error_message!r}"
    return text


def demo_specs(count: int) -> list[JobSpec]:
    kinds = [
        JobSpec("noop"),
        JobSpec("demo.sleep", {"seconds": 2}),
        JobSpec("demo.fail", {"message": "a demo failure"}, max_attempts=2),
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


async def serve(settings: Settings, demo: int, log_events: bool) -> int:
    from ..runtime import ChildSpec, Restart
    from ..web import WebServer

    board = Board.from_settings(settings)

    def web(rt: RunningBoard) -> list[ChildSpec]:
        return [ChildSpec("web", WebServer(rt).run, Restart.TRANSIENT)]

    async with board.running(extra_children=web) as rt, trio.open_nursery() as nursery:
        if log_events:
            await nursery.start(_log_events, rt)
        if demo > 0:
            company = await rt.get_company_by_name("demo") or await rt.create_company("demo")
            jobs = await rt.submit_many(company.id, demo_specs(demo))
            log.info("submitted %d demo jobs to company 'demo'", len(jobs))
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            log.info("serving; Ctrl-C or SIGTERM stops gracefully")
            async for signum in signals:
                log.info("received %s; draining", signal.Signals(signum).name)
                break
        nursery.cancel_scope.cancel()
    log.info("stopped")
    return EXIT_OK


async def _log_events(
    rt: RunningBoard, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    events_log = logging.getLogger("callboard.events")
    last: int | None = None
    while True:
        try:
            async with rt.subscribe(after_event_id=last) as events:
                if last is None:
                    task_status.started()
                async for event in events:
                    events_log.info("%s", describe(event))
                    last = event.id
            return
        except Lagged:
            # A burst outran the log: resume from the last event logged, losing none.
            last = last or 0
            continue


async def migrate(settings: Settings) -> int:
    from ..store import open_store

    store = open_store(settings.database_url, pool_size=1)
    async with store.opened():
        applied = getattr(store, "applied_migrations", [])
    where = redact_url(settings.database_url)
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}: {where}")
    else:
        print(f"schema up to date: {where}")
    return EXIT_OK


def run_server(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not getattr(args, "access_log", False):
        logging.getLogger("callboard.access").setLevel(logging.WARNING)
    try:
        settings = settings_from(args)
        runner: Any
        if args.command == "serve":
            if args.demo < 0:
                raise SettingError("--demo: must be 0 or more")
            runner = (serve, settings, args.demo, args.log_events)
        else:
            runner = (migrate, settings)
        return trio.run(*runner)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except CallboardError as exc:
        if args.debug:
            raise
        print(f"callboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
