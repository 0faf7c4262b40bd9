"""The committed events of every node sharing a PostgreSQL database, handed to this
node's `on_commit` hook one by one in id order, each exactly once.

Event ids are gapless and become visible in id order (see 0001_initial.sql), so a
node that has published through id N knows precisely what it has not seen yet:
N+1 onwards. Two sources feed it:

- this node's own commits (`committed()`, called as each statement returns): when
  they follow on from what was published they go out at once, with no extra read;
  otherwise they wait in `_pending` for the gap before them to be read;
- `run()`, which reads "events after N" from the database when a NOTIFY says the
  head moved (another node wrote), or when a poll of the head, once a second,
  finds it moved without a notification (the listener was down, a local caller
  never came back, or this node was alone: commits notify only while other nodes
  are there to hear, see callboard_nodes in schema.sql). It
  first lets this node's writes in flight return (`write_started`/`write_ended`):
  most gaps are their events, and then nothing needs reading.

Events of other nodes that queue work wake this node's dispatcher
(`on_jobs_queued`), since no local submit did: at once on the NOTIFY
`callboard_queued` (`queued()`), sent before the events' own notification, so the
claim does not wait for the events to be read back; and, for queued events no such
notification announced (the listener was down, or the writer is an older node),
when the catch-up reads them.

Reading other nodes' events back costs this node and the database a query and a
decode per event, which only pays while something here consumes them: a subscriber,
an observer, a dispatcher to wake. `wanted` says whether anything does. While it says
no (an API node or a producer with nobody listening), the feed reads nothing: it
moves its published mark to each new head as it is announced, and this node's own
commits go out at once even when other nodes' ids come before them. Nothing a later
subscriber is owed is lost: a subscription receives what commits after it began,
and since ids become visible in id order, all of that lies above the head known at
that moment, which is where the feed resumes reading.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ...errors import StoreUnavailable
from ...jobs import EventType, JobEvent

log = logging.getLogger("callboard.store")

_QUEUEING = frozenset({EventType.QUEUED, EventType.RETRYING})

#: Events read per catch-up query.
CATCH_UP_PAGE = 1_000


class EventFeed:
    def __init__(
        self,
        read_after: Callable[[int, int, int], Awaitable[list[JobEvent]]],
        read_head: Callable[[], Awaitable[int]],
        *,
        poll_interval: float = 1.0,
        settle: float = 0.1,
    ) -> None:
        self._read_after = read_after
        self._read_head = read_head
        self._poll_interval = poll_interval
        #: The longest a catch-up waits for local writes in flight.
        self._settle = settle
        self._write_seq = 0
        self._in_flight: set[int] = set()
        self._write_ended = trio.Event()
        #: The last id handed to `publish`; everything at or below it went out.
        self.published = 0
        #: The highest id known to be committed.
        self.head = 0
        self._pending: dict[int, JobEvent] = {}
        self._wake = trio.Event()
        self._recheck = False
        self.publish: Callable[[list[JobEvent]], None] | None = None
        self.on_jobs_queued: Callable[[], None] | None = None
        #: The highest head a `callboard_queued` notification announced: queued events
        #: at or below it woke the dispatcher already.
        self.queued_through = 0
        self.catch_ups = 0
        #: Whether anything on this node consumes other nodes' events (None: always).
        self.wanted: Callable[[], bool] | None = None
        #: Event ids moved past unread while nothing wanted them.
        self.skipped = 0

    def start_at(self, head: int) -> None:
        """Publish only what commits after `head` (older events are replayed from the
        store by whoever wants them)."""
        self.published = self.head = head

    # --- the two sources ---------------------------------------------------------------

    def write_started(self) -> int:
        """A local statement that appends events is about to run; pass the token to
        `write_ended` once it returned (or failed)."""
        self._write_seq += 1
        self._in_flight.add(self._write_seq)
        return self._write_seq

    def write_ended(self, token: int) -> None:
        self._in_flight.discard(token)
        self._write_ended.set()

    def committed(self, events: list[JobEvent]) -> None:
        """A local statement committed these (consecutive ids, ascending)."""
        if not events or events[-1].id <= self.published:
            return
        if events[0].id > self.published + 1 and self._unwanted():
            self._skip_to(events[0].id - 1)
        if events[0].id <= self.published + 1:
            self._deliver([e for e in events if e.id > self.published], remote=False)
            self._drain_pending()
            return
        for event in events:
            self._pending[event.id] = event
        self.notified(events[-1].id)

    def notified(self, head: int) -> None:
        """Some node committed events up to `head`."""
        if head > self.head:
            self.head = head
        if self.head > self.published:
            if self._unwanted():
                self._skip_to(self.head)
            else:
                self._wake.set()

    def queued(self, head: int) -> None:
        """Another node committed events up to `head`, some of which queue work."""
        if head > self.queued_through:
            self.queued_through = head
        if self.on_jobs_queued is not None:
            self.on_jobs_queued()

    def reconnected(self) -> None:
        """The listener (re)connected: notifications may have been missed."""
        self._recheck = True
        self._wake.set()

    # --- publishing --------------------------------------------------------------------

    def _unwanted(self) -> bool:
        return self.wanted is not None and not self.wanted()

    def _skip_to(self, event_id: int) -> None:
        """Count everything through `event_id` as published without reading it. Local
        events held back for a gap below them are dropped with it: nobody listens."""
        if event_id > self.published:
            self.skipped += event_id - self.published
            self.published = event_id
        if self.published > self.head:
            self.head = self.published
        self._drain_pending()

    def _deliver(self, events: list[JobEvent], *, remote: bool) -> None:
        if not events:
            return
        self.published = events[-1].id
        if self.published > self.head:
            self.head = self.published
        if self.publish is not None:
            self.publish(events)
        if remote and self.on_jobs_queued is not None:
            # A job started on submit comes with its running event: nothing to claim.
            started = {e.job_id for e in events if e.type is EventType.RUNNING}
            if any(
                e.type in _QUEUEING and e.job_id not in started and e.id > self.queued_through
                for e in events
            ):
                self.on_jobs_queued()

    def _drain_pending(self) -> None:
        run = []
        while (event := self._pending.pop(self.published + 1 + len(run), None)) is not None:
            run.append(event)
        self._deliver(run, remote=False)
        for stale in [i for i in self._pending if i <= self.published]:
            del self._pending[stale]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            with trio.move_on_after(self._poll_interval) as poll:
                await self._wake.wait()
            self._wake = trio.Event()
            if poll.cancelled_caught or self._recheck:
                self._recheck = False
                try:
                    self.notified(await self._read_head())
                except Exception as exc:  # the store is down: try again next time
                    log.debug("event feed: cannot read the head: %s", exc)
                    continue
            if self.head > self.published and self._unwanted():
                self._skip_to(self.head)
            if self.head <= self.published:
                continue
            await self._let_local_writes_land()
            if self.head <= self.published:
                continue
            try:
                await self._catch_up()
            except StoreUnavailable as exc:
                # The driver reports the outage once; this is one of the retries.
                log.debug("event feed: catching up failed (%s); retrying", exc)
                self._wake.set()
                await trio.sleep(self._poll_interval)
            except Exception:
                log.warning("event feed: catching up failed; retrying", exc_info=True)
                self._wake.set()
                await trio.sleep(self._poll_interval)

    async def _let_local_writes_land(self) -> None:
        """Wait (a little) for the local writes in flight now: the gap is likely theirs,
        and they publish it themselves when they return."""
        horizon = self._write_seq
        with trio.move_on_after(self._settle):
            while self.head > self.published and any(t <= horizon for t in self._in_flight):
                self._write_ended = trio.Event()
                await self._write_ended.wait()

    async def _catch_up(self) -> None:
        while self.head > self.published:
            self.catch_ups += 1
            target = self.head
            page = await self._read_after(self.published, target, CATCH_UP_PAGE)
            fresh = [e for e in page if e.id > self.published]
            if fresh:
                self._deliver(fresh, remote=True)
            elif not page:
                # Nothing between: those ids were pruned (old events only). Skip them.
                self.published = target
            self._drain_pending()
