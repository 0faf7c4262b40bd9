"""The handler API: the registry of job types, the validation of a submission against
it, `JobContext` (what a handler gets), the asset sink protocols the worker
implements, and the built-in job types: `noop` on every node (smoke tests,
benchmarks), the `demo.*` types on a node that asks for them (README, "Job types")."""

from __future__ import annotations

import inspect
import math
import mimetypes
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import trio
from trio.lowlevel import RunVar

from .errors import InvalidRequest, ReservedJobType, UnknownJobType
from .jobs import (
    MAX_ATTEMPTS,
    MAX_PRIORITY,
    MAX_SECONDS,
    Asset,
    Job,
    JobSpec,
    NewJob,
    check_reference,
    new_id,
)

# --- handlers -------------------------------------------------------------------------

T = TypeVar("T")

#: Threads of `ctx.run_sync`, per trio run (a limiter belongs to one run).
_HANDLER_THREADS: RunVar[trio.CapacityLimiter] = RunVar("callboard_handler_threads")


def _handler_threads() -> trio.CapacityLimiter:
    try:
        return _HANDLER_THREADS.get()
    except LookupError:
        limiter = trio.CapacityLimiter(40)
        _HANDLER_THREADS.set(limiter)
        return limiter


#: A handler may return a JSON value: the job's result (README, "Job results").
Handler = Callable[["JobContext"], Awaitable[Any]]

_JOB_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    job_type: str
    fn: Handler
    timeout: float | None = None
    max_attempts: int = 1
    concurrency: int | None = None
    #: One of callboard's own types (`noop`, `demo.*`), not a handler of the user's.
    builtin: bool = False


class HandlerRegistry:
    """Job types and the handlers that run them."""

    def __init__(self) -> None:
        self._specs: dict[str, HandlerSpec] = {}

    def register(
        self,
        job_type: str,
        fn: Handler,
        *,
        timeout: float | None = None,
        max_attempts: int = 1,
        concurrency: int | None = None,
        builtin: bool = False,
    ) -> HandlerSpec:
        if not builtin and job_type in BUILTIN_TYPES:
            raise ReservedJobType(job_type)
        if not _JOB_TYPE.match(job_type):
            raise ValueError(
                f"invalid job type {job_type!r}: use 1-128 letters, digits and _ . : -"
            )
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler for {job_type!r} must be an async function")
        if timeout is not None and not 0 < timeout <= MAX_SECONDS:
            raise ValueError(
                f"timeout for {job_type!r} must be a number of seconds above 0 "
                f"to {MAX_SECONDS} (ten years)"
            )
        if not 1 <= max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts for {job_type!r} must be from 1 to {MAX_ATTEMPTS}")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"concurrency for {job_type!r} must be at least 1")
        if job_type in self._specs:
            raise ValueError(f"a handler for {job_type!r} is already registered")
        spec = HandlerSpec(job_type, fn, timeout, max_attempts, concurrency, builtin)
        self._specs[job_type] = spec
        return spec

    def get(self, job_type: str) -> HandlerSpec:
        try:
            return self._specs[job_type]
        except KeyError:
            hint = ""
            if job_type.startswith("demo.") and not any(t in self for t in DEMO_TYPES):
                hint = (
                    "the demo.* job types are off on this node: start it with "
                    "`callboard serve --demo-types` (or CALLBOARD_DEMO_TYPES=true)"
                )
            raise UnknownJobType(job_type, self._specs, hint=hint) from None

    def __contains__(self, job_type: object) -> bool:
        return job_type in self._specs

    def job_types(self) -> list[str]:
        return sorted(self._specs)

    def specs(self) -> list[HandlerSpec]:
        return [self._specs[t] for t in sorted(self._specs)]

    def merged(self, other: HandlerRegistry) -> HandlerRegistry:
        out = HandlerRegistry()
        out._specs = {**self._specs, **other._specs}
        return out


