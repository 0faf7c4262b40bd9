"""Workers: each takes a claimed job from the dispatcher and runs its handler.

One job runs inside its own nursery, which holds the handler, the lease renewal and
the progress writer; nothing a job starts outlives it. The handler runs inside the
job's cancel scope, with the handler's timeout around it:

- it returns: the job is done, with what it returned as its result (JSON text,
  bounded by `result_max_bytes`; a result that is too big or no JSON fails the
  attempt as an exception would, with a message saying which);
- it raises: the attempt failed with the exception's message, type and traceback
  (`failure`; the worker carries on); with attempts left the job is requeued with
  exponential backoff plus jitter;
- the timeout fires: the attempt failed with "timed out after N seconds" (type
  `Timeout`);
- a cancel was requested (here, or on another node, learnt at the next renewal):
  the job ends cancelled;
- the lease is lost (the reaper took the job, or renewals failed until the lease ran
  out): the handler is cancelled at once and nothing more is written, so a job never
  runs twice at the same time;
- the runtime itself is cancelled (shutdown): nothing is written; the lease runs out
  and the reaper of this or another node reclaims the job.

The assets a handler saves are written to storage at once and their rows with the
`done` transition (see `job_assets`); every other ending deletes their files.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

import trio

from ..config import DEFAULT_RESULT_MAX_BYTES
from ..errors import StoreUnavailable
from ..handlers import HandlerRegistry, HandlerSpec, JobContext
from ..jobs import INVALID_RESULT_TYPE, TIMEOUT_TYPE, Job, JobEvent, NodeEvent, encode_result
from ..storage.local import AssetStorage
from .capacity import Capacity, RunningJob
from .failure import Failure, failure_of
from .job_assets import JobAssets
from .lease_keeper import LeaseKeeper
from .ledger import Ledger

log = logging.getLogger("callboard.worker")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": half the delay fixed, half random,
    so retries of many jobs failing together spread out."""

    base: float = 1.0
    maximum: float = 300.0

    def delay(self, attempt: int, rng: random.Random = random._inst) -> float:  # type: ignore[attr-defined]
        full = min(self.maximum, self.base * 2 ** max(0, attempt - 1))
        return full / 2 + rng.uniform(0, full / 2)


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    lease_owner: str
    lease_seconds: float
    backoff: Backoff = Backoff()
    progress_interval: float = 0.25
    result_max_bytes: int = DEFAULT_RESULT_MAX_BYTES


class _ProgressWriter:
    """Coalesces a handler's progress reports: the first is stored at once, later ones
    at most once per `interval`, always the latest value; reporting never waits on the
    store (the write runs in the job's nursery, started with the first report)."""

    def __init__(self, ledger: Ledger, running: RunningJob, settings: WorkerSettings) -> None:
        self._ledger = ledger
        self._running = running
        self._settings = settings
        self._pending: tuple[int, str | None] | None = None
        #: Starts a task in the job's nursery (set by the runner).
        self.spawn: Callable[[Callable[[], Awaitable[None]]], None] | None = None
        self._started = False

    async def report(self, percent: int, message: str | None) -> None:
        self._pending = (percent, message)
        if not self._started:
            # Made at the first report: most jobs report none.
            self._send, self._receive = trio.open_memory_channel[None](1)
            # One write at a time, so the final flush waits for one in flight and the
            # stored order is the reported order.
            self._writing = trio.Lock()
            self._started = True
            if self.spawn is not None:
                self.spawn(self.run)
        try:
            self._send.send_nowait(None)
        except trio.WouldBlock:
            pass
        await trio.lowlevel.checkpoint()

    async def flush(self) -> None:
        if not self._started:
            return  # nothing was ever reported, so nothing is pending or in flight
        async with self._writing:
            if self._pending is None:
                return
            percent, message = self._pending
            self._pending = None
            job = self._running.job
            try:
                event = await self._ledger.progress(
                    job.id, self._settings.lease_owner, percent, message
                )
            except StoreUnavailable:
                # The store reports the outage once; this is one of its retries.
                log.debug("could not store progress of job %s", job.id, exc_info=True)
                return
        if event is None:
            self._running.lease_lost = True
            self._running.scope.cancel()

    async def run(self) -> None:
        async for _ in self._receive:
            await self.flush()
            await trio.sleep(self._settings.progress_interval)


