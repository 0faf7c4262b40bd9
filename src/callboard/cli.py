"""The `callboard` command: `serve` and `migrate` here; the client commands (submit,
jobs, show, cancel, retry, events, assets, companies, tokens, gc) in `cli_jobs`,
`cli_events`, `cli_assets` and `cli_admin`, over `callboard.client`.

Exit codes (DESIGN.md section 9): 0 success, 1 a followed job failed or was cancelled
(or the server refused), 2 usage, configuration, connection or authorisation errors
(one line on stderr, no traceback unless --debug), 130 on Ctrl-C for client commands.
`serve` stops gracefully on Ctrl-C or SIGTERM and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

import trio

from . import cli_admin, cli_assets, cli_client, cli_dashboard, cli_events, cli_jobs
from .actors.broker import Lagged
from .board import Board
from .config import SettingError, Settings, load_settings, redact_url
from .errors import CallboardError
from .jobs import JobEvent, JobSpec
from .running_board import RunningBoard

log = logging.getLogger("callboard.cli")

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _server_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="holds the SQLite database, assets and operator.token "
        "(CALLBOARD_DATA_DIR, default ./callboard-data)",
    )
    parser.add_argument(
        "--database",
        dest="database_url",
        help="sqlite:///path.db or postgresql://user@host:port/db (CALLBOARD_DATABASE_URL)",
    )
    parser.add_argument(
        "--database-pool-size",
        type=str,
        help="PostgreSQL connections of this node (CALLBOARD_DATABASE_POOL_SIZE, default 10)",
    )
    parser.add_argument(
        "--storage-dir",
        help="where assets are stored (CALLBOARD_STORAGE_DIR, default <data dir>/assets)",
    )
    parser.add_argument(
        "--workers",
        type=str,
        help="worker actors on this node, 0 for none (CALLBOARD_WORKERS, default 8)",
    )
    parser.add_argument(
        "--lease-seconds", type=str, help="job lease length (CALLBOARD_LEASE_SECONDS, default 30)"
    )
    parser.add_argument(
        "--handlers",
        action="append",
        help="a module registering handlers; repeatable (CALLBOARD_HANDLERS, comma-separated)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = cli_client.Parser(
        prog="callboard",
        description="A job runtime for trio: durable jobs, supervised workers, live event streams.",
        epilog="first steps (with `callboard serve` running in another terminal):\n"
        "  callboard companies create acme\n"
        "  callboard submit demo.sleep --input '{\"seconds\": 5}' --follow\n"
        "  callboard jobs\n"
        "  callboard events --since 0\n"
        "`callboard COMMAND --help` explains each command, with examples.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run a node: store, dispatcher, workers, reaper",
        description="Run a callboard node on the embedded SQLite store (default) and log "
        "every job event. Example: callboard serve --workers 4 --demo 20",
    )
    _server_flags(serve)
    serve.add_argument(
        "--bind", help="HOST:PORT for the HTTP API (CALLBOARD_BIND, default 127.0.0.1:8000)"
    )
    serve.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_const",
        const="false",
        help="refuse to start on an outdated schema instead of migrating it "
        "(CALLBOARD_MIGRATE=false); run `callboard migrate` first",
    )
    serve.add_argument(
        "--log-events",
        action="store_true",
        help="log every job event (handy in development; noisy under load)",
    )
    serve.add_argument(
        "--demo",
        type=int,
        default=0,
        metavar="N",
        help="submit N demo jobs (noop, demo.sleep, demo.fail) to the company 'demo' at start",
    )

    migrate = commands.add_parser(
        "migrate",
        help="apply pending schema migrations and exit",
        description="Apply the store's pending migrations. "
        "Example: callboard migrate --data-dir ./callboard-data",
    )
    _server_flags(migrate)
    cli_jobs.add_commands(commands)
    cli_events.add_commands(commands)
    cli_assets.add_commands(commands)
    cli_admin.add_commands(commands)
    cli_dashboard.add_commands(commands)
    return parser


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


def board_from(settings: Settings) -> Board:
    board = Board(
        database_url=settings.database_url,
        storage_dir=settings.storage_dir,
        workers=settings.workers,
        lease_seconds=settings.lease_seconds,
        shutdown_grace=settings.shutdown_grace_seconds,
        event_retention=settings.event_retention_seconds,
        generated_asset_max_bytes=settings.generated_asset_max_bytes,
        attachment_max_bytes=settings.attachment_max_bytes,
        database_pool_size=settings.database_pool_size,
        migrate=settings.migrate,
    )
    for module in settings.handlers:
        board.load_handlers(module)
    return board


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
    from .runtime import ChildSpec, Restart
    from .web import WebServer

    board = board_from(settings)

    def web(rt: RunningBoard) -> list[ChildSpec]:
        return [ChildSpec("web", WebServer(rt, settings).run, Restart.TRANSIENT)]

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
    from .board import open_store

    store = open_store(settings.database_url, pool_size=1)
    async with store.opened():
        applied = getattr(store, "applied_migrations", [])
    where = redact_url(settings.database_url)
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}: {where}")
    else:
        print(f"schema up to date: {where}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is not None:  # `dashboard`: runs its own event loop
        return args.run(args)
    if getattr(args, "handler", None) is not None:
        return cli_client.run(args)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
