"""Board: the handler registry and the configuration of one callboard node.

`Board.running()` opens the store and builds the supervised actor tree:

    root supervisor (one_for_one)
    ├── broker                       fan-out of committed events
    ├── reaper                       reclaims jobs whose lease ran out
    ├── leases                       renews the leases of the jobs running here
    ├── workers supervisor (one_for_one)
    │   └── worker-1 .. worker-N     run handlers, one job each at a time
    ├── dispatcher                   claims runnable jobs for idle workers
    ├── stats                        runtime.stats on the operator feed, every second
    └── (extra children: the web server under `callboard serve`)

Supervision: one_for_one at both levels, because the children share no state that a
crash could corrupt: a crashed worker's job is recovered by its lease, a crashed
dispatcher re-reads the store. More than 5 restarts in 60 s at the root (or more
than max(3, workers) in the pool) escalates as SupervisorEscalation out of
`running()`.

Children start in that order, each ready before the next. Leaving `running()` drains
the node: no new submits, no new claims, running jobs get `shutdown_grace` seconds
to finish, then everything is cancelled. A job still running then keeps its lease,
which runs out; the reaper of the next start (or of another node) reclaims it.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import trio

from .actors.broker import Broker
from .actors.capacity import Capacity
from .actors.dispatcher import Dispatcher
from .actors.lease_keeper import LeaseKeeper
from .actors.reaper import Reaper
from .actors.stats import StatsReporter
from .actors.worker import Backoff, JobRunner, Worker, WorkerSettings
from .builtin_handlers import builtins
from .clock import TrioWallClock
from .config import (
    DEFAULT_ATTACHMENT_MAX_BYTES,
    DEFAULT_GENERATED_ASSET_MAX_BYTES,
    SettingError,
    sqlite_path,
)
from .jobs import Handler, HandlerRegistry, HandlerSpec, Inserted, Job, NewJob
from .ledger import Ledger
from .running_board import RunningBoard
from .runtime import ChildSpec, Restart, Strategy, Supervisor
from .runtime.groups import unwrap_sole
from .storage import GENERATED, UPLOADS, AssetStorage
from .store.base import JobStore

log = logging.getLogger("callboard")

DEFAULT_DATABASE_URL = "sqlite:///callboard-data/callboard.db"


def open_store(database_url: str, *, pool_size: int = 10, migrate: bool = True) -> JobStore:
    """The JobStore for a database URL (SQLAlchemy spelling). `pool_size` and
    `migrate` concern PostgreSQL; the SQLite store always migrates (it is one
    process's own file)."""
    if database_url.startswith("sqlite:///"):
        from .store.sqlite import SqliteStore

        path = sqlite_path(database_url)
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteStore(path)
    if database_url.startswith(("postgresql://", "postgres://")):
        from .store.postgres import PostgresStore

        return PostgresStore(database_url, pool_size=pool_size, migrate=migrate)
    raise SettingError(f"CALLBOARD_DATABASE_URL: unsupported database URL {database_url!r}")


class Board:
    """Handlers and settings of a node. Register handlers with `@board.handler(...)`,
    then `async with board.running() as rt:` to run it."""

    def __init__(
        self,
        database_url: str | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        workers: int = 8,
        *,
        lease_seconds: float = 30.0,
        shutdown_grace: float = 10.0,
        event_retention: float | None = 7 * 24 * 3600,
        poll_interval: float = 2.0,
        retry_backoff: Backoff | None = None,
        progress_interval: float = 0.25,
        store: JobStore | None = None,
        generated_asset_max_bytes: int = DEFAULT_GENERATED_ASSET_MAX_BYTES,
        attachment_max_bytes: int = DEFAULT_ATTACHMENT_MAX_BYTES,
        database_pool_size: int = 10,
        migrate: bool = True,
    ) -> None:
        if workers < 0:
            raise ValueError("workers must be 0 or more")
        if not lease_seconds > 0:
            raise ValueError("lease_seconds must be positive")
        for name, cap in (
            ("generated_asset_max_bytes", generated_asset_max_bytes),
            ("attachment_max_bytes", attachment_max_bytes),
        ):
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise ValueError(f"{name} must be a positive number of bytes")
        self.database_url = database_url or DEFAULT_DATABASE_URL
        self.storage_dir = (
            Path(storage_dir) if storage_dir is not None else Path("callboard-data/assets")
        )
        self.workers = workers
        self.lease_seconds = lease_seconds
        self.shutdown_grace = shutdown_grace
        self.event_retention = event_retention
        self.poll_interval = poll_interval
        self.retry_backoff = retry_backoff or Backoff()
        self.progress_interval = progress_interval
        #: Per-namespace caps of asset storage (under `storage_dir`), checked while writing.
        self.asset_caps = {GENERATED: generated_asset_max_bytes, UPLOADS: attachment_max_bytes}
        self.database_pool_size = database_pool_size
        #: Apply pending migrations at start (False: refuse to start on an older schema).
        self.migrate = migrate
        self._store = store
        self._registry = HandlerRegistry()

    def handler(
        self,
        job_type: str,
        *,
        timeout: float | None = None,
        max_attempts: int = 1,
        concurrency: int | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register an async function `fn(ctx: JobContext)` for `job_type`.

        `timeout` is per attempt in seconds; `max_attempts` counts every run (a submit
        may override both); `concurrency` caps how many run at once on this node.
        """

        def register(fn: Handler) -> Handler:
            self._registry.register(
                job_type, fn, timeout=timeout, max_attempts=max_attempts, concurrency=concurrency
            )
            return fn

        return register

    def load_handlers(self, module_name: str) -> None:
        """Import a module that registers handlers on a Board named `board` (or exposes a
        `register(board)` function)."""
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SettingError(f"--handlers: cannot import {module_name!r}: {exc}") from exc
        register = getattr(module, "register", None)
        other = getattr(module, "board", None)
        if callable(register):
            register(self)
        elif isinstance(other, Board):
            for spec in other._registry.specs():
                self._registry.register(
                    spec.job_type,
                    spec.fn,
                    timeout=spec.timeout,
                    max_attempts=spec.max_attempts,
                    concurrency=spec.concurrency,
                )
        else:
            raise SettingError(
                f"--handlers: module {module_name!r} has neither a `board = Board()` "
                "with handlers nor a `register(board)` function"
            )

    @property
    def registry(self) -> HandlerRegistry:
        """The built-in job types plus this board's."""
        return builtins.merged(self._registry)

    def handler_specs(self) -> list[HandlerSpec]:
        return self.registry.specs()

    @asynccontextmanager
    async def running(
        self, *, extra_children: Callable[[RunningBoard], Sequence[ChildSpec]] | None = None
    ) -> AsyncIterator[RunningBoard]:
        """Open the store, start the actor tree, and yield the running node.

        `extra_children(rt)` adds supervised children after the built-in ones (the
        web server uses it, so it runs inside the same tree and the same trio run).
        """
        store = self._store or open_store(
            self.database_url, pool_size=self.database_pool_size, migrate=self.migrate
        )
        async with store.opened(), self._tree(store, extra_children) as rt:
            yield rt

    @asynccontextmanager
    async def _tree(
        self,
        store: JobStore,
        extra_children: Callable[[RunningBoard], Sequence[ChildSpec]] | None,
    ) -> AsyncIterator[RunningBoard]:
        registry = self.registry
        lease_owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        clock = TrioWallClock()
        broker = Broker()
        dispatcher: Dispatcher | None = None

        def wake_dispatcher() -> None:
            if dispatcher is not None:
                dispatcher.wake()

        def slot_freed() -> None:
            if dispatcher is not None:
                dispatcher.slot_freed()

        async def start_now(job: NewJob, now: datetime) -> Inserted | None:
            if dispatcher is None:
                await trio.lowlevel.checkpoint()
                return None
            return await dispatcher.start_now(job, now)

        capacity = Capacity(
            self.workers,
            {spec.job_type: spec.concurrency for spec in registry.specs()},
            on_release=slot_freed,
        )
        ledger = Ledger(store, broker, clock, registry, wake_dispatcher, start_now)
        # A store shared with other nodes relays their submits and cancels.
        store.on_jobs_queued = wake_dispatcher
        store.on_cancel_requested = capacity.cancel
        to_workers, from_dispatcher = trio.open_memory_channel[Job](0)
        settings = WorkerSettings(
            lease_owner=lease_owner,
            lease_seconds=self.lease_seconds,
            backoff=self.retry_backoff,
            progress_interval=self.progress_interval,
        )
        storage = AssetStorage(self.storage_dir, self.asset_caps)
        leases = LeaseKeeper(ledger, lease_owner, self.lease_seconds)
        runner = JobRunner(ledger, registry, settings, storage, leases)
        workers = [
            Worker(f"worker-{i + 1}", from_dispatcher, runner, capacity, broker.publish)
            for i in range(self.workers)
        ]
        dispatcher = Dispatcher(
            ledger,
            capacity,
            to_workers,
            lease_owner=lease_owner,
            lease_seconds=self.lease_seconds,
            poll_interval=self.poll_interval,
        )
        reaper = Reaper(
            ledger,
            lease_owner=lease_owner,
            interval=max(0.5, self.lease_seconds / 2),
            event_retention=self.event_retention,
        )
        worker_pool = Supervisor(
            "workers",
            [ChildSpec(w.name, w.run, Restart.PERMANENT) for w in workers],
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=max(3, self.workers),
            period=60.0,
        )
        # The reaper starts before any claim, so orphans of a dead process are
        # requeued before this node looks for work.
        children = [
            ChildSpec("broker", broker.run, Restart.PERMANENT),
            ChildSpec("reaper", reaper.run, Restart.PERMANENT),
        ]
        if workers:
            children.append(ChildSpec("leases", leases.run, Restart.PERMANENT))
            children.append(ChildSpec("workers", worker_pool.run, Restart.PERMANENT))
            children.append(ChildSpec("dispatcher", dispatcher.run, Restart.PERMANENT))
        rt = RunningBoard(
            ledger=ledger,
            storage=storage,
            capacity=capacity,
            workers=workers,
            dispatcher=dispatcher,
            reaper=reaper,
            lease_owner=lease_owner,
        )
        stats = StatsReporter(ledger, rt.node_snapshot)
        children.append(ChildSpec("stats", stats.run, Restart.PERMANENT))
        if extra_children is not None:
            children.extend(extra_children(rt))
        root = Supervisor(
            "callboard", children, strategy=Strategy.ONE_FOR_ONE, max_restarts=5, period=60.0
        )
        rt.supervisor = root
        # The caller's own exception, or the root supervisor's escalation, comes out
        # as itself.
        with unwrap_sole():
            async with trio.open_nursery() as nursery:
                await nursery.start(root.run)
                log.info(
                    "callboard node %s running: %d workers, job types %s",
                    lease_owner,
                    self.workers,
                    ", ".join(registry.job_types()),
                )
                try:
                    yield rt
                finally:
                    with trio.CancelScope(shield=True):
                        await rt.drain(self.shutdown_grace)
                    nursery.cancel_scope.cancel()
