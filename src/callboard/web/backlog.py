"""Backpressure at the front door: submits take turns on a node that also runs jobs, and
answer 503 with `Retry-After` while the queue holds more due jobs than
`Settings.max_queued`.

Accepting is not running. A node that takes submits faster than the workers finish
them grows a queue that only gets longer, and every job in it waits longer; on the
embedded store the node that accepts is also the one that runs them, so the requests
it takes eat the CPU its own workers need. Telling the client to come back (what
HTTP's 503 with `Retry-After` is for) keeps the queue at a length the workers can
work off, and a client that retries loses nothing: nothing of a refused submit is
written.

Turns come first. trio's scheduler is round-robin: every runnable task takes one step
per round. Fifty clients submitting keep fifty request tasks runnable, each request a
dozen steps, against a few workers whose jobs also take a dozen steps each, so the
workers got about one round in ten: measured on the embedded store, the node accepted
1,200 submits/s and finished 140 jobs/s, its queue growing all along. On a node that
runs jobs, at most `SUBMIT_TURNS` submits are worked on at once; the others wait
their turn, parked, taking no rounds, and accepting and running share the core:
accepting slows to the rate the node finishes jobs, and the queue stays short. A
submit takes its turn once its body has arrived, so clients slow to send theirs hold
none. A node without workers (an API node in front of worker nodes) takes no turns.

The limit is the guard behind it, for queues that grow anyway (slow jobs, few
workers, several API nodes in front of one store). The queue's length is read from
the store (`count_queued`, a read bounded by the limit) at most every
`REFRESH_SECONDS`, by one request at a time; the others use the last figure, so the
check costs no store read per request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import trio

from ..errors import StoreUnavailable
from ..running_board import RunningBoard
from .errors import ApiError

#: Submits worked on at once by a node that also runs jobs (see the module docstring).
#: Four, not fewer: the submits of one turn's round share a grouped write, and on the
#: embedded store, whose writer thread is the node's limit, four turns finished a fifth
#: more jobs per second under 50 submitting clients than two (its queue still empty
#: when the load stopped); eight let the queue grow (docs/benchmarks.md, "Issue 14").
SUBMIT_TURNS = 4
#: How old the queue's length may be before a submit reads it again.
REFRESH_SECONDS = 0.25
#: What a refused client is told to wait, in seconds.
RETRY_AFTER_SECONDS = 1


class Backlog:
    def __init__(self, rt: RunningBoard, limit: int, turns: int = 0) -> None:
        self._rt = rt
        self._turns = trio.CapacityLimiter(turns) if turns > 0 else None
        #: 0: no limit, no reads.
        self.limit = limit
        self._queued = 0
        self._read_at = float("-inf")
        self._reading = False
        #: Submits refused so far (`callboard_submits_refused` on /metrics).
        self.refused = 0

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Hold one of the submit turns (in arrival order) while a submit is worked on."""
        if self._turns is None:
            yield
            return
        async with self._turns:
            yield

    async def admit(self) -> None:
        """Return if a submit may go on; raise the 503 if the queue is over the limit."""
        if self.limit <= 0:
            return
        if trio.current_time() - self._read_at >= REFRESH_SECONDS and not self._reading:
            self._reading = True
            try:
                self._queued = await self._rt.store.count_queued(self._rt.now(), self.limit)
                self._read_at = trio.current_time()
            except StoreUnavailable:
                pass  # the submit's own write will say so
            finally:
                self._reading = False
        if self._queued >= self.limit:
            self.refused += 1
            raise ApiError(
                503,
                "queue_full",
                f"the queue holds {self.limit} or more due jobs, this node's limit "
                f"(CALLBOARD_MAX_QUEUED); retry after {RETRY_AFTER_SECONDS} s",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
