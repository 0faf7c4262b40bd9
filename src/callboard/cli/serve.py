"""`callboard serve`, `callboard migrate` and `callboard storage copy`: the commands that
run a node, or work on its store and storage directly.

This is the only command module that imports the runtime (the board, the store, the
storage, the web server); `cli.main` imports it only when one of these commands is
asked for.
`serve` binds its port before it makes anything (so a port in use is one line and exit
2, with no data directory, database or operator token left behind), serves that socket,
and stops gracefully on Ctrl-C or SIGTERM and exits 0. With `--processes N` (N > 1,
PostgreSQL only) it becomes the parent of N such nodes (`cli.processes`), and each of
them runs `serve` again on the socket the parent bound.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ..board import Board
from ..config import (
    SettingError,
    Settings,
    check_storage_url,
    load_settings,
    redact_url,
    sqlite_path,
)
from ..errors import CallboardError, Lagged, StoreInUse
from ..jobs import JobEvent, JobSpec
from ..running_board import RunningBoard
from ..sizes import human_bytes
from .common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from .processes import ChildInfo, open_listeners, run_group

if TYPE_CHECKING:
    from ..storage.copy import CopyReport

log = logging.getLogger("callboard.cli")

#: `storage copy` prints a line at least this often while it keeps objects it checked.
PROGRESS_SECONDS = 5.0


def settings_from(args: argparse.Namespace) -> Settings:
    keys = (
        "data_dir",
        "database_url",
        "database_pool_size",
        "migrate",
        "storage_dir",
        "storage_url",
        "workers",
        "processes",
        "lease_seconds",
        "handlers",
        "bind",
        "demo_types",
    )
    flags = {k: getattr(args, k, None) for k in keys}
    if getattr(args, "demo", 0) > 0:
        flags["demo_types"] = "true"  # the demo jobs need their types
    return load_settings(flags, config_file=getattr(args, "config", None))


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


def _tune_collector() -> None:
    """What a node made while starting (modules, the app, the OpenAPI document) lives as
    long as the process: freeze it out of the collector's scans, so a full collection
    walks only what the node made since. (Collecting the young generation less often
    measured about 8% more submits/s, but the garbage of closed connections then
    waited longer to be collected, and an idle node kept 30% more memory.)"""
    gc.collect()
    gc.freeze()


def demo_specs(count: int) -> list[JobSpec]:
    kinds = [
        JobSpec("noop"),
        JobSpec("demo.sleep", {"seconds": 2}),
        JobSpec("demo.fail", {"message": "a demo failure"}, max_attempts=2),
    ]
    return [kinds[i % len(kinds)] for i in range(count)]


async def serve(
    settings: Settings,
    demo: int,
    log_events: bool,
    child: ChildInfo | None = None,
    listener: socket.socket | None = None,
) -> int:
    """Run a node until a signal stops it. It serves `listener` (bound by the caller),
    else the socket a `--processes` parent handed down, else it binds `settings.bind`."""
    from ..runtime import ChildSpec, Restart
    from ..web import WebServer

    board = Board.from_settings(settings)
    listen_fd = child.listen_fd if child is not None else listener.fileno() if listener else None

    def web(rt: RunningBoard) -> list[ChildSpec]:
        if listen_fd is None:
            return [ChildSpec("web", WebServer(rt).run, Restart.TRANSIENT)]
        # Hypercorn closes the socket it served: a restart of the web server must not
        # reuse that number (it may be another file by then), so each start serves a
        # copy of the socket bound before the node started.
        server = WebServer(rt, lambda: f"fd://{os.dup(listen_fd)}")
        return [ChildSpec("web", server.run, Restart.TRANSIENT)]

    with contextlib.ExitStack() as stack:
        # A child of `--processes` listens from its start to its end: a stop that comes
        # while it starts drains it once it is up, and a second SIGTERM (systemd signals
        # every process of a unit, and the parent passes one on) cannot cut its drain
        # short. A single node keeps the default: Ctrl-C while starting or draining
        # ends it at once.
        early = None
        if child is not None:
            # What the receiver restores when it closes, and redelivers a signal it got
            # but nobody read to: ignored, not the default that would kill the child.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
            early = stack.enter_context(trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM))
        async with board.running(extra_children=web) as rt, trio.open_nursery() as nursery:
            if log_events:
                await nursery.start(_log_events, rt)
            if demo > 0:
                company = await rt.get_or_create_company("demo")
                jobs = await rt.submit_many(company.id, demo_specs(demo))
                log.info("submitted %d demo jobs to company 'demo'", len(jobs))
            with contextlib.ExitStack() as inner:
                signals = (
                    early
                    if early is not None
                    else inner.enter_context(
                        trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM)
                    )
                )
                if child is not None:
                    child.report_ready()
                _tune_collector()
                log.info("serving; Ctrl-C or SIGTERM stops gracefully")
                reason = await _wait_for_stop(signals, child)
                log.info("%s; draining", reason)
            nursery.cancel_scope.cancel()
    log.info("stopped")
    return EXIT_OK


async def _wait_for_stop(signals: Any, child: ChildInfo | None) -> str:
    """Why the node stops: a signal, or (a child of `--processes`) its parent ended."""
    reasons: list[str] = []
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            async for signum in signals:
                reasons.append(f"received {signal.Signals(signum).name}")
                nursery.cancel_scope.cancel()

        async def on_parent_exit(child: ChildInfo) -> None:
            await child.wait_for_parent_exit()
            reasons.append("the parent process ended")
            nursery.cancel_scope.cancel()

        nursery.start_soon(on_signal)
        if child is not None:
            nursery.start_soon(on_parent_exit, child)
    return reasons[0]


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


async def copy_storage(settings: Settings, args: argparse.Namespace) -> int:
    """`callboard storage copy`: every asset from the storage of `settings` to `--to`,
    a line for each asset copied (or missing, or failed), then the counts. Ctrl-C or
    SIGTERM stops it (writes in progress are aborted); running it again resumes."""
    from ..runtime.groups import unwrap_sole
    from ..storage.copy import AssetCopy, CopyEvent, Outcome
    from ..storage.location import open_backend, same_place
    from ..store import open_store

    source_url = settings.storage_location
    try:
        target_url = check_storage_url(args.to)
    except ValueError as exc:
        raise SettingError(f"--to: {exc}") from None
    if same_place(source_url, target_url):
        raise SettingError(f"--to: the assets are in {target_url} already")
    if args.parallel < 1:
        raise SettingError("--parallel: must be at least 1")
    database = sqlite_path(settings.database_url) if settings.embedded else None
    if database is not None and not database.exists():
        raise SettingError(f"no database at {database}: --data-dir or --database names the node's")
    source, target = open_backend(source_url), open_backend(target_url)
    # Never migrate: a copy may run beside nodes that expect the schema they have.
    store = open_store(settings.database_url, pool_size=1, migrate=False)

    last_line = time.monotonic()

    def show(event: CopyEvent) -> None:
        nonlocal last_line
        if event.outcome in (Outcome.ALREADY_THERE, Outcome.PRESENT):
            # A resumed run may check many objects in a row that it keeps: say it lives.
            if time.monotonic() - last_line >= PROGRESS_SECONDS:
                print(f"{run.report.checked} assets checked so far", flush=True)
                last_line = time.monotonic()
            return
        last_line = time.monotonic()
        what = event.outcome.value
        if event.outcome is Outcome.REPLACED:
            what = "copied (over one that did not match its row)"
        detail = f": {event.detail}" if event.detail else ""
        print(f"{what} {event.asset.object_key}{detail}", flush=True)

    run = AssetCopy(
        store, source, target, dry_run=args.dry_run, parallel=args.parallel, progress=show
    )
    try:
        with unwrap_sole():
            async with store.opened():
                print(f"{'dry run: ' if args.dry_run else ''}{source_url} -> {target_url}")
                interrupted = await _until_signal(run.run)
    except StoreInUse as exc:
        raise StoreInUse(f"stop the node first: {exc}") from None
    _print_copy_report(run.report)
    if interrupted:
        print("callboard: interrupted; run the same command to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    if run.report.stopped:
        print(f"callboard: {run.report.stopped}", file=sys.stderr)
        return EXIT_FAILED
    if args.dry_run:
        if run.report.missing:
            print(
                f"callboard: {run.report.missing} missing at the source (listed above): a copy "
                "would leave them out",
                file=sys.stderr,
            )
            return EXIT_FAILED
        return EXIT_OK
    if not run.report.complete:
        left = run.report.missing + run.report.failed
        print(
            f"callboard: {left} asset{'s' if left != 1 else ''} not in {target_url} (listed "
            "above), the others are; once the source has them, running the command again "
            "keeps what is there and copies the rest",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"every asset is in {target_url}, verified by sha256")
    return EXIT_OK


async def _until_signal(fn: Callable[[], Awaitable[object]]) -> bool:
    """Run `fn` to its end or until SIGINT or SIGTERM cancels it: whether a signal did."""
    interrupted = False
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def on_signal() -> None:
                nonlocal interrupted
                async for _ in signals:
                    interrupted = True
                    nursery.cancel_scope.cancel()

            async def run() -> None:
                await fn()
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_signal)
            nursery.start_soon(run)
    return interrupted


def _print_copy_report(report: CopyReport) -> None:
    size = human_bytes(report.bytes_copied)
    if report.dry_run:
        rows = [
            ("would copy", f"{report.copied} ({size})"),
            ("in the target", f"{report.already_there} (not read back by a dry run)"),
        ]
    else:
        replaced = f"; {report.replaced} over one that did not match" if report.replaced else ""
        rows = [
            ("copied", f"{report.copied} ({size}{replaced})"),
            ("already there", f"{report.already_there} (read back and verified)"),
        ]
    rows += [("missing at source", str(report.missing)), ("failed", str(report.failed))]
    print(f"{report.checked} asset{'s' if report.checked != 1 else ''} checked")
    for name, value in rows:
        print(f"  {name + ':':<19}{value}")
    sys.stdout.flush()


def child_command(args: argparse.Namespace, index: int, first_start: bool) -> list[str]:
    """The command line of child `index` of `serve --processes`; its settings travel in
    the environment. Events are logged, and demo jobs submitted, by the first only."""
    command = [sys.executable, "-m", "callboard", *(["--debug"] if args.debug else []), "serve"]
    if getattr(args, "access_log", False):
        command.append("--access-log")
    if index == 0 and args.log_events:
        command.append("--log-events")
    if index == 0 and first_start and args.demo > 0:
        command += ["--demo", str(args.demo)]
    return command


def run_server(args: argparse.Namespace) -> int:
    child = ChildInfo.from_environment() if args.command == "serve" else None
    try:
        settings = settings_from(args)
    except CallboardError as exc:
        if args.debug:
            raise
        print(f"callboard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    group = args.command == "serve" and child is None and settings.processes > 1
    # Which process a line comes from, when several share the terminal.
    tag = f"[{child.name}] " if child is not None else "[main] " if group else ""
    # A command that runs and ends (`storage copy`) prints what it does: its log says
    # only what went wrong.
    quiet = logging.WARNING if args.command == "storage" else logging.INFO
    logging.basicConfig(
        level=logging.DEBUG if args.debug else quiet,
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
        stream=sys.stderr,
    )
    # boto3's own lines (where it found credentials, its retries) are noise at INFO, and
    # at DEBUG it logs signed request headers: never, even with --debug.
    for name in ("boto3", "botocore", "s3transfer", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if not getattr(args, "access_log", False):
        logging.getLogger("callboard.access").setLevel(logging.WARNING)
    listener: socket.socket | None = None
    stack = contextlib.ExitStack()
    try:
        if args.command == "serve":
            if args.demo < 0:
                raise SettingError("--demo: must be 0 or more")
            if group:
                if settings.embedded:
                    raise SettingError(
                        f"processes {settings.processes}: more than one process needs "
                        "PostgreSQL (--database postgresql://...); the embedded SQLite "
                        "store has one writer per file"
                    )
                return run_group(settings, lambda i, first: child_command(args, i, first))
            # `--handlers mymodule` finds mymodule.py in the working directory, as with
            # `python -m` (and RQ, arq, Celery): the console script's own directory is
            # what Python put first on the path.
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.insert(0, os.getcwd())
            if child is None:
                # Bound before anything is made: a port in use is one line and exit 2,
                # with no data directory, database or operator token left behind.
                listener = stack.enter_context(open_listeners(settings.bind, 1)[0])
            runner = (serve, settings, args.demo, args.log_events, child, listener)
        elif args.command == "storage":
            runner = (copy_storage, settings, args)
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
    finally:
        stack.close()
