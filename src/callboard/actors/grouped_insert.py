"""Group commit for submits: concurrent submits share one store write.

Each submit over HTTP is one request with one job. Written one by one, every job costs
a store transaction (a round trip to PostgreSQL, a hop to SQLite's writer thread), and
that, not the web framework, is what limits a node's submit rate. Here, while one
write is in flight, the submits that arrive meanwhile queue; the next write takes all
of them (up to `MAX_JOBS`) in one `insert_jobs` call: one statement, one transaction.
A lone submit on an idle node is written at once, so batching costs it no latency.

How it stays correct:
- A fair `trio.Lock` orders the writes. Whoever holds it writes every submit queued
  so far; a submit whose jobs a write before it took finds its answer ready and
  returns without writing.
- The write runs shielded (with a deadline): the submits of other requests ride on
  it, so the one whose task holds the lock being cancelled (its client went away)
  must not cancel theirs. A submit cancelled while it still waits for the lock takes
  its jobs out of the queue: nothing of it is written.
- One submit's jobs stay together: all of them are written, or (on any error) none.
  When a shared write is refused for a reason that belongs to one submit (an unknown
  company, say), each submit of the group is written again on its own, so only that
  one gets the error. A store outage fails them all: none was written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import trio

from ..errors import CallboardError, StoreUnavailable
from ..jobs import Inserted, NewJob

#: Jobs written by one grouped write; a submit bigger than this is written on its own.
MAX_JOBS = 1000
#: Writes in flight at once. More than one lets the node prepare the next group while
#: the store works on the last (the store keeps event ids in commit order either way).
WRITERS = 4
#: How long a shared write may run before its submits are told the store is unavailable.
WRITE_DEADLINE = 60.0

InsertJobs = Callable[[Sequence[NewJob], datetime], Awaitable[list[Inserted]]]


class _Submit:
    __slots__ = ("done", "error", "inserted", "jobs", "taken")

    def __init__(self, jobs: Sequence[NewJob]) -> None:
        self.jobs = jobs
        self.inserted: list[Inserted] | None = None
        self.error: Exception | None = None
        #: A write has taken these jobs; `done` is set when it has its answer.
        self.taken = False
        self.done = trio.Event()

    @property
    def answered(self) -> bool:
        return self.inserted is not None or self.error is not None

    def answer(self) -> list[Inserted]:
        if self.error is not None:
            raise self.error
        assert self.inserted is not None
        return self.inserted


class GroupedInsert:
    def __init__(
        self, insert_jobs: InsertJobs, now: Callable[[], datetime], writers: int = WRITERS
    ) -> None:
        self._insert_jobs = insert_jobs
        self._now = now
        self._writers = trio.CapacityLimiter(writers)
        self._queue: list[_Submit] = []
        #: Writes made and jobs written (for the node's statistics and the tests).
        self.writes = 0
        self.jobs_written = 0

    async def insert(self, jobs: Sequence[NewJob]) -> list[Inserted]:
        submit = _Submit(jobs)
        self._queue.append(submit)
        try:
            async with self._writers:
                while not submit.taken:
                    await self._write_queued()
        finally:
            if not submit.taken:
                self._queue.remove(submit)  # cancelled before any write took it
        if not submit.done.is_set():
            # Taken by another write still in flight: wait for its answer (a cancel
            # here only stops waiting; the jobs are written or refused all the same).
            await submit.done.wait()
        return submit.answer()

    def _take(self) -> list[_Submit]:
        group: list[_Submit] = []
        count = 0
        while self._queue:
            size = len(self._queue[0].jobs)
            if group and count + size > MAX_JOBS:
                break
            submit = self._queue.pop(0)
            submit.taken = True
            group.append(submit)
            count += size
        return group

    async def _write_queued(self) -> None:
        group = self._take()
        with trio.CancelScope(shield=True, deadline=trio.current_time() + WRITE_DEADLINE):
            try:
                await self._write(group)
            except Exception as exc:
                # Every submit of the group gets the answer: none was written.
                for submit in group:
                    if not submit.answered:
                        submit.error = exc
        for submit in group:
            if not submit.answered:  # the deadline cut the write short
                submit.error = StoreUnavailable("the store did not answer a submit in time")
            submit.done.set()

    async def _write(self, group: list[_Submit]) -> None:
        jobs = [job for submit in group for job in submit.jobs]
        try:
            inserted = await self._insert_jobs(jobs, self._now())
        except StoreUnavailable:
            raise
        except CallboardError:
            if len(group) == 1:
                raise
            # Refused for one submit's sake: write each alone, so only it is refused.
            for submit in group:
                try:
                    submit.inserted = await self._insert_jobs(submit.jobs, self._now())
                except Exception as exc:
                    submit.error = exc
            return
        self.writes += 1
        self.jobs_written += len(jobs)
        start = 0
        for submit in group:
            submit.inserted = inserted[start : start + len(submit.jobs)]
            start += len(submit.jobs)
