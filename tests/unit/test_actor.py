"""The Actor base: a bounded inbox that outlives restarts."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from callboard.runtime import Actor, ActorStatistics, ChildSpec, Supervisor

pytestmark = pytest.mark.trio


class Recorder(Actor[str]):
    def __init__(self, name: str = "recorder", *, inbox_size: int = 4) -> None:
        super().__init__(name, inbox_size=inbox_size)
        self.seen: list[str] = []
        self.runs = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        task_status.started()
        async for message in self.inbox:
            self.seen.append(message)
            if message == "boom":
                raise ValueError("boom")


@pytest.mark.parametrize(
    ("size", "error"), [(math.inf, TypeError), (1.5, TypeError), (-1, ValueError)]
)
async def test_inbox_must_be_bounded(size, error):
    with pytest.raises(error, match="inbox_size"):
        Recorder(inbox_size=size)


async def test_actor_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Actor("bare", inbox_size=1)  # type: ignore[abstract]


async def test_full_inbox_pushes_back_on_senders():
    actor = Recorder(inbox_size=2)
    actor.send_nowait("one")
    actor.send_nowait("two")
    with pytest.raises(trio.WouldBlock):
        actor.send_nowait("three")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(actor.send, "three")
        await trio.testing.wait_all_tasks_blocked()
        assert actor.statistics() == ActorStatistics(
            name="recorder",
            inbox_used=2,
            inbox_size=2,
            senders_waiting=1,
            receivers_waiting=0,
            closed=False,
        )
        await nursery.start(actor.run)
        await trio.testing.wait_all_tasks_blocked()
        assert actor.seen == ["one", "two", "three"]
        stats = actor.statistics()
        assert (stats.inbox_used, stats.senders_waiting, stats.receivers_waiting) == (0, 0, 1)
        actor.close()
    # Closing ends run() once the inbox is drained, and refuses new messages.
    assert actor.statistics().closed
    with pytest.raises(trio.ClosedResourceError):
        await actor.send("late")


async def test_inbox_survives_a_restart_by_the_supervisor(autojump_clock):
    actor = Recorder(inbox_size=4)
    supervisor = Supervisor("root", [ChildSpec("recorder", actor.run)])
    # Queued before the actor runs: "after" waits in the inbox while "boom" crashes it.
    actor.send_nowait("boom")
    actor.send_nowait("after")
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        await trio.sleep(1)
        assert actor.seen == ["boom", "after"]
        assert actor.runs == 2
        assert supervisor.statistics().children[0].restarts == 1
        await actor.send("later")
        await trio.testing.wait_all_tasks_blocked()
        assert actor.seen[-1] == "later"
        await supervisor.stop()
    assert actor.statistics().inbox_used == 0
