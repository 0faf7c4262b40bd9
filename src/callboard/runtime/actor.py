"""Actors: long-lived trio tasks that own a bounded inbox.

An actor is anything a supervisor can start: an async callable that takes
``task_status`` and calls ``task_status.started(value)`` once it is ready, like
a function given to ``nursery.start``. `Startable` names that protocol;
`Actor` is a small base class for the common case of a task that reads
messages from a bounded memory channel.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import trio

MessageT = TypeVar("MessageT")


class Startable(Protocol):
    """An async callable started like ``await nursery.start(fn)``.

    It must call ``task_status.started(value)`` exactly once when it is ready
    to serve, and then run until it is done or cancelled.
    """

    def __call__(self, *, task_status: trio.TaskStatus[Any]) -> Any: ...


@dataclass(frozen=True, slots=True)
class ActorStatistics:
    """A snapshot of an actor's inbox, with the field meanings of trio's channels.

    Restart counts are not here: the supervisor that restarts the actor owns
    them (see `SupervisorStatistics`).
    """

    name: str
    inbox_used: int
    inbox_size: int
    senders_waiting: int
    receivers_waiting: int
    closed: bool


class Actor(abc.ABC, Generic[MessageT]):
    """Base for a trio task that owns a bounded memory-channel inbox.

    Subclasses implement `run`, read messages from `self.inbox` and call
    ``task_status.started()`` once ready. The inbox belongs to the actor
    object, not to one call of `run`: when a supervisor restarts the actor,
    messages queued meanwhile are kept for the next run and senders are never
    broken by a crash. The message being handled when a run crashed is the
    subclass's business.

    `close` ends the actor gracefully: senders get `trio.ClosedResourceError`
    and ``async for message in self.inbox`` stops once the buffered messages
    are drained.
    """

    def __init__(self, name: str, *, inbox_size: int) -> None:
        # trio would accept math.inf; an unbounded inbox hides a slow actor
        # until memory runs out, so only a finite integer is allowed.
        if isinstance(inbox_size, bool) or not isinstance(inbox_size, int):
            raise TypeError(
                f"actor {name!r}: inbox_size must be a finite int (inboxes are bounded), "
                f"got {inbox_size!r}"
            )
        if inbox_size < 0:
            raise ValueError(f"actor {name!r}: inbox_size must be >= 0, got {inbox_size}")
        self.name = name
        self._outbox: trio.MemorySendChannel[MessageT]
        self.inbox: trio.MemoryReceiveChannel[MessageT]
        self._outbox, self.inbox = trio.open_memory_channel[MessageT](inbox_size)

    @abc.abstractmethod
    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until the inbox is closed or the task is cancelled."""

    async def send(self, message: MessageT) -> None:
        """Queue a message, waiting while the inbox is full (backpressure)."""
        await self._outbox.send(message)

    def send_nowait(self, message: MessageT) -> None:
        """Queue a message or raise `trio.WouldBlock` when the inbox is full."""
        self._outbox.send_nowait(message)

    def close(self) -> None:
        """Refuse new messages; `run` sees the end of the inbox after draining it."""
        self._outbox.close()

    def statistics(self) -> ActorStatistics:
        stats = self._outbox.statistics()
        return ActorStatistics(
            name=self.name,
            inbox_used=stats.current_buffer_used,
            inbox_size=int(stats.max_buffer_size),
            senders_waiting=stats.tasks_waiting_send,
            receivers_waiting=stats.tasks_waiting_receive,
            closed=stats.open_send_channels == 0,
        )