class _Recorded(enum.Enum):
    STORED = "stored"
    LEASE_LOST = "lease lost"  # the store refused: nothing was written
    GAVE_UP = "gave up"  # the store stayed unreachable: unknown whether it was written
    IN_DOUBT = "in doubt"  # refused after a try whose answer was lost: maybe written


class JobRunner:
    """Runs one claimed job to its end and records the outcome."""

    def __init__(
        self,
        ledger: Ledger,
        registry: HandlerRegistry,
        settings: WorkerSettings,
        storage: AssetStorage,
        leases: LeaseKeeper,
    ) -> None:
        self._leases = leases
        self._ledger = ledger
        self._registry = registry
        self._settings = settings
        self._storage = storage

    async def run(self, running: RunningJob, finishing: Callable[[], None] = lambda: None) -> None:
        """`finishing()` is called once the handler has returned, before the outcome
        is recorded (the dispatcher may claim this worker's next job meanwhile)."""
        job = running.job
        spec = self._registry.get(job.job_type)
        progress = _ProgressWriter(self._ledger, running, self._settings)
        assets = JobAssets(self._storage, self._ledger.store, job, self._ledger.now)
        outcome = _Outcome()
        watchdog = self._leases.hold(running)
        if trio.current_time() >= watchdog.deadline:
            # Claimed, then kept waiting for a free worker until its lease is nearly
            # out: starting it now could overlap the reaper's next attempt.
            log.warning("job %s waited too long for a worker; leaving it to the reaper", job.id)
            self._leases.release(running)
            return
        try:
            with running.scope:
                with watchdog:
                    async with trio.open_nursery() as nursery:
                        # Helpers start in the job's nursery only when the handler
                        # first needs them: most jobs report no progress, save no file.
                        progress.spawn = assets.spawn = nursery.start_soon
                        ctx = JobContext(job, progress, assets)
                        await _call_handler(spec, ctx, job.timeout_seconds, outcome, self._settings)
                        assets.close()
                        if outcome.finished:
                            await progress.flush()
                        nursery.cancel_scope.cancel()
                if watchdog.cancelled_caught:
                    log.warning(
                        "job %s: lease about to run out without a renewal; stopping it", job.id
                    )
                    running.lease_lost = True
            finishing()
            # The lease is still renewed while the outcome is written (a slow store
            # does not lose it); `_write` stops retrying before it can run out.
            await self._record(running, outcome, assets)
        finally:
            self._leases.release(running)
            # Files no committed row points at go, whatever ended the job (shutdown too).
            await assets.aclose()

    async def _record(self, running: RunningJob, outcome: _Outcome, assets: JobAssets) -> None:
        job = running.job
        owner = self._settings.lease_owner
        if running.lease_lost:
            log.warning("job %s lost its lease; another attempt owns it now", job.id)
            return
        if running.cancel_requested and not outcome.finished:
            await self._write(lambda: self._ledger.mark_cancelled(job.id, owner), running)
            return
        if outcome.timed_out:
            failure = Failure(f"timed out after {job.timeout_seconds:g} seconds", TIMEOUT_TYPE)
        elif outcome.error is not None and outcome.invalid_result:
            failure = Failure(str(outcome.error), INVALID_RESULT_TYPE)
        elif outcome.error is not None:
            failure = failure_of(outcome.error)
            log.info(
                "job %s (%s) attempt %d failed: %s",
                job.id,
                job.job_type,
                job.attempt,
                failure.message,
            )
        else:
            rows, result_asset_id = assets.rows, assets.result_asset_id
            result = outcome.result
            recorded = await self._write(
                lambda: self._ledger.complete(job.id, owner, result_asset_id, rows, result),
                running,
            )
            if recorded is _Recorded.STORED:
                assets.stored()
            elif recorded is _Recorded.GAVE_UP or recorded is _Recorded.IN_DOUBT:
                assets.keep_for_gc()
            return
        retry_at = self._retry_at(job)
        await self._write(lambda: self._ledger.fail(job.id, owner, failure, retry_at), running)

    def _retry_at(self, job: Job) -> datetime | None:
        if job.attempt >= job.max_attempts:
            return None
        return self._ledger.now() + timedelta(seconds=self._settings.backoff.delay(job.attempt))

    async def _write(
        self, write: Callable[[], Awaitable[JobEvent | None]], running: RunningJob
    ) -> _Recorded:
        """Record an outcome, retrying while the store is unreachable, for as long as the
        lease holds (less the watchdog's margin): past it the reaper of any node may
        take the job and this node claim its next attempt, and a late write here must
        not land on that attempt. Giving up then loses nothing: the reaper runs it."""
        deadline = self._leases.deadline(running)
        delay = 0.1
        failed_once = False
        while True:
            try:
                event = await write()
            except StoreUnavailable:
                failed_once = True
                if trio.current_time() + delay >= deadline:
                    log.error(
                        "gave up recording the outcome of job %s", running.job.id, exc_info=True
                    )
                    return _Recorded.GAVE_UP
                log.debug(
                    "store unavailable recording job %s; retrying", running.job.id, exc_info=True
                )
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if event is None:
                if failed_once:
                    # An earlier try may have committed before its answer was lost.
                    log.warning("job %s: its outcome may have been stored already", running.job.id)
                    return _Recorded.IN_DOUBT
                log.warning("job %s lost its lease before its outcome was stored", running.job.id)
                return _Recorded.LEASE_LOST
            return _Recorded.STORED


