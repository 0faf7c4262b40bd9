"""What the node's workers are doing: shared by the dispatcher and the workers.

The dispatcher reserves a slot for each job it claims (so it never claims more than
the idle workers can take), the worker releases it when the job ends. Jobs running
here can be cancelled through it.
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
        self._reserved: dict[str, Job] = {}
        self._running: dict[str, RunningJob] = {}
        # Cancels that arrive between the claim and the handler's start.
        self._cancel_pending: set[str] = set()
        self._emptied: trio.Event | None = None
        self._on_release = on_release

    @property
    def busy(self) -> int:
        return len(self._reserved)

    def idle(self) -> int:
        return self.size - len(self._reserved)

    def type_caps(self) -> dict[str, int | None]:
        """What each job type may still start here (None: only the pool size limits it)."""
        caps: dict[str, int | None] = {}
        for job_type, limit in self._concurrency.items():
            caps[job_type] = None if limit is None else max(0, limit - self._by_type[job_type])
        return caps

    def reserve(self, job: Job) -> None:
        self._reserved[job.id] = job
        self._by_type[job.job_type] += 1

    def release(self, job: Job) -> None:
        if self._reserved.pop(job.id, None) is not None:
            self._by_type[job.job_type] -= 1
        self._running.pop(job.id, None)
        self._cancel_pending.discard(job.id)
        if not self._reserved and self._emptied is not None:
            self._emptied.set()
        self._on_release()

    async def wait_until_empty(self) -> None:
        """Return once no job is reserved or running on this node."""
        while self._reserved:
            self._emptied = trio.Event()
            await self._emptied.wait()

    def started(self, running: RunningJob) -> None:
        self._running[running.job.id] = running
        if running.job.id in self._cancel_pending:
            self._cancel_pending.discard(running.job.id)
            running.cancel_requested = True
            running.scope.cancel()

    def running(self) -> list[RunningJob]:
        return list(self._running.values())

    def running_ids(self) -> list[str]:
        return list(self._reserved)

    def cancel(self, job_id: str) -> bool:
        """Cancel a job running on this node; False if it does not run here."""
        running = self._running.get(job_id)
        if running is None:
            if job_id in self._reserved:
                self._cancel_pending.add(job_id)
                return True
            return False
        running.cancel_requested = True
        running.scope.cancel()
        return True
