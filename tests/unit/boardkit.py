"""Helpers shared by the runtime's unit tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from callboard import Board, RunningBoard


@asynccontextmanager
async def running_with_company(board: Board) -> AsyncIterator[tuple[RunningBoard, str]]:
    async with board.running() as rt:
        company = await rt.create_company("acme")
        yield rt, company.id


async def all_events(rt: RunningBoard, job_id: str | None = None) -> list[Any]:
    """Every stored event (of one job), oldest first."""
    events = await rt.store.events_after(0, job_id=job_id, limit=10_000)
    return list(events)
