"""What the node's workers are doing: shared by the dispatcher and the workers.

The dispatcher reserves a slot for each job it claims (so it never claims more than
the idle workers can take), the worker releases it when the job ends. Jobs running
here can be cancelled through it.

A worker whose handler has returned and which is only recording the outcome (one
write, usually one round trip) counts as idle for the next claim (`finishing`): the
claim then runs while the outcome commits instead of after it, and its jobs reach
that worker as soon as it is free. Its slot stays reserved until the outcome is
recorded, so a node that drains still waits for it. A claimed job that waited too
long for a worker (the store slowed down the recording) is not started: see
`JobRunner.run`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import trio

from ..jobs import Job


@dataclass(slots=True)
class RunningJob:
    job: Job
    scope: trio.CancelScope
    worker: str | None = None
    started: float = field(default_factory=trio.current_time)
    cancel_requested: bool = False
    lease_lost: bool = False


class Capacity:
    def __init__(
        self,
        size: int,
        concurrency: Mapping[str, int | None],
        on_release: Callable[[], None],
    ) -> None:
        self.size = size
        self._concurrency = dict(concurrency)
        self._by_type: Counter[str] = Counter()
        # Keyed by (job id, attempt): a job reclaimed here while a stale run of it is
        # still unwinding is another reservation, not the same one.
        self._reserved: dict[tuple[str, int], str] = {}
        self._running: dict[tuple[str, int], RunningJob] = {}
        # Reserved, with the handler returned: the outcome is being recorded.
        self._finishing: set[tuple[str, int]] = set()
        # Cancels that arrive between the claim's commit and the handler's start.
        self._cancel_pending: set[str] = set()
        self._emptied: trio.Event | None = None
        self._on_release = on_release

    @property
    def busy(self) -> int:
        return len(self._reserved)

    def idle(self) -> int:
        """Workers free now or as soon as they have recorded an outcome."""
        return self.size - len(self._reserved) + len(self._finishing)

    def free_now(self) -> int:
        """Workers free this moment (a finishing one is not yet)."""
        return self.size - len(self._reserved)

    def type_caps(self) -> dict[str, int | None]:
        """What each job type may still start here (None: only the pool size limits it)."""
        caps: dict[str, int | None] = {}
        for job_type, limit in self._concurrency.items():
            caps[job_type] = None if limit is None else max(0, limit - self._by_type[job_type])
        return caps

    def reserve(self, job: Job) -> None:
        self.reserve_slot(job.id, job.attempt, job.job_type)

    def reserve_slot(self, job_id: str, attempt: int, job_type: str) -> bool:
        """Reserve a slot for an attempt not claimed yet (see Dispatcher.start_now);
        False if that attempt holds one already."""
        key = (job_id, attempt)
        if key in self._reserved:
            return False
        self._reserved[key] = job_type
        self._by_type[job_type] += 1
        return True

    def finishing(self, job: Job) -> None:
        """The job's handler returned; its worker only records the outcome now."""
        key = (job.id, job.attempt)
        if key in self._reserved and key not in self._finishing:
            self._finishing.add(key)
            self._on_release()

    def release(self, job: Job) -> None:
        self.release_slot(job.id, job.attempt)

    def release_slot(self, job_id: str, attempt: int) -> None:
        key = (job_id, attempt)
        job_type = self._reserved.pop(key, None)
        if job_type is not None:
            self._by_type[job_type] -= 1
        self._running.pop(key, None)
        self._finishing.discard(key)
        if job_id in self._cancel_pending and not any(
            reserved_id == job_id for reserved_id, _ in self._reserved
        ):
            self._cancel_pending.discard(job_id)
        if not self._reserved and self._emptied is not None:
            self._emptied.set()
        self._on_release()

    async def wait_until_empty(self) -> None:
        """Return once no job is reserved or running on this node."""
        while self._reserved:
            self._emptied = trio.Event()
            await self._emptied.wait()

    def started(self, running: RunningJob) -> None:
        self._running[(running.job.id, running.job.attempt)] = running
        if running.job.id in self._cancel_pending:
            self._cancel_pending.discard(running.job.id)
            running.cancel_requested = True
            running.scope.cancel()

    def running(self) -> list[RunningJob]:
        return list(self._running.values())

    def cancel(self, job_id: str, *, leased_here: bool = False) -> bool:
        """Cancel a job running (or about to run) on this node. `leased_here` says the
        store shows this node's lease on it: then a cancel that finds no reservation yet
        (the claim committed, the dispatcher has not reserved it) waits for its start.
        False if the job does not run here."""
        found = False
        for (running_id, _), running in self._running.items():
            if running_id == job_id:
                running.cancel_requested = True
                running.scope.cancel()
                found = True
        if found:
            return True
        if leased_here or any(reserved_id == job_id for reserved_id, _ in self._reserved):
            self._cancel_pending.add(job_id)
            return True
        return False