def _seconds(name: str, value: object, *, zero_ok: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"{name} must be a number of seconds")
    low_ok = value >= 0 if zero_ok else value > 0
    if not (low_ok and value <= MAX_SECONDS):  # NaN fails both comparisons
        low = "from 0" if zero_ok else "above 0"
        raise InvalidRequest(
            f"{name} must be a number of seconds {low} to {MAX_SECONDS} (ten years)"
        )
    return float(value)


def build_new_job(
    registry: HandlerRegistry,
    company_id: str,
    spec: JobSpec,
    now: datetime,
) -> NewJob:
    """Validate one submission against the registry and resolve its defaults.

    Raises UnknownJobType or InvalidRequest with a message that names the field.
    """
    handler = registry.get(spec.job_type)
    if not isinstance(spec.input, Mapping):
        raise InvalidRequest(f"input must be a JSON object, not {type(spec.input).__name__}")
    if not isinstance(spec.priority, int) or isinstance(spec.priority, bool):
        raise InvalidRequest("priority must be an integer")
    if abs(spec.priority) > MAX_PRIORITY:
        raise InvalidRequest(f"priority must be between {-MAX_PRIORITY} and {MAX_PRIORITY}")
    delay = spec.delay
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if delay is not None:
        delay = _seconds("delay", delay, zero_ok=True)
    max_attempts = spec.max_attempts if spec.max_attempts is not None else handler.max_attempts
    if (
        isinstance(max_attempts, bool)
        or not isinstance(max_attempts, int)
        or not 1 <= max_attempts <= MAX_ATTEMPTS
    ):
        raise InvalidRequest(f"maxAttempts must be an integer from 1 to {MAX_ATTEMPTS}")
    timeout = spec.timeout if spec.timeout is not None else handler.timeout
    if timeout is not None:
        timeout = _seconds("timeout", timeout, zero_ok=False)
    check_reference("sourceTaskId", spec.source_task_id)
    check_reference("idempotencyKey", spec.idempotency_key)
    return NewJob(
        id=new_id(),
        company_id=company_id,
        job_type=spec.job_type,
        input=dict(spec.input),
        priority=spec.priority,
        max_attempts=max_attempts,
        timeout_seconds=timeout,
        run_at=now + timedelta(seconds=delay or 0),
        source_task_id=spec.source_task_id,
        idempotency_key=spec.idempotency_key,
    )


# --- the handler's view of its job ----------------------------------------------------


class ProgressSink(Protocol):
    """Where JobContext sends progress; the worker implements it (coalescing, leases)."""

    async def report(self, percent: int, message: str | None) -> None: ...


AssetData = bytes | bytearray | memoryview | Iterable[bytes] | AsyncIterable[bytes]


class AssetWriter(Protocol):
    """What `ctx.open_asset()` yields: write chunks; `asset` is set once the block ends."""

    asset: Asset | None

    async def write(self, data: bytes | bytearray | memoryview) -> None: ...


class AssetSink(Protocol):
    """Where JobContext stores and reads assets; the worker implements it (JobAssets)."""

    async def save(
        self, filename: str, content_type: str, data: AssetData, *, result: bool
    ) -> Asset: ...

    def open(
        self, filename: str, content_type: str, *, result: bool
    ) -> AbstractAsyncContextManager[AssetWriter]: ...

    async def read(self, asset_id: str) -> bytes: ...


