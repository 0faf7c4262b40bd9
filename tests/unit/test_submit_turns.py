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
    inside: list[int] = []
    entered: list[int] = []
    release = trio.Event()

    async def submit(index: int) -> None:
        async with backlog.turn():
            inside.append(index)
            entered.append(index)
            await release.wait()
            inside.remove(index)

    async with trio.open_nursery() as nursery:
        for index in range(5):
            nursery.start_soon(submit, index)
            await trio.testing.wait_all_tasks_blocked()
        assert inside == [0, 1]
        release.set()
    assert entered == [0, 1, 2, 3, 4]


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
