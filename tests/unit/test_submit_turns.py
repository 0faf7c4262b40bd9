"""Submit turns: a node that runs jobs works on at most SUBMIT_TURNS submits at once,
in arrival order; a node without workers takes no turns."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from callboard.web.backlog import Backlog

pytestmark = pytest.mark.trio


async def test_at_most_the_turns_are_worked_on_at_once_in_arrival_order():
    backlog = Backlog(None, limit=0, turns=2)  # type: ignore[arg-type]  # turns need no node
    inside: set[int] = set()
    done = [trio.Event() for _ in range(5)]

    async def submit(index: int) -> None:
        async with backlog.turn():
            inside.add(index)
            await done[index].wait()
            inside.remove(index)

    async with trio.open_nursery() as nursery:
        for index in range(5):
            nursery.start_soon(submit, index)
            await trio.testing.wait_all_tasks_blocked()
        assert inside == {0, 1}
        # Each submit that finishes hands its turn to the oldest one waiting.
        for index, expected in [(1, {0, 2}), (0, {2, 3}), (2, {3, 4}), (3, {4}), (4, set())]:
            done[index].set()
            await trio.testing.wait_all_tasks_blocked()
            assert inside == expected


async def test_no_turns_means_no_waiting():
    backlog = Backlog(None, limit=0, turns=0)  # type: ignore[arg-type]
    release = trio.Event()
    inside = 0

    async def submit() -> None:
        nonlocal inside
        async with backlog.turn():
            inside += 1
            await release.wait()

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(submit)
        await trio.testing.wait_all_tasks_blocked()
        assert inside == 20
        release.set()
