"""Board: the handler registry and the configuration of one callboard node.

`Board.running()` opens the store and runs the node: the actor tree, its supervision
and the wiring of the store's hooks are in `running_board.run_node`, beside the
`RunningBoard` it yields.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from .actors.worker import Backoff
from .config import SettingError, Settings
from .errors import ReservedJobType
from .handlers import Handler, HandlerRegistry, HandlerSpec, builtins, demos
from .running_board import RunningBoard, run_node
from .runtime import ChildSpec
from .storage.names import GENERATED, UPLOADS
from .store import open_store
from .store.base import JobStore


class _Unset:
    """The default of `event_retention` and `job_retention`, where None means "keep
    for ever"."""


UNSET = _Unset()


class Board:
    """Handlers and settings of a node. Register handlers with `@board.handler(...)`,
    then `async with board.running() as rt:` to run it.

    The configuration is one `callboard.config.Settings` (the defaults live there):
    pass `settings=`, or any of its fields as keyword arguments, which override it.
    `poll_interval`, `retry_backoff`, `progress_interval` and `store` tune the runtime
    itself (tests use them); they have no environment variable.
    """

    def __init__(
        self,
        database_url: str | None = None,
        storage_dir: str | os.PathLike[str] | None = None,
        workers: int | None = None,
        *,
        settings: Settings | None = None,
        lease_seconds: float | None = None,
        shutdown_grace: float | None = None,
        event_retention: float | _Unset | None = UNSET,
        job_retention: float | _Unset | None = UNSET,
        generated_asset_max_bytes: int | None = None,
        attachment_max_bytes: int | None = None,
        result_max_bytes: int | None = None,
        database_pool_size: int | None = None,
        migrate: bool | None = None,
        loop_stall_exit: bool | None = None,
        demo_types: bool | None = None,
        poll_interval: float = 2.0,
        retry_backoff: Backoff | None = None,
        progress_interval: float = 0.25,
        store: JobStore | None = None,
    ) -> None:
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("database_url", database_url),
                ("storage_dir", None if storage_dir is None else Path(storage_dir)),
                ("workers", workers),
                ("lease_seconds", lease_seconds),
                ("shutdown_grace", shutdown_grace),
                ("generated_asset_max_bytes", generated_asset_max_bytes),
                ("attachment_max_bytes", attachment_max_bytes),
                ("result_max_bytes", result_max_bytes),
                ("database_pool_size", database_pool_size),
                ("migrate", migrate),
                ("loop_stall_exit", loop_stall_exit),
                ("demo_types", demo_types),
            )
            if value is not None
        }
        if not isinstance(event_retention, _Unset):
            overrides["event_retention"] = event_retention
        if not isinstance(job_retention, _Unset):
            overrides["job_retention"] = job_retention
        base = settings if settings is not None else Settings()
        #: The node's configuration, defaults resolved and every value checked.
        self.settings = replace(base, **overrides) if overrides else base
        self.poll_interval = poll_interval
        self.retry_backoff = retry_backoff or Backoff()
        self.progress_interval = progress_interval
        self._store = store
        self._registry = HandlerRegistry()
        self._schedules: dict[tuple[str, str], dict[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> Board:
        """The board `callboard serve` runs: these settings, and the handler modules
        they name loaded."""
        board = cls(settings=settings)
        for module in settings.handlers:
            board.load_handlers(module)
        return board

    @property
    def asset_caps(self) -> dict[str, int]:
        """Per-namespace caps of asset storage, checked while writing."""
        return {
            GENERATED: self.settings.generated_asset_max_bytes,
            UPLOADS: self.settings.attachment_max_bytes,
        }

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
        What `fn` returns (a JSON value, at most `result_max_bytes` as JSON) becomes the
        job's `result`.
        """

        def register(fn: Handler) -> Handler:
            self._registry.register(
                job_type, fn, timeout=timeout, max_attempts=max_attempts, concurrency=concurrency
            )
            return fn

        return register

    def schedule(
        self,
        name: str,
        *,
        company: str,
        job_type: str,
        input: Mapping[str, Any] | None = None,
        cron: str | None = None,
        every: float | None = None,
        timezone: str = "UTC",
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: float | None = None,
        catch_up: str = "skip",
    ) -> None:
        """Declare a schedule in code: at start-up the node creates it in `company` (a
        company id or name; a name that does not exist yet is created), or updates the
        company's schedule of that name to match. Give `cron` (five fields, read in
        `timezone`) or `every` (seconds). A schedule paused through the API stays
        paused; its next tick moves only when its timing changed. The fields are
        checked at start-up, as `RunningBoard.create_schedule` checks them."""
        self._schedules[(company, name)] = {
            "name": name,
            "job_type": job_type,
            "input": {} if input is None else input,
            "cron": cron,
            "every": every,
            "timezone": timezone,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout": timeout,
            "catch_up": catch_up,
        }

    @property
    def declared_schedules(self) -> list[tuple[str, dict[str, Any]]]:
        """(company, fields) of every schedule declared with `schedule`."""
        return [(company, dict(fields)) for (company, _), fields in self._schedules.items()]

    def load_handlers(self, module_name: str) -> None:
        """Import a module that registers handlers on a Board named `board` (or exposes a
        `register(board)` function). A module that registers a built-in type's name is
        refused (SettingError naming both): the built-in would be shadowed on this node
        and not on the others, or the module's handler never run."""
        try:
            module = importlib.import_module(module_name)
            register = getattr(module, "register", None)
            other = getattr(module, "board", None)
            if callable(register):
                register(self)
                return
        except ImportError as exc:
            raise SettingError(f"--handlers: cannot import {module_name!r}: {exc}") from exc
        except ReservedJobType as exc:
            raise SettingError(
                f"--handlers: module {module_name!r} registers {exc.job_type!r}, a built-in "
                "job type; register its handler under another name"
            ) from exc
        if isinstance(other, Board):
            for spec in other._registry.specs():
                self._registry.register(
                    spec.job_type,
                    spec.fn,
                    timeout=spec.timeout,
                    max_attempts=spec.max_attempts,
                    concurrency=spec.concurrency,
                )
            self._schedules.update(other._schedules)
        else:
            raise SettingError(
                f"--handlers: module {module_name!r} has neither a `board = Board()` "
                "with handlers nor a `register(board)` function"
            )

    @property
    def registry(self) -> HandlerRegistry:
        """The built-in job types (the demo ones with `demo_types`) plus this board's."""
        known = builtins.merged(demos) if self.settings.demo_types else builtins
        return known.merged(self._registry)

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
        settings = self.settings
        store = self._store or open_store(
            settings.database_url, pool_size=settings.database_pool_size, migrate=settings.migrate
        )
        async with store.opened(), run_node(self, store, extra_children) as rt:
            yield rt