@dataclass(slots=True)
class JobContext:
    """What a handler gets: its job's identity and input, and ways to report back.

    `progress()` is cheap to call often: the worker stores at most a few progress
    events a second per job and always keeps the latest value.

    Assets a handler saves go to the `generated` namespace, linked to the job and its
    source task. Their rows are written with the job's `done` transition, in the same
    transaction; if the attempt fails, is cancelled or loses its lease, its files are
    deleted and no row is written. The last asset saved with `result=True` (the
    default) becomes the job's `resultAssetId`.
    """

    job: Job
    _sink: ProgressSink
    _assets: AssetSink | None = None

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def company_id(self) -> str:
        return self.job.company_id

    @property
    def job_type(self) -> str:
        return self.job.job_type

    @property
    def input(self) -> Mapping[str, Any]:
        return self.job.input

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def source_task_id(self) -> str | None:
        return self.job.source_task_id

    async def progress(self, percent: float, message: str | None = None) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise TypeError("percent must be a number from 0 to 100")
        if not math.isfinite(percent):
            raise ValueError("percent must be a finite number from 0 to 100")
        clamped = max(0, min(100, round(percent)))
        await self._sink.report(clamped, None if message is None else str(message))

    def _asset_sink(self) -> AssetSink:
        if self._assets is None:
            raise RuntimeError("this JobContext has no asset storage")
        return self._assets

    async def save_asset(
        self, filename: str, content_type: str, data: AssetData, *, result: bool = True
    ) -> Asset:
        """Store `data` (bytes, or a sync or async iterable of bytes chunks, streamed) as
        a generated asset. Over the namespace's cap it raises AssetTooLarge, having kept
        nothing; left unhandled, that fails the job with the cap in its message."""
        return await self._asset_sink().save(filename, content_type, data, result=result)

    def open_asset(
        self, filename: str, content_type: str, *, result: bool = True
    ) -> AbstractAsyncContextManager[AssetWriter]:
        """`async with ctx.open_asset("out.mp4", "video/mp4") as f: await f.write(chunk)`;
        the asset is stored when the block ends normally (`f.asset`), and nothing is
        kept if it raises."""
        return self._asset_sink().open(filename, content_type, result=result)

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking code (CPU work, `time.sleep`, a synchronous client) in a worker
        thread, so the event loop and this node's lease renewals keep going.

        If the job is cancelled or times out, this returns at once and the thread is
        abandoned: it runs to its end in the background and its result is dropped, as
        a thread cannot be stopped from outside. For work that must stop, use
        `run_process`. A handler that blocks the loop instead gets the node ended by
        its watchdog (see the README's "Handlers must not block")."""
        # A limiter of its own: abandoned threads keep their token until they end, and
        # must not starve trio's default one, which asset writes and the SQLite store use.
        return await trio.to_thread.run_sync(
            fn, *args, abandon_on_cancel=True, limiter=_handler_threads()
        )

    async def run_process(
        self,
        command: Sequence[str],
        *,
        input: bytes | None = None,
        check: bool = True,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run a program and capture its output (stdout and stderr as bytes). It runs in
        a process group of its own; if the job is cancelled or times out, the whole group
        (the programs it started too) gets SIGTERM, then SIGKILL a second later, before
        this raises. With `check`, a non-zero exit raises `CalledProcessError`, which
        fails the attempt with the program's exit status. The program inherits the
        node's environment unless `env` is given."""
        if isinstance(command, str | bytes):
            raise TypeError("command must be a sequence of arguments, not a string")
        return await trio.run_process(
            list(command),
            stdin=input,
            capture_stdout=True,
            capture_stderr=True,
            check=check,
            cwd=cwd,
            env=env,
            start_new_session=True,
            deliver_cancel=_stop_group,
        )

    async def read_asset(self, asset_id: str) -> bytes:
        """The bytes of an asset of this job's company (an upload named in the input,
        or one this attempt saved). Raises AssetNotFound for any other id."""
        return await self._asset_sink().read(asset_id)


# --- built-in job types ---------------------------------------------------------------

#: What every node runs: `noop`, to measure the runtime itself.
builtins = HandlerRegistry()
#: What a node runs when asked (`Settings.demo_types`): off by default, since one
#: `demo.render` job may write 500 MiB of storage, and `demo.fail` fails at will.
demos = HandlerRegistry()


async def noop(ctx: JobContext) -> None:
    """Does nothing: measures the runtime's own overhead."""


async def sleep(ctx: JobContext) -> None:
    """Input `{"seconds": S}`: sleeps S seconds, reporting progress about ten times."""
    seconds = ctx.input.get("seconds", 1)
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
    ):
        raise ValueError("input.seconds must be a number")
    if seconds < 0:
        raise ValueError("input.seconds must not be negative")
    steps = 10
    for step in range(steps):
        await ctx.progress(
            step * 100 / steps, f"sleeping ({step * seconds / steps:g}/{seconds:g}s)"
        )
        await trio.sleep(seconds / steps)
    await ctx.progress(100, f"slept {seconds:g}s")


async def fail(ctx: JobContext) -> None:
    """Input `{"message": M}`: fails every attempt with M."""
    raise RuntimeError(str(ctx.input.get("message", "demo failure")))


_RENDER_FIELDS = {"bytes", "chunk", "contentType", "filename"}
_MAX_CHUNK = 16 * 1024 * 1024


def _whole(value: object, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"input.{name} must be a whole number of at least {low}")
    if high is not None and value > high:
        raise ValueError(f"input.{name} must be at most {high}")
    return value


async def render(ctx: JobContext) -> None:
    """Input `{"bytes": N, "chunk": M, "contentType": T}` (M defaults to 1 MiB, T to
    application/octet-stream; an optional "filename"): streams N bytes of generated
    content into a `generated` asset, M at a time, with progress. Memory stays at one
    chunk whatever N, so it exercises the storage path up to (and past) its cap."""
    unknown = sorted(set(ctx.input) - _RENDER_FIELDS)
    if unknown:
        raise ValueError(f"unknown input field(s): {', '.join(unknown)}")
    total = _whole(ctx.input.get("bytes"), "bytes", 0)
    chunk = _whole(ctx.input.get("chunk", 1024 * 1024), "chunk", 1, _MAX_CHUNK)
    content_type = ctx.input.get("contentType", "application/octet-stream")
    if not isinstance(content_type, str):
        raise TypeError("input.contentType must be a string")
    filename = ctx.input.get("filename")
    if filename is None:
        filename = "render" + (mimetypes.guess_extension(content_type.split(";")[0]) or ".bin")
    # One block, reused: varied bytes (not zeros a filesystem could store sparsely),
    # generated once so the content costs nothing per chunk.
    seed = ctx.job_id.encode()
    block = (seed * (chunk // len(seed) + 1))[:chunk]
    await ctx.progress(0, f"rendering {total} bytes")
    async with ctx.open_asset(filename, content_type) as out:
        written = 0
        while written < total:
            size = min(chunk, total - written)
            await out.write(block if size == chunk else block[:size])
            written += size
            await ctx.progress(written * 100 / total, f"{written} of {total} bytes")
    await ctx.progress(100, f"rendered {total} bytes")


#: The demo types' names, and every built-in name: no handler of the user's may take one.
DEMO_TYPES = frozenset({"demo.sleep", "demo.fail", "demo.render"})
BUILTIN_TYPES = frozenset({"noop"}) | DEMO_TYPES

builtins.register("noop", noop, builtin=True)
demos.register("demo.sleep", sleep, builtin=True)
demos.register("demo.fail", fail, builtin=True)
demos.register("demo.render", render, builtin=True)


async def _stop_group(process: trio.Process) -> None:
    """Cancel delivery for `run_process`: the program's whole group, SIGTERM and then,
    a second later, SIGKILL (a lease has little time left when a job is stopped). It
    returns once no process of the group runs any more (or a second after SIGKILL, for
    one the kernel has not finished killing): programs the program started, which may
    ignore SIGTERM, must not outlive the attempt that stopped them. Shielded: trio
    cancels delivery as soon as the program itself exits, which would leave the rest of
    its group running."""
    with trio.CancelScope(shield=True):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            with trio.move_on_after(1.0):
                await process.wait()
                while True:
                    if not await trio.to_thread.run_sync(_group_running, process.pid):
                        return
                    await trio.sleep(0.01)


def _group_running(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie, dead and waiting to be
    reaped by whoever inherited it, does not)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True  # cannot tell the dead from the running: it exists
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        # After the name: state, ppid, pgrp.
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