@dataclass(slots=True)
class _Outcome:
    finished: bool = False
    timed_out: bool = False
    error: BaseException | None = None
    #: What the handler returned, as `encode_result` checked and wrote it.
    result: str | None = None
    #: `error` is encode_result's refusal of what the handler returned.
    invalid_result: bool = False


async def _call_handler(
    spec: HandlerSpec,
    ctx: JobContext,
    time_limit: float | None,
    outcome: _Outcome,
    settings: WorkerSettings,
) -> None:
    """Run the handler and note how it ended; its errors never escape, so a handler
    cannot crash its worker."""
    deadline = None if time_limit is None else trio.move_on_after(time_limit)
    returned: object = None
    try:
        with deadline or contextlib.nullcontext():
            returned = await spec.fn(ctx)
            outcome.finished = True
    except Exception as exc:
        outcome.error = exc
    except BaseExceptionGroup as group:
        # The handler failed while being cancelled: its own nursery raised an error
        # beside the Cancelled. Keep the error. The cancellation is not lost: a
        # cancelled scope raises Cancelled again at the next checkpoint.
        _, rest = group.split(trio.Cancelled)
        if rest is None:
            raise
        failures, fatal = rest.split(Exception)
        if fatal is not None:
            raise
        outcome.error = failures
    outcome.timed_out = deadline is not None and deadline.cancel_called and not outcome.finished
    if outcome.finished:
        try:
            outcome.result = encode_result(returned, settings.result_max_bytes)
        except ValueError as exc:
            # The attempt failed as if the handler had raised: its assets go, and it is
            # retried while attempts are left.
            outcome.finished = False
            outcome.error = exc
            outcome.invalid_result = True


class Worker:
    """An actor that runs jobs one at a time from the dispatcher's channel."""

    def __init__(
        self,
        name: str,
        jobs: trio.MemoryReceiveChannel[Job],
        runner: JobRunner,
        capacity: Capacity,
        announce: Callable[[NodeEvent], None],
    ) -> None:
        self.name = name
        self._jobs = jobs
        self._runner = runner
        self._capacity = capacity
        self._announce = announce
        self.current: RunningJob | None = None
        self.completed = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                job = await self._jobs.receive()
            except trio.EndOfChannel:
                return
            running = RunningJob(job=job, scope=trio.CancelScope(), worker=self.name)
            self.current = running
            self._capacity.started(running)
            self._announce(
                NodeEvent(
                    "worker.busy",
                    {
                        "worker": self.name,
                        "jobId": job.id,
                        "jobType": job.job_type,
                        "companyId": job.company_id,
                    },
                )
            )
            try:
                await self._runner.run(running, partial(self._capacity.finishing, job))
                self.completed += 1
            finally:
                self.current = None
                self._capacity.release(job)
                self._announce(NodeEvent("worker.idle", {"worker": self.name, "jobId": job.id}))
